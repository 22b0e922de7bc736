"""Zero-shot spoken QA: the normalised answer-match rule (hand-worked) and greedy answering in both modalities."""

import pytest
import torch

from speechbraid.braid import SpeechSpan, TextSpan
from speechbraid.data.questions import SQAQuestion
from speechbraid.errors import ConfigError
from speechbraid.evaluation.sqa import answer_matches, spoken_qa, sqa_accuracy, sqa_prompt
from test_modality_gap import ByteTokenizer, fake_features, prefer_token, tiny_model


@pytest.mark.parametrize(("hypothesis", "answers", "expected"), [
    ("Bird.", ["bird"], True),                        # case and punctuation are normalised away
    ("it is a bird", ["bird"], True),                 # containment as whole words counts
    ("birds", ["bird"], False),                       # ... but only whole words
    ("scold", ["cold"], False),
    ("Forty-two", ["forty-two", "42"], True),        # hyphen inside a word is kept on both sides
    ("forty two", ["forty-two", "42", "forty two"], True),
    ("forty two", ["forty-two", "42"], False),
    ("42.", ["forty-two", "42"], True),
    ("a money market account", ["money market"], True),  # multi-word alias: a contiguous run
    ("market money", ["money market"], False),
    ("Tuesday's", ["Tuesday"], False),                # an apostrophe inside a word stays
    ("", ["cold"], False),
    ("cold", ["", "  ", "!"], False),                 # an alias that normalises to nothing never matches
])
def test_answer_match_rule(hypothesis, answers, expected):
    assert answer_matches(hypothesis, answers) is expected


QUESTIONS = [
    SQAQuestion("a1", "arithmetic", "What is three plus four?", ("seven", "7"), audio="5-0.9.wav", duration=0.9),
    SQAQuestion("a2", "arithmetic", "What is two plus two?", ("four", "4"), audio="6-0.7.wav", duration=0.7),
    SQAQuestion("c1", "calendar", "What day comes after Monday?", ("Tuesday",), audio="7-1.1.wav", duration=1.1),
]


def test_prompt_template_puts_the_question_between_text_instructions():
    tok = ByteTokenizer()
    text, speech = sqa_prompt(QUESTIONS[0], "text", tok), sqa_prompt(QUESTIONS[0], "speech", tok)
    assert tok.decode(list(text.spans[1].tokens)) == "Answer the question in a few words.\nQuestion:"
    assert text.spans[2] == TextSpan(tuple(tok.encode(" What is three plus four?")), False,
                                     " What is three plus four?")
    assert speech.spans[2] == SpeechSpan(0.0, 0.9) and speech.audio == "5-0.9.wav"
    assert tok.decode(list(text.spans[3].tokens)) == "\nAnswer:"


def test_greedy_answers_are_scored_in_both_modalities():
    model = tiny_model()
    prefer_token(model, ord("7"))  # every step says "7"; one step gives the answer "7"
    result = spoken_qa(model, ByteTokenizer(), QUESTIONS, features=fake_features, max_new_tokens=1)
    assert result == {"s2t": pytest.approx(1 / 3), "t2t": pytest.approx(1 / 3), "n": 3,
                      "hypotheses": {"speech": ["7"] * 3, "text": ["7"] * 3}}
    detail = sqa_accuracy(model, ByteTokenizer(), QUESTIONS, modality="text", max_new_tokens=3, batch_size=2)
    assert detail["hypotheses"] == ["777"] * 3 and detail["correct"] == 0  # "777" is not the word "7"
    assert detail["by_kind"] == {"arithmetic": 0.0, "calendar": 0.0}


def test_newline_ends_the_answer_but_not_before_its_first_token():
    model = tiny_model()
    prefer_token(model, ord("\n"))
    with torch.no_grad():
        model.llm.lm_head.bias[ord("7")] = 3.0  # the best token after a newline
    result = sqa_accuracy(model, ByteTokenizer(), QUESTIONS, modality="speech", features=fake_features)
    assert result["hypotheses"] == ["7", "7", "7"] and result["accuracy"] == pytest.approx(1 / 3)


def test_speech_without_features_is_a_config_error():
    with pytest.raises(ConfigError, match="need a features function"):
        sqa_accuracy(tiny_model(), ByteTokenizer(), QUESTIONS, modality="speech")

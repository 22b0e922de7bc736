"""Modality gap scoring on tiny real HF models: prompt braids, letter tokens, batched next-token choice."""

import pytest
import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from speechbraid.batching import collate, flatten_braid
from speechbraid.braid import SpeechSpan, TextSpan, VocabLayout
from speechbraid.data.questions import MCQuestion
from speechbraid.errors import ConfigError, InputError
from speechbraid.evaluation.modality_gap import (
    cloze_prompts,
    continuation_log_likelihoods,
    letter_tokens,
    mc_accuracy,
    mc_prompt,
    modality_gap,
    next_token_logits,
)
from speechbraid.models.adapter import FrameStackAdapter
from speechbraid.models.encoders import ConformerConfig, ConformerEncoder
from speechbraid.models.speech_llm import SpeechLLM

VOCAB = VocabLayout(text_size=256)


class ByteTokenizer:
    """One token per UTF-8 byte; BOS and EOS are control bytes that never occur in question text."""

    bos_id = 1
    eos_id = 2

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


def tiny_model(seed: int = 0) -> SpeechLLM:
    torch.manual_seed(seed)
    llm = LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB.size, hidden_size=32, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
                                       max_position_embeddings=1024))
    encoder = ConformerEncoder(ConformerConfig(d_model=16, n_layers=1, n_heads=2, dropout=0.0))
    return SpeechLLM(encoder, FrameStackAdapter(16, 32), llm, VOCAB, 12.5).eval()


def prefer_token(model: SpeechLLM, token: int) -> None:
    """Make the LM's output a constant preference for ``token``: zero weights, a bias on that one id."""
    head = nn.Linear(model.llm.config.hidden_size, VOCAB.size, bias=True)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[token] = 5.0
    model.llm.lm_head = head


def fake_features(path: str) -> torch.Tensor:
    """Deterministic log-mels named by the path: ``"<seed>-<seconds>.wav"``."""
    seed, duration = path.removesuffix(".wav").split("-")
    return torch.randn(int(float(duration) * 100), 80, generator=torch.Generator().manual_seed(int(seed)))


def question(i: int, answer: int, duration: float = 0.8) -> MCQuestion:
    options = tuple(f"word{i}{k}" for k in range(4))
    return MCQuestion(f"q{i}", "definition", f"Which noun means thing number {i}" + " more" * i + "?", options,
                      answer, audio=f"{i}-{duration}.wav", duration=duration)


QUESTIONS = [question(i, answer=i % 4, duration=0.4 + 0.3 * (i % 3)) for i in range(6)]
SHOTS = [MCQuestion(f"s{i}", "category", f"Which of these is a kind of bird number {i}?",
                    ("robin", "chair", "table", "spoon"), 0) for i in range(3)]


def test_letter_tokens_for_split_and_merged_spaces():
    assert letter_tokens(ByteTokenizer()) == ((32,), (65, 66, 67, 68))

    class Merged(ByteTokenizer):  # " A" is one token, as in byte-level BPE vocabularies
        def encode(self, text):
            return [200 + ord(text[1]) - 65] if text in (" A", " B", " C", " D") else super().encode(text)

    assert letter_tokens(Merged()) == ((), (200, 201, 202, 203))

    class Blind(ByteTokenizer):  # every letter the same token: cannot be scored
        def encode(self, text):
            return [99] if text.startswith(" ") and len(text) == 2 else super().encode(text)

    with pytest.raises(ConfigError, match="do not differ at one token"):
        letter_tokens(Blind())


def test_text_and_speech_prompts_differ_only_in_the_question_span():
    tok = ByteTokenizer()
    q = QUESTIONS[1]
    t2t, s2t = mc_prompt(q, SHOTS[:2], "text", tok), mc_prompt(q, SHOTS[:2], "speech", tok)
    assert len(t2t.spans) == len(s2t.spans) == 4
    assert t2t.spans[:2] == s2t.spans[:2] and t2t.spans[3] == s2t.spans[3]
    assert t2t.spans[2] == TextSpan(tuple(tok.encode(" " + q.question)), False, " " + q.question)
    assert s2t.spans[2] == SpeechSpan(0.0, q.duration) and s2t.audio == q.audio and t2t.audio is None
    context = tok.decode(list(t2t.spans[1].tokens))
    assert context.count("Answer: A\n\n") == 2 and SHOTS[2].question not in context  # k=2 shots, as text
    assert context.endswith("Question:")
    # the options follow the question and the prompt ends where " <letter>" goes, shared space appended
    assert tok.decode(list(t2t.spans[3].tokens)) == "\nA. word10\nB. word11\nC. word12\nD. word13\nAnswer: "
    assert not any(s.loss for s in t2t.spans)


@pytest.mark.parametrize("letter", ["C", "A"])
def test_scorer_picks_the_letter_with_the_highest_logit_in_both_modalities(letter):
    model = tiny_model()
    prefer_token(model, ord(letter))
    for modality in ("text", "speech"):
        result = mc_accuracy(model, ByteTokenizer(), QUESTIONS, modality=modality, shots=SHOTS, k_shot=2,
                             features=fake_features, batch_size=4)
        assert result["predictions"] == [letter] * len(QUESTIONS)
        expected = sum(q.answer_letter == letter for q in QUESTIONS)
        assert (result["correct"], result["n"]) == (expected, len(QUESTIONS))
        assert result["accuracy"] == pytest.approx(expected / len(QUESTIONS))
        assert result["by_kind"] == {"definition": pytest.approx(expected / len(QUESTIONS))}


def test_batched_right_padded_logits_equal_the_last_position_of_a_lone_forward():
    model = tiny_model(seed=3)
    tok = ByteTokenizer()
    prompts = [mc_prompt(q, SHOTS[: q.answer], m, tok) for q in QUESTIONS for m in ("text", "speech")]
    batched = next_token_logits(model, prompts, fake_features, batch_size=5)
    for i, prompt in enumerate(prompts):
        batch = collate([[flatten_braid(prompt, VOCAB, model.frame_rate)]], fake_features)
        with torch.no_grad():
            _, logits = model(batch)
        torch.testing.assert_close(batched[i], logits[0, -1], atol=1e-4, rtol=1e-4)
    assert not torch.allclose(batched[0], batched[1])  # the spoken and written question are different inputs


def test_modality_gap_is_speech_minus_text():
    model = tiny_model(seed=1)
    result = modality_gap(model, ByteTokenizer(), QUESTIONS, shots=SHOTS, k_shot=1, features=fake_features)
    assert set(result) == {"t2t", "s2t", "gap", "n", "k_shot", "scoring", "predictions", "majority_share"}
    assert result["gap"] == pytest.approx(result["s2t"] - result["t2t"])
    assert result["n"] == len(QUESTIONS) and 0 <= result["t2t"] <= 1 and 0 <= result["s2t"] <= 1
    for modality, letters in result["predictions"].items():
        assert len(letters) == len(QUESTIONS)
        top = max(letters.count(x) for x in letters) / len(letters)
        assert result["majority_share"][modality] == top


def test_a_model_that_always_answers_one_letter_is_flagged():
    model = tiny_model()
    prefer_token(model, ord("B"))
    result = modality_gap(model, ByteTokenizer(), QUESTIONS, shots=SHOTS, k_shot=1, features=fake_features)
    assert result["predictions"] == {"text": ["B"] * len(QUESTIONS), "speech": ["B"] * len(QUESTIONS)}
    assert result["majority_share"] == {"text": 1.0, "speech": 1.0} and result["gap"] == 0.0


def test_cloze_prompts_end_in_the_option_and_differ_only_in_the_question_span():
    tok = ByteTokenizer()
    q = QUESTIONS[2]
    t2t, s2t = cloze_prompts(q, SHOTS[:2], "text", tok), cloze_prompts(q, SHOTS[:2], "speech", tok)
    assert len(t2t) == len(s2t) == 4
    for k, (text, speech) in enumerate(zip(t2t, s2t, strict=True)):
        assert [s.loss for s in text.spans] == [False, False, False, False, True]  # the option alone is scored
        assert text.spans[4] == TextSpan(tuple(tok.encode(" " + q.options[k])), True, q.options[k])
        assert text.spans[:2] == speech.spans[:2] and text.spans[3:] == speech.spans[3:]
        assert speech.spans[2] == SpeechSpan(0.0, q.duration)
    context = tok.decode(list(t2t[0].spans[1].tokens))
    assert context == "".join(f"Question: {s.question}\nAnswer: robin\n\n" for s in SHOTS[:2]) + "Question:"
    assert tok.decode(list(t2t[0].spans[3].tokens)) == "\nAnswer:" and "B. " not in context  # no options listed


def test_cloze_log_likelihoods_equal_those_of_a_lone_forward():
    model = tiny_model(seed=2)
    tok = ByteTokenizer()
    prompts = [p for q in QUESTIONS[:3] for m in ("text", "speech") for p in cloze_prompts(q, SHOTS[:1], m, tok)]
    batched = continuation_log_likelihoods(model, prompts, fake_features, batch_size=5)
    for i, prompt in enumerate(prompts):
        flat = flatten_braid(prompt, VOCAB, model.frame_rate)
        batch = collate([[flat]], fake_features)
        with torch.no_grad():
            _, logits = model(batch)
        option = prompt.spans[-1].tokens
        steps = logits[0, -len(option) - 1:-1].log_softmax(-1)  # the positions that predict the option's tokens
        expected = sum(steps[j, t] for j, t in enumerate(option))
        assert batched[i] == pytest.approx(float(expected), abs=1e-3)


def test_cloze_scorer_picks_the_option_the_lm_prefers_in_both_modalities():
    model = tiny_model()
    prefer_token(model, ord("2"))  # the options are "word<i><k>": the third one ends in the preferred byte
    result = modality_gap(model, ByteTokenizer(), QUESTIONS, shots=SHOTS, k_shot=2, features=fake_features,
                          scoring="cloze")
    assert result["predictions"] == {"text": ["C"] * len(QUESTIONS), "speech": ["C"] * len(QUESTIONS)}
    expected = sum(q.answer == 2 for q in QUESTIONS) / len(QUESTIONS)
    assert result["t2t"] == result["s2t"] == pytest.approx(expected) and result["scoring"] == "cloze"


def test_bad_requests_are_clear_errors():
    model, tok = tiny_model(), ByteTokenizer()
    with pytest.raises(ConfigError, match="5-shot prompts need 5 shot examples, got 3"):
        mc_accuracy(model, tok, QUESTIONS, shots=SHOTS, k_shot=5)
    with pytest.raises(InputError, match="question 's0' is also a k-shot example"):
        mc_accuracy(model, tok, [SHOTS[0]], shots=SHOTS, k_shot=1)
    with pytest.raises(ConfigError, match="need a features function"):
        mc_accuracy(model, tok, QUESTIONS, modality="speech", shots=SHOTS, k_shot=0)
    silent = MCQuestion("q9", "definition", "Which?", ("a", "b", "c", "d"), 0)
    with pytest.raises(InputError, match="question 'q9' has no audio"):
        mc_accuracy(model, tok, [silent], modality="speech", k_shot=0, features=fake_features)
    with pytest.raises(ConfigError, match="scoring must be 'letter' or 'cloze', got 'votes'"):
        mc_accuracy(model, tok, QUESTIONS, shots=SHOTS, k_shot=1, scoring="votes")

"""CTC prefix scores for joint CTC/LLM decoding: exact against enumerating every path, and the token rules."""

import itertools
import math

import pytest
import torch

from speechbraid.data.normalize import normalize_for_wer
from speechbraid.inference.ctc_beam import WordFusion
from speechbraid.inference.ctc_prefix import CTCPrefixScorer
from speechbraid.models.ngram_lm import build_kneser_ney

LABELS = ["", "a", "b", " "]
TOKENS = {1: "The", 2: " cat", 3: ".", 4: "5", 5: "\n", 6: " sat", 7: ",", 8: " a", 9: "b", 10: "&", 11: "a"}


def decode(tokens):
    return "".join(TOKENS[t] for t in tokens)


def path_probabilities(log_probs: torch.Tensor, labels: list[str]) -> dict[str, float]:
    """p(labelling) for every labelling, by summing every frame-level path (small T only)."""
    out: dict[str, float] = {}
    for path in itertools.product(range(len(labels)), repeat=log_probs.shape[0]):
        text, previous = "", None
        for c in path:
            if c != previous and c != 0:
                text += labels[c]
            previous = c
        p = math.exp(sum(float(log_probs[t, c]) for t, c in enumerate(path)))
        out[text] = out.get(text, 0.0) + p
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_prefix_and_whole_probabilities_equal_the_sum_over_paths(seed):
    torch.manual_seed(seed)
    log_probs = torch.randn(6, len(LABELS), dtype=torch.float64).mul(2).log_softmax(-1)
    exact = path_probabilities(log_probs, LABELS)
    scorer = CTCPrefixScorer(log_probs, LABELS, decode, normalize_for_wer)
    for text in ["", "a", "aa", "ab", "a b", "ba", "bb a", "abab", "aaa"]:
        starting = sum(p for t, p in exact.items() if t.startswith(text))
        assert scorer.prefix(text) == pytest.approx(math.log(starting), abs=1e-9), text
        assert scorer.whole(text) == pytest.approx(math.log(exact.get(text, 0.0) or 1e-300), abs=1e-9), text
    assert scorer.prefix("aaaaaaa") == -math.inf  # seven characters cannot fit six frames
    assert scorer.prefix("c") == -math.inf  # not a character the bridge spells


def test_step_scores_rule_out_what_the_bridge_cannot_hear():
    labels = ["", *"abcehst", " "]
    scorer = CTCPrefixScorer(torch.zeros(20, len(labels)).log_softmax(-1), labels, decode, normalize_for_wer)
    eos = 0
    assert scorer.spelling((1, 2, 3)) == "the cat"
    start = scorer.step_scores((), [1, 3, 4, 5, 10, eos], [eos])
    # a word may open the transcript; punctuation, a digit, a newline or a symbol may not; ending empty may
    assert start[0] > -math.inf and start[1:5] == [-math.inf] * 4 and start[5] > -math.inf
    after_word = scorer.step_scores((1, 2), [3, 7, 6], [eos])
    assert after_word[0] == after_word[1] == 0.0  # punctuation after a word spells nothing more: no change
    assert after_word[2] == pytest.approx(scorer.prefix("the cat sat") - scorer.prefix("the cat"))
    assert scorer.step_scores((1, 2, 3), [7, 6], [eos])[0] == -math.inf  # never two punctuation tokens in a row
    ending = scorer.whole("the cat") - scorer.prefix("the cat")
    assert scorer.step_scores((1, 2), [eos], [eos]) == [pytest.approx(ending)]


def test_a_word_ngram_adds_its_fused_scores():
    labels = ["", *"abcehst", " "]
    log_probs = torch.randn(20, len(labels), generator=torch.Generator().manual_seed(0)).log_softmax(-1)
    words = WordFusion(build_kneser_ney(["the cat sat", "the cat", "a cat sat"], order=2))
    plain = CTCPrefixScorer(log_probs, labels, decode, normalize_for_wer)
    fused = CTCPrefixScorer(log_probs, labels, decode, normalize_for_wer, words)
    eos = 0
    change = fused.step_scores((1, 2), [6, eos], [eos])
    ctc = plain.step_scores((1, 2), [6, eos], [eos])
    # " sat" completes "cat" (scored after "the") and leaves "sat" unfinished but a known start: no partial cost
    cat = words.score_word(words.history(("the",)), "cat")[0]
    assert change[0] == pytest.approx(ctc[0] + cat)
    ending = cat + words.end(("the", "cat"))
    assert change[1] == pytest.approx(ctc[1] + ending)
    assert words.text_score("the cat sat", final=True) == pytest.approx(
        words.text_score("the cat", final=False) + cat + words.score_word(words.history(("the", "cat")), "sat")[0]
        + words.end(("the", "cat", "sat")))
    assert words.partial("the cat zq") < 0 == words.partial("the cat s")


def test_log_probabilities_of_the_wrong_width_are_refused():
    with pytest.raises(ValueError, match=r"expected \(frames, 4\)"):
        CTCPrefixScorer(torch.zeros(5, 3), LABELS, decode, normalize_for_wer)
    with pytest.raises(ValueError, match="class 0 must be the blank"):
        CTCPrefixScorer(torch.zeros(5, 4), ["a", "", "b", " "], decode, normalize_for_wer)


def test_guides_propose_their_next_token_while_the_hypothesis_agrees_with_them():
    labels = ["", *"abcehst", " "]
    pieces = {text: token for token, text in TOKENS.items()}

    def tokenize(text: str) -> list[int]:
        out = []
        while text:
            piece = max((p for p in pieces if text.startswith(p)), key=len)
            out.append(pieces[piece])
            text = text[len(piece):]
        return out

    scorer = CTCPrefixScorer(torch.zeros(20, len(labels)).log_softmax(-1), labels, decode, normalize_for_wer,
                             guides=["The cat sat", "The cat", "a cat"], tokenize=tokenize)
    assert scorer.proposals(()) == [1, 1, 11]  # every guide agrees with an empty hypothesis
    assert scorer.proposals((1,)) == [2, 2]
    assert scorer.proposals((1, 2, 3)) == [6]  # punctuation spells nothing; a finished guide proposes nothing
    assert scorer.proposals((1, 6)) == []  # "the sat": no guide reads so
    with pytest.raises(ValueError, match="need the LLM's tokenizer"):
        CTCPrefixScorer(torch.zeros(5, len(labels)), labels, decode, normalize_for_wer, guides=["the"])

"""CTC forced alignment: Viterbi on hand-made posteriors, transcript encoding, word spans, scoring."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from speechbraid.align.score import score_alignment
from speechbraid.align.text import BOUNDARY_ID, VOCAB, encode_transcript, word_characters
from speechbraid.align.viterbi import AlignmentFailure, CTCPath, confidence, forced_align, word_spans

A, B, C = 2, 3, 4  # arbitrary non-blank label ids for hand-made posteriors


def posteriors(frame_labels: list[int], vocab: int = 5, peak: float = 0.9) -> np.ndarray:
    """Log posteriors where frame t puts ``peak`` on ``frame_labels[t]`` and spreads the rest evenly."""
    probs = np.full((len(frame_labels), vocab), (1 - peak) / (vocab - 1))
    probs[np.arange(len(frame_labels)), frame_labels] = peak
    return np.log(probs)


def test_viterbi_recovers_the_path_the_posteriors_encode():
    # blank a a blank b b c blank
    path = forced_align(posteriors([0, A, A, 0, B, B, C, 0]), [A, B, C])
    assert path.token_frames == [(1, 3), (4, 6), (6, 7)]
    assert path.token_log_probs == pytest.approx([np.log(0.9)] * 3)
    assert path.path_log_prob == pytest.approx(8 * np.log(0.9))


def test_repeated_label_needs_a_blank_between():
    with pytest.raises(AlignmentFailure, match="at least 3 frames"):
        forced_align(posteriors([A, A]), [A, A])
    # even when the posteriors favour "a a" with no blank, the path must insert one
    path = forced_align(posteriors([A, A, A]), [A, A])
    first, second = path.token_frames
    assert first[1] < second[0], "the two a's must be separated by at least one blank frame"
    assert path.token_frames == [(0, 1), (2, 3)]


def test_impossible_alignments_fail():
    with pytest.raises(AlignmentFailure, match="needs at least 3 frames"):
        forced_align(posteriors([A, B]), [A, B, C])
    with pytest.raises(AlignmentFailure, match="nothing to align"):
        forced_align(posteriors([A, B]), [])
    impossible = posteriors([A, B, 0])
    impossible[:, C] = -np.inf  # the model rules label c out everywhere
    with pytest.raises(AlignmentFailure, match="no CTC path"):
        forced_align(impossible, [A, C])


def _best_path_by_enumeration(log_probs: np.ndarray, targets: list[int]) -> float:
    """Max log probability over every frame labelling that collapses (CTC rule) to ``targets``."""
    best = -np.inf
    for labels in itertools.product(range(log_probs.shape[1]), repeat=log_probs.shape[0]):
        collapsed = [lab for k, lab in enumerate(labels) if lab != 0 and (k == 0 or labels[k - 1] != lab)]
        if collapsed == targets:
            best = max(best, float(log_probs[np.arange(len(labels)), labels].sum()))
    return best


@pytest.mark.parametrize("targets", [[1, 2], [1, 1], [2, 1, 2]])
def test_viterbi_score_equals_brute_force_maximum(targets):
    rng = np.random.default_rng(len(targets) + targets[0])
    logits = rng.normal(size=(6, 3))
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    path = forced_align(log_probs, targets)
    assert path.path_log_prob == pytest.approx(_best_path_by_enumeration(log_probs, targets))


def test_transcript_encoding_keeps_surface_words_and_silent_words():
    targets = encode_transcript("Dr. O\u2019Brien & co \u2014 paid 42%")
    assert targets.words == ["Dr.", "O\u2019Brien", "&", "co", "\u2014", "paid", "42%"]
    decoded = "".join(VOCAB[i] for i in targets.ids)
    assert decoded == "dr|o'brien|co|paid|42"
    assert targets.spans[2][0] == targets.spans[2][1]  # '&' has no characters
    assert targets.ids.count(BOUNDARY_ID) == 4
    assert word_characters("Café") == "cafe"
    assert encode_transcript("see   all").min_frames == len("see|all") + 2  # a blank inside "ee" and "ll"


def test_word_spans_from_a_path_and_silent_word_placement():
    targets = encode_transcript("& ab - c")
    # ids: a b | c ; frames: a=[1,2) b=[2,4) |=[5,6) c=[7,9)
    path = CTCPath([(1, 2), (2, 4), (5, 6), (7, 9)], [np.log(0.5), np.log(0.5), 0.0, np.log(0.25)], -3.0)
    spans = word_spans(targets, path)
    assert [(s.word, s.first, s.last) for s in spans] == [("&", 1, 1), ("ab", 1, 4), ("-", 4, 4), ("c", 7, 9)]
    assert spans[0].score is None and spans[2].score is None
    assert spans[1].score == pytest.approx(0.5)
    assert spans[3].score == pytest.approx(0.25)
    assert confidence(path) == pytest.approx(np.exp(np.mean(path.token_log_probs)))
    # into_blanks: inner boundaries move to the boundary token ("|" at [5, 6)); the outer ones stay
    wide = word_spans(targets, path, into_blanks=True)
    assert [(s.word, s.first, s.last) for s in wide] == [("&", 1, 1), ("ab", 1, 5), ("-", 5, 5), ("c", 6, 9)]


def _manifest(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_score_alignment_boundary_errors(tmp_path):
    ref = _manifest(tmp_path / "ref.jsonl", [
        {"id": "a", "text": "Hi there.", "words": [{"word": "Hi", "start": 0.0, "end": 0.5},
                                                   {"word": "there.", "start": 0.5, "end": 1.0}]},
        {"id": "b", "text": "x", "words": [{"word": "x", "start": 0.0, "end": 0.1}]},
        {"id": "c", "text": "no times"},
        {"id": "d", "text": "cut short", "words": [{"word": "cut", "start": 0.0, "end": 0.5},
                                                  {"word": "short", "start": 0.5, "end": 0.5}]},
    ])
    aligned = _manifest(tmp_path / "aligned.jsonl", [
        {"id": "a", "text": "Hi there.", "words": [{"word": "Hi", "start": 0.02, "end": 0.44},
                                                   {"word": "there.", "start": 0.54, "end": 1.0}]},
        {"id": "c", "text": "no times", "words": [{"word": "no", "start": 0, "end": 1},
                                                  {"word": "times", "start": 1, "end": 2}]},
        {"id": "z", "text": "y", "words": [{"word": "y", "start": 0, "end": 1}]},
        {"id": "d", "text": "cut short", "words": [{"word": "cut", "start": 0.0, "end": 0.4},
                                                  {"word": "short", "start": 0.4, "end": 0.9}]},
    ])
    stats = score_alignment(aligned, ref)
    assert (stats.utterances, stats.words) == (1, 2)
    assert stats.start_ms["mean"] == pytest.approx(30.0)
    assert stats.end_ms["mean"] == pytest.approx(30.0)
    assert stats.end_ms["max"] == pytest.approx(60.0)
    assert stats.within_50ms == pytest.approx(0.75)
    assert stats.not_in_reference == ["z"] and stats.no_reference_times == ["c"]
    assert stats.reference_degenerate == ["d"]
    assert stats.not_aligned == 1  # "b"
    words_differ = _manifest(tmp_path / "differ.jsonl", [
        {"id": "a", "text": "Hi here", "words": [{"word": "Hi", "start": 0, "end": 1},
                                                 {"word": "here", "start": 1, "end": 2}]}])
    assert score_alignment(words_differ, ref).word_mismatch == [f"{words_differ}:1"]


def test_long_transcript_backtracks_past_int8_range():
    """More than 127 path states: the backtrace must not overflow its compact move table."""
    labels = [A, B, C] * 30  # 90 targets -> 181 states
    frames = [x for lab in labels for x in (lab, 0)]
    path = forced_align(posteriors(frames), labels)
    assert path.token_frames == [(2 * k, 2 * k + 1) for k in range(len(labels))]

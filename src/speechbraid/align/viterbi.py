"""CTC forced alignment: the single best CTC path for a known target sequence (Viterbi), in numpy.

``torchaudio.functional.forced_align`` would do this, but torchaudio is not a dependency (and has been
deprecating its CTC aligner); ``ctc-segmentation`` targets cutting long recordings into utterances and
reports a confidence per segment, not per-token frames. The recursion is short and tested on
hand-made posteriors in ``tests/test_align.py``.

Path states follow the usual CTC expansion ``blank, y1, blank, y2, ..., yL, blank``: at each frame a
path stays, moves one state on, or skips a blank between two different labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from speechbraid.align.text import Targets


class AlignmentFailure(ValueError):
    """No CTC path exists (too few frames for the targets) or the input is unusable."""


@dataclass(frozen=True)
class CTCPath:
    """The best path: for each target token its frames ``[first, last)``, and the log posteriors it took."""

    token_frames: list[tuple[int, int]]  # per target token, frames [first, last)
    token_log_probs: list[float]  # per target token, mean log posterior over its frames
    path_log_prob: float  # sum over all frames (blanks included) of the chosen label's log posterior


def forced_align(log_probs: np.ndarray, targets: Sequence[int], blank: int = 0) -> CTCPath:
    """Viterbi alignment of ``targets`` to ``log_probs`` ``(frames, vocab)``; raises AlignmentFailure.

    Ties go to staying in the current state, so the result is deterministic.
    """
    log_probs = np.asarray(log_probs, dtype=np.float64)
    if log_probs.ndim != 2:
        raise AlignmentFailure(f"expected (frames, vocab) log posteriors, got shape {log_probs.shape}")
    n_frames = log_probs.shape[0]
    labels = np.asarray(targets, dtype=np.int64)
    if labels.size == 0:
        raise AlignmentFailure("nothing to align: the transcript has no alignable characters")
    if (labels == blank).any():
        raise AlignmentFailure("targets must not contain the blank label")
    n_states = 2 * labels.size + 1
    ext = np.full(n_states, blank, dtype=np.int64)
    ext[1::2] = labels
    skip = np.zeros(n_states, dtype=bool)
    skip[3::2] = labels[1:] != labels[:-1]  # y_{k-1} -> y_k directly, only between different labels
    need = labels.size + int((labels[1:] == labels[:-1]).sum())
    if n_frames < need:
        raise AlignmentFailure(f"transcript needs at least {need} frames, the audio gives {n_frames}")

    neg = -np.inf
    alpha = np.full(n_states, neg)
    alpha[:2] = log_probs[0, ext[:2]]
    back = np.zeros((n_frames, n_states), dtype=np.int8)  # 0 stay, 1 from s-1, 2 from s-2
    for t in range(1, n_frames):
        from_prev = np.concatenate(([neg], alpha[:-1]))
        from_skip = np.where(skip, np.concatenate(([neg, neg], alpha[:-2])), neg)
        candidates = np.stack((alpha, from_prev, from_skip))
        choice = candidates.argmax(axis=0)
        back[t] = choice
        alpha = candidates[choice, np.arange(n_states)] + log_probs[t, ext]

    final = n_states - 1 if alpha[n_states - 1] >= alpha[n_states - 2] else n_states - 2
    if not np.isfinite(alpha[final]):
        raise AlignmentFailure("no CTC path has non-zero probability for this transcript")
    states = np.empty(n_frames, dtype=np.int64)
    state = final
    for t in range(n_frames - 1, -1, -1):
        states[t] = state
        state -= int(back[t, state])

    frame_lp = log_probs[np.arange(n_frames), ext[states]]
    token_frames: list[tuple[int, int]] = []
    token_lp: list[float] = []
    for k in range(labels.size):
        frames = np.flatnonzero(states == 2 * k + 1)
        token_frames.append((int(frames[0]), int(frames[-1]) + 1))
        token_lp.append(float(frame_lp[frames].mean()))
    return CTCPath(token_frames, token_lp, float(frame_lp.sum()))


@dataclass(frozen=True)
class WordSpan:
    """One transcript word in frames ``[first, last)`` (``first == last`` for a silent word) and its score."""

    word: str
    first: int
    last: int
    score: float | None  # exp(mean over its characters of their mean log posterior); None if silent


def word_spans(targets: Targets, path: CTCPath, into_blanks: bool = False) -> list[WordSpan]:
    """Per-word frame spans: from the first frame of its first character to the end of its last one.

    With ``into_blanks`` a word between two others also takes the blank frames that separate its characters
    from the word-boundary tokens on either side (it starts right after the preceding ``|`` and ends where
    the next ``|`` starts): CTC emits characters as short, often late spikes, and on held-out espeak-ng
    speech the boundary tokens sit closer to the true word boundaries (see ``benchmark_alignment``).
    The first word's start and the last word's end stay at their characters (leading/trailing silence).
    Words without vocabulary characters get a zero-length span where the previous word ends (where the
    next word starts, before the first aligned word).
    """
    frames = path.token_frames
    spans: list[WordSpan | None] = []
    for word, (first, last) in zip(targets.words, targets.spans, strict=True):
        if first == last:
            spans.append(None)
            continue
        score = float(np.exp(np.mean(path.token_log_probs[first:last])))
        start, end = frames[first][0], frames[last - 1][1]
        if into_blanks:
            start = frames[first - 1][1] if first > 0 else start  # ids[first - 1] is the boundary token
            end = frames[last][0] if last < len(frames) else end
        spans.append(WordSpan(word, start, end, score))
    out: list[WordSpan] = []
    next_start = [0] * len(spans)
    upcoming = None
    for i in range(len(spans) - 1, -1, -1):
        span = spans[i]
        if span is not None:
            upcoming = span.first
        next_start[i] = upcoming if upcoming is not None else 0
    for i, (word, span) in enumerate(zip(targets.words, spans, strict=True)):
        if span is None:
            at = out[-1].last if out else next_start[i]
            span = WordSpan(word, at, at, None)
        out.append(span)
    return out


def confidence(path: CTCPath) -> float:
    """Utterance confidence in (0, 1]: exp of the mean over target tokens of their mean log posterior."""
    return float(np.exp(np.mean(path.token_log_probs)))

"""Long-form audio: where to cut a recording into pieces a model accepts, so any length can be transcribed.

Models take a bounded input: Whisper's encoder 30 s, a speech LLM its LLM's context (frames at 12.5 Hz
plus prompt and transcript tokens). :func:`plan_segments` cuts a recording into consecutive pieces of at
most ``max_seconds`` without overlap: each cut lies in the middle of the latest of the quietest
stretches (signal level smoothed over 0.3 s) in the second half of the window that ends ``max_seconds``
after the previous cut, so it falls between words whenever the speaker pauses at least once per window.
Without any pause (music, continuous speech) the cut still lands at the quietest point, where a word may
be split. Transcripts of the pieces are joined in order (:func:`stitch`).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from speechbraid.data.audio import frame_rms

FRAME_SECONDS = 0.02
SMOOTH_SECONDS = 0.3  # a pause, not a single quiet frame between two syllables
MIN_TAIL_SECONDS = 1.0  # never leave a last piece shorter than this (a sliver of audio invites invented text)


def plan_segments(samples: np.ndarray, sample_rate: int, max_seconds: float) -> list[tuple[int, int]]:
    """Consecutive ``(start, end)`` sample ranges covering ``samples``, each at most ``max_seconds`` long
    (one range when the audio is that short); cuts lie in pauses as described in the module docstring."""
    if max_seconds < 2 * MIN_TAIL_SECONDS:
        raise ValueError(f"max_seconds must be at least {2 * MIN_TAIL_SECONDS} s, got {max_seconds}")
    total = len(samples)
    max_len = int(max_seconds * sample_rate)
    if total <= max_len:
        return [(0, total)]
    hop = round(FRAME_SECONDS * sample_rate)
    rms = frame_rms(samples, sample_rate, FRAME_SECONDS)
    width = max(1, round(SMOOTH_SECONDS / FRAME_SECONDS))
    level = np.convolve(rms, np.ones(width) / width, mode="same") if rms.size else rms
    segments: list[tuple[int, int]] = []
    start = 0
    tail = int(MIN_TAIL_SECONDS * sample_rate)
    while total - start > max_len:
        lo = (start + max_len // 2) // hop
        hi = min(start + max_len, total - tail) // hop
        window = level[lo:hi]
        cut = (lo + _latest_pause(window)) * hop + hop // 2 if window.size else start + max_len
        cut = min(max(cut, start + 1), start + max_len)
        segments.append((start, cut))
        start = cut
    segments.append((start, total))
    return segments


def _latest_pause(level: np.ndarray) -> int:
    """Index of the middle of the last run of quietest frames: the latest pause keeps pieces long (fewer cuts),
    its middle keeps the cut away from both neighbouring words."""
    quiet = level <= level.min() + 1e-3 * max(float(level.max()), 1e-12)
    end = len(quiet) - 1 - int(np.argmax(quiet[::-1]))
    begin = end
    while begin > 0 and quiet[begin - 1]:
        begin -= 1
    return (begin + end) // 2


def stitch(texts: Iterable[str]) -> str:
    """The transcript of a recording from its pieces' transcripts, in order (empty pieces add nothing)."""
    return " ".join(text.strip() for text in texts if text.strip())

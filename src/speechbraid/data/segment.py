"""Merge aligned words into segments for JSTIP segment-level interleaving (METHODS.md section 1).

A pure function of the word alignment: breaks go at silences (gap between words >= ``gap``) and,
with ``by="silence+punct"``, also after words ending in sentence or clause punctuation, which the
paper reports gives more balanced segment lengths. Over-long segments are split recursively at their
largest internal gap. :class:`SegmentStats` / :func:`segment_length_stats` summarise the lengths so
the two modes can be compared.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from speechbraid.data.records import WordAlignment
from speechbraid.errors import ConfigError

SegmentBy = Literal["silence", "silence+punct"]
SEGMENT_MODES: tuple[str, ...] = ("silence", "silence+punct")

BREAK_PUNCTUATION = ",;:.?!"
# Closing quotes/brackets may follow the punctuation mark: 'he said "stop."' still ends a clause.
_CLOSERS = "\"')]}»”’"
# Manifest times are rounded to 4 decimals: a gap meant to equal the threshold must count as reaching it.
_GAP_EPS = 1e-6
_TIE_EPS = 1e-4  # manifest time resolution: gaps closer than this are the same gap

# Silence (seconds) that ends a segment by default. espeak-ng pauses ~0.15 s at commas and clause ends and
# leaves no gap between words inside a clause, so 0.1 s finds every pause it makes; natural read speech
# (MFA alignments) pauses similarly or longer at phrase breaks.
DEFAULT_GAP = 0.1

# Fixed histogram edges so the two modes (and different corpora) are comparable bin by bin.
WORD_BINS: tuple[float, ...] = (1, 2, 3, 4, 6, 8, 11, 16, 21, 31, 51, float("inf"))
SECOND_BINS: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, float("inf"))


@dataclass(frozen=True)
class Segment:
    """Consecutive aligned words that form one interleaving unit."""

    words: tuple[WordAlignment, ...]
    start: float
    end: float
    text: str

    @classmethod
    def from_words(cls, words: Sequence[WordAlignment]) -> Segment:
        return cls(tuple(words), words[0].start, words[-1].end, " ".join(w.word for w in words))

    @property
    def duration(self) -> float:
        return self.end - self.start

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": round(self.start, 4),
            "end": round(self.end, 4),
            "text": self.text,
            "words": [w.to_dict() for w in self.words],
        }


def ends_clause(word: str) -> bool:
    """True when ``word`` ends in , ; : . ? or ! (possibly followed by closing quotes or brackets)."""
    stripped = word.rstrip(_CLOSERS)
    return bool(stripped) and stripped[-1] in BREAK_PUNCTUATION


def segment_words(
    words: Sequence[WordAlignment],
    *,
    by: SegmentBy = "silence",
    gap: float = DEFAULT_GAP,
    max_duration: float | None = 10.0,
    max_words: int | None = None,
) -> list[Segment]:
    """Split a time-ordered word alignment into segments.

    A segment ends after word i when the silence before word i+1 is at least ``gap`` seconds, or (with
    ``by="silence+punct"``) when word i ends in sentence/clause punctuation. A segment longer than
    ``max_duration`` seconds or ``max_words`` words is split at its largest internal gap (ties: the
    gap nearest its temporal middle), repeatedly; a single word longer than ``max_duration`` stays one
    segment, since a word cannot be cut. Raises ValueError when words are not in time order.
    """
    if by not in SEGMENT_MODES:
        raise ConfigError(f"unknown segmentation mode {by!r}; choose one of {', '.join(SEGMENT_MODES)}")
    if gap < 0:
        raise ConfigError(f"gap must be >= 0 seconds, got {gap}")
    if max_duration is not None and max_duration <= 0:
        raise ConfigError(f"max_duration must be > 0 seconds, got {max_duration}")
    if max_words is not None and max_words < 1:
        raise ConfigError(f"max_words must be >= 1, got {max_words}")
    for i in range(1, len(words)):
        if words[i].start < words[i - 1].start:
            raise ValueError(
                f"words not in time order: words[{i}] {words[i].word!r} starts at {words[i].start} s, "
                f"before words[{i - 1}] {words[i - 1].word!r} at {words[i - 1].start} s"
            )
    pieces: list[Sequence[WordAlignment]] = []
    begin = 0
    for i in range(len(words) - 1):
        silence = words[i + 1].start - words[i].end
        if silence >= gap - _GAP_EPS or (by == "silence+punct" and ends_clause(words[i].word)):
            pieces.append(words[begin : i + 1])
            begin = i + 1
    if words:
        pieces.append(words[begin:])
    segments: list[Segment] = []
    for piece in pieces:
        segments.extend(_split_long(piece, max_duration, max_words))
    return segments


def _too_long(words: Sequence[WordAlignment], max_duration: float | None, max_words: int | None) -> bool:
    if len(words) < 2:
        return False
    if max_words is not None and len(words) > max_words:
        return True
    return max_duration is not None and words[-1].end - words[0].start > max_duration


def _split_long(
    words: Sequence[WordAlignment], max_duration: float | None, max_words: int | None
) -> list[Segment]:
    """Split at the largest internal gap until every part fits (an explicit stack instead of recursion)."""
    out: list[Segment] = []
    stack = [words]
    while stack:
        part = stack.pop()
        if not _too_long(part, max_duration, max_words):
            out.append(Segment.from_words(part))
            continue
        gaps = [part[i + 1].start - part[i].end for i in range(len(part) - 1)]
        largest = max(gaps)
        # Gaps equal up to time rounding tie; among them cut nearest the middle so halves balance.
        middle = (part[0].start + part[-1].end) / 2
        cut = 1 + min(
            (i for i, g in enumerate(gaps) if g >= largest - _TIE_EPS),
            key=lambda i, part=part: abs((part[i].end + part[i + 1].start) / 2 - middle),
        )
        stack.append(part[cut:])  # popped after the left half, so segments come out in time order
        stack.append(part[:cut])
    return out


def _summary(values: np.ndarray, bins: Sequence[float]) -> dict[str, Any]:
    if values.size == 0:
        return {"mean": None, "std": None, "cv": None, "min": None, "max": None,
                "p10": None, "p50": None, "p90": None,
                "histogram": {"edges": list(bins), "counts": [0] * (len(bins) - 1)}}
    mean = float(values.mean())
    std = float(values.std())
    p10, p50, p90 = (float(v) for v in np.percentile(values, [10, 50, 90]))
    counts, _ = np.histogram(values, bins=np.asarray(bins, dtype=float))
    return {
        "mean": mean,
        "std": std,
        "cv": std / mean if mean > 0 else None,  # coefficient of variation: lower = more balanced lengths
        "min": float(values.min()),
        "max": float(values.max()),
        "p10": p10,
        "p50": p50,
        "p90": p90,
        "histogram": {"edges": list(bins), "counts": [int(c) for c in counts]},
    }


class SegmentStats:
    """Accumulates segment lengths utterance by utterance (two numbers per segment, never the segments)."""

    def __init__(self, word_bins: Sequence[float] = WORD_BINS, second_bins: Sequence[float] = SECOND_BINS) -> None:
        self.word_bins = tuple(word_bins)
        self.second_bins = tuple(second_bins)
        self.utterances = 0
        self._words: list[int] = []
        self._seconds: list[float] = []

    def add(self, segments: Sequence[Segment]) -> None:
        self.utterances += 1
        self._words.extend(len(s.words) for s in segments)
        self._seconds.extend(s.duration for s in segments)

    def result(self) -> dict[str, Any]:
        count = len(self._words)
        return {
            "utterances": self.utterances,
            "count": count,
            "segments_per_utterance": count / self.utterances if self.utterances else None,
            "words": _summary(np.asarray(self._words, dtype=float), self.word_bins),
            "seconds": _summary(np.asarray(self._seconds, dtype=float), self.second_bins),
        }


def segment_length_stats(segments_per_utt: Iterable[Sequence[Segment]]) -> dict[str, Any]:
    """Distribution of segment lengths in words and seconds: count, mean, std, coefficient of variation,
    min/max, p10/p50/p90 and a histogram on fixed edges (:data:`WORD_BINS`, :data:`SECOND_BINS`)."""
    stats = SegmentStats()
    for segments in segments_per_utt:
        stats.add(segments)
    return stats.result()

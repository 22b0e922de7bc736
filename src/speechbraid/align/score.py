"""Boundary error of word alignments against reference word times (e.g. the synthesiser's own)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from speechbraid.align.text import word_characters
from speechbraid.data.manifest import iter_manifest
from speechbraid.data.validate import comparison_tokens
from speechbraid.errors import InputError


@dataclass
class BoundaryStats:
    """|start diff| and |end diff| over the words of utterances present, with the same words, in both."""

    utterances: int = 0
    words: int = 0
    start_ms: dict[str, float] = field(default_factory=dict)  # mean, median, p90, max
    end_ms: dict[str, float] = field(default_factory=dict)
    within_50ms: float = 0.0  # fraction of all boundaries (starts and ends) within 50 ms
    not_in_reference: list[str] = field(default_factory=list)  # aligned ids the reference lacks
    no_reference_times: list[str] = field(default_factory=list)  # reference has the id but no word times
    word_mismatch: list[str] = field(default_factory=list)  # file:line of aligned records whose words differ
    # reference gives a spoken word (one with letters or digits) zero duration: its times cannot be trusted
    reference_degenerate: list[str] = field(default_factory=list)
    not_aligned: int = 0  # reference utterances missing from the aligned manifest (rejected there)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        def row(name: str, stats: dict[str, float]) -> str:
            return (f"{name:<6} mean {stats['mean']:6.1f}  median {stats['median']:6.1f}  p90 {stats['p90']:6.1f}  "
                    f"max {stats['max']:7.1f} ms")

        lines = [f"{self.words} words in {self.utterances} utterances"]
        if self.words:
            lines += [row("start", self.start_ms), row("end", self.end_ms),
                      f"boundaries within 50 ms: {100 * self.within_50ms:.1f}%"]
        for label, items in (("aligned ids not in the reference", self.not_in_reference),
                             ("reference records without word times", self.no_reference_times),
                             ("records whose words differ from the reference", self.word_mismatch),
                             ("reference records with zero-length spoken words", self.reference_degenerate)):
            if items:
                shown = ", ".join(items[:5]) + (", ..." if len(items) > 5 else "")
                lines.append(f"skipped, {label}: {len(items)} ({shown})")
        if self.not_aligned:
            lines.append(f"reference utterances absent from the aligned manifest: {self.not_aligned}")
        return "\n".join(lines)


def _summary(errors: np.ndarray) -> dict[str, float]:
    return {"mean": float(errors.mean()), "median": float(np.median(errors)),
            "p90": float(np.percentile(errors, 90)), "max": float(errors.max())}


def score_alignment(aligned: str | Path, reference: str | Path) -> BoundaryStats:
    """Compare word times of ``aligned`` with ``reference``, utterance by utterance (matched on ``id``).

    Words are compared position by position after checking both manifests hold the same words (same
    :func:`comparison_tokens`); an utterance whose words differ is listed, not scored, and so is one whose
    reference gives a spoken word zero duration (espeak-ng does this to every word after some clause
    breaks: they all start and end at the end of the audio).
    """
    ref_words: dict[str, list[tuple[str, float, float]] | None] = {}
    degenerate: set[str] = set()
    for item in iter_manifest(reference):
        words = item.record.words
        ref_words[item.record.id] = None if not words else [(w.word, w.start, w.end) for w in words]
        if words and any(w.end <= w.start and word_characters(w.word) for w in words):
            degenerate.add(item.record.id)
    stats = BoundaryStats()
    starts: list[float] = []
    ends: list[float] = []
    seen = set()
    for item in iter_manifest(aligned):
        record = item.record
        if not record.words:
            raise InputError(f"record '{record.id}' has no word alignment; score an aligned manifest", item.path,
                             item.line)
        if record.id not in ref_words:
            stats.not_in_reference.append(record.id)
            continue
        seen.add(record.id)
        ref = ref_words[record.id]
        if ref is None:
            stats.no_reference_times.append(record.id)
            continue
        if record.id in degenerate:
            stats.reference_degenerate.append(record.id)
            continue
        ours = comparison_tokens(" ".join(w.word for w in record.words))
        if ours != comparison_tokens(" ".join(w for w, _, _ in ref)):
            stats.word_mismatch.append(item.where())
            continue
        stats.utterances += 1
        stats.words += len(ref)
        for word, (_, ref_start, ref_end) in zip(record.words, ref, strict=True):
            starts.append(abs(word.start - ref_start) * 1000)
            ends.append(abs(word.end - ref_end) * 1000)
    stats.not_aligned = len(set(ref_words) - seen)
    if starts:
        start_arr, end_arr = np.array(starts), np.array(ends)
        stats.start_ms, stats.end_ms = _summary(start_arr), _summary(end_arr)
        stats.within_50ms = float(np.mean(np.concatenate((start_arr, end_arr)) <= 50.0))
    return stats

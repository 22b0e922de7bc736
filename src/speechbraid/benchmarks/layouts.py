"""Layout-building throughput: braids built and flattened per second, per layout.

Data preparation runs on the CPU next to training; it must never starve the accelerator. Each case
builds ``n`` braids exactly as the trainer's sources do (``Layout.build`` with a per-utterance
``choice``, then ``flatten_braid``), in one process, and reports the best of ``repeats`` passes (the
least disturbed by other work on a shared machine).
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

from speechbraid.batching.collate import flatten_braid
from speechbraid.braid.vocab import VocabLayout
from speechbraid.data.manifest import iter_manifest
from speechbraid.data.records import Utterance
from speechbraid.errors import InputError
from speechbraid.layouts.registry import get_layout
from speechbraid.layouts.tokenizer import HFTextTokenizer, TextTokenizer

# (layout, segment_by): the layouts of the JSTIP training mix, segment-level in both segmentation modes.
CASES: tuple[tuple[str, str], ...] = (
    ("asr", "silence"),
    ("word-il", "silence"),
    ("segment-il", "silence"),
    ("segment-il", "silence+punct"),
    ("mixed-il", "silence"),
)


def _records(manifest: str | Path, n: int) -> list[Utterance]:
    """The first ``n`` utterances with audio and a word alignment (every case can use them)."""
    usable = (item.record for item in iter_manifest(manifest)
              if item.record.has_alignment and item.record.duration is not None and item.record.audio is not None)
    records = list(itertools.islice(usable, n))
    if not records:
        raise InputError("no utterance with audio and a word alignment to build layouts from", manifest)
    return records


def bench_layouts(manifest: str | Path, tokenizer: TextTokenizer, n: int = 1000, repeats: int = 3,
                  frame_rate: float = 12.5) -> dict[str, Any]:
    """Utterances/s (and positions/s, audio seconds/s) building + flattening braids, per layout.

    ``n`` utterances are read from ``manifest`` (fewer if it has fewer); ``variant`` is ``both`` with the
    choice alternating per utterance, as in training.
    """
    if n < 1 or repeats < 1:
        raise ValueError("n and repeats must be >= 1")
    records = _records(manifest, n)
    size = len(tokenizer) if isinstance(tokenizer, HFTextTokenizer) else max(tokenizer.eos_id, tokenizer.bos_id) + 1
    vocab = VocabLayout(text_size=size)
    audio_s = sum(r.duration or 0.0 for r in records)
    rows = []
    for name, segment_by in CASES:
        layout = get_layout(name)
        best_build = best_total = float("inf")
        positions = 0
        for _ in range(repeats):
            build_s = flatten_s = 0.0
            positions = 0
            for choice, record in enumerate(records):
                t0 = time.perf_counter()
                braid = layout.build(record, tokenizer, variant="both", segment_by=segment_by, choice=choice)
                t1 = time.perf_counter()
                positions += len(flatten_braid(braid, vocab, frame_rate))
                t2 = time.perf_counter()
                build_s += t1 - t0
                flatten_s += t2 - t1
            if build_s + flatten_s < best_total:
                best_build, best_total = build_s, build_s + flatten_s
        rows.append({
            "layout": f"{name}:{segment_by}" if layout.takes_segment_by else name,
            "utterances_per_s": len(records) / best_total,
            "positions_per_s": positions / best_total,
            "audio_s_per_s": audio_s / best_total,
            "build_us": 1e6 * best_build / len(records),
            "flatten_us": 1e6 * (best_total - best_build) / len(records),
            "mean_positions": positions / len(records),
        })
    return {"manifest": str(manifest), "utterances": len(records), "audio_seconds": audio_s,
            "mean_words": sum(len(r.words or []) for r in records) / len(records), "repeats": repeats,
            "rows": rows}


def format_layouts(result: dict[str, Any]) -> str:
    """The figures as a Markdown table with a one-line header."""
    from speechbraid.benchmarks.common import format_table

    head = (f"Layout building + flattening, one process ({result['utterances']} utterances of {result['manifest']}, "
            f"{result['mean_words']:.1f} words and {result['audio_seconds'] / result['utterances']:.2f} s each on "
            f"average; best of {result['repeats']})")
    return head + "\n" + format_table(result["rows"], ["layout", "utterances_per_s", "positions_per_s",
                                                       "audio_s_per_s", "build_us", "flatten_us", "mean_positions"])

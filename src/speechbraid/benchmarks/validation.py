"""Throughput and peak memory of :func:`validate_manifest` on a generated manifest.

Run ``python -m speechbraid.benchmarks.validation 10000 100000`` to see that peak memory stays flat as
the manifest grows (apart from the 8-byte-digest id table, which grows by design).
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

from speechbraid.data.audio import write_wav
from speechbraid.data.validate import validate_manifest

_TEXT = "Take aspirin, twice a day."
_WORDS = [("Take", 0.05, 0.25), ("aspirin,", 0.30, 0.70), ("twice", 0.75, 0.95), ("a", 1.0, 1.05),
          ("day.", 1.1, 1.4)]


def _write_inputs(n_lines: int, tmp_dir: Path, n_wavs: int, defect_every: int) -> Path:
    """A few 1.5 s tone WAVs and an n-line manifest over them, written line by line (never held whole)."""
    rate = 16000
    t = np.arange(int(1.5 * rate)) / rate
    for k in range(n_wavs):
        write_wav(tmp_dir / f"tone{k}.wav", 0.3 * np.sin(2 * np.pi * (220.0 + 110.0 * k) * t), rate)
    words = [{"word": w, "start": s, "end": e} for w, s, e in _WORDS]
    entities = [{"text": "aspirin", "type": "drug", "start": 5, "end": 12}]
    manifest = tmp_dir / "bench.jsonl"
    with manifest.open("w", encoding="utf-8") as handle:
        for i in range(n_lines):
            duration = 2.5 if defect_every and i % defect_every == 0 else 1.5  # a duration_mismatch
            record = {"id": f"utt{i:08d}", "text": _TEXT, "audio": f"tone{i % n_wavs}.wav",
                      "sample_rate": rate, "duration": duration, "words": words, "entities": entities}
            handle.write(json.dumps(record) + "\n")
    return manifest


def benchmark_validation(
    n_lines: int, tmp_dir: str | Path, *, n_wavs: int = 4, defect_every: int = 50, max_problems: int = 1000
) -> dict[str, Any]:
    """Validate a generated ``n_lines`` manifest (policy skip, clean output written) twice: once timed,
    once under tracemalloc for the peak of Python allocations during validation."""
    tmp_dir = Path(tmp_dir)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    manifest = _write_inputs(n_lines, tmp_dir, n_wavs, defect_every)
    options: dict[str, Any] = {"policy": "skip", "output": tmp_dir / "clean.jsonl", "max_problems": max_problems}

    begin = time.perf_counter()
    report = validate_manifest(manifest, **options)
    seconds = time.perf_counter() - begin

    tracemalloc.start()
    try:
        validate_manifest(manifest, **options)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return {
        "n_lines": n_lines,
        "seconds": round(seconds, 3),
        "utterances_per_s": round(n_lines / seconds, 1),
        "peak_traced_mib": round(peak / 2**20, 2),
        "peak_traced_bytes_per_line": round(peak / n_lines, 1),
        # process high-water mark (includes the interpreter, numpy, soundfile): only ever grows
        "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "problem_total": report.problem_total,
        "problems_listed": len(report.problems),
        "records_written": report.records_written,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("n_lines", type=int, nargs="+", help="manifest sizes to benchmark")
    args = parser.parse_args(argv)
    for n in args.n_lines:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(benchmark_validation(n, tmp)), flush=True)


if __name__ == "__main__":
    main()

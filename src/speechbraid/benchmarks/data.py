"""Data-layer figures: synthesis speed per engine, manifest validation throughput and peak memory as the
manifest grows, the training data path's memory and braid throughput per rank (:mod:`.training_data`), and
log-mel extraction speed."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from typing import Any

from speechbraid.benchmarks.common import format_table, in_fresh_process


def _validation(n_lines: int) -> dict[str, Any]:
    from speechbraid.benchmarks.validation import benchmark_validation

    with tempfile.TemporaryDirectory() as tmp:
        return benchmark_validation(n_lines, tmp)


def _synthesis(engine: str, texts: Sequence[str]) -> dict[str, Any]:
    from speechbraid.synth import measure_synthesis_speed

    report = measure_synthesis_speed(engine, texts)
    return {"engine": engine, "utterances": report.utterances, "audio_s": report.audio_seconds,
            "cpu_s": report.cpu_seconds, "audio_s_per_cpu_s": report.audio_per_cpu_second}


def bench_data(engines: Sequence[str] = ("espeak", "piper"), manifest_lines: Sequence[int] = (10_000, 100_000),
               n_texts: int = 20, feature_seconds: float = 60.0,
               train_lines: Sequence[int] = (10_000, 100_000, 1_000_000)) -> dict[str, Any]:
    """All data figures; each measurement runs in its own fresh process."""
    from speechbraid.benchmarks.training_data import bench_training_data
    from speechbraid.corpora.build import make_text_corpora
    from speechbraid.data.features import measure_feature_speed

    texts = [r.text for r in make_text_corpora(size="tiny", seed=0)["train"]][:n_texts]
    return {
        "synthesis": [in_fresh_process(_synthesis, engine, texts) for engine in engines],
        "validation": [in_fresh_process(_validation, n) for n in manifest_lines],
        "training_data": bench_training_data(tuple(train_lines), throughput_lines=min(train_lines)),
        "features": [{"kind": kind, "x_real_time": in_fresh_process(measure_feature_speed, kind, feature_seconds)}
                     for kind in ("fbank", "whisper")],
    }


def format_data(result: dict[str, Any]) -> str:
    from speechbraid.benchmarks.training_data import format_training_data

    return "\n\n".join([
        "Synthesis (single process; seconds of audio per CPU-second)\n"
        + format_table(result["synthesis"], ["engine", "utterances", "audio_s", "cpu_s", "audio_s_per_cpu_s"]),
        "Manifest reading + validation (audio headers checked; peak = Python allocations during validation)\n"
        + format_table(result["validation"], ["n_lines", "seconds", "utterances_per_s", "peak_traced_mib",
                                              "max_rss_mib"]),
        format_training_data(result["training_data"]),
        "Log-mel extraction (x real time, one process)\n" + format_table(result["features"], ["kind", "x_real_time"]),
    ])

"""Alignment quality on held-out synthetic speech: CTC word times against the synthesiser's own."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from speechbraid.align import DEFAULT_MIN_CONFIDENCE, DEFAULT_MIN_WORD_SCORE
from speechbraid.align.model import CONFIG_FILE
from speechbraid.align.run import align_manifest
from speechbraid.align.score import score_alignment
from speechbraid.align.train import train_ctc_aligner
from speechbraid.benchmarks.common import DEFAULT_CORPUS
from speechbraid.data.manifest import read_manifest, write_manifest
from speechbraid.models.encoders import ConformerConfig


def benchmark_alignment(
    work_dir: str | Path,
    corpus_dir: str | Path = DEFAULT_CORPUS,
    *,
    model_dir: str | Path | None = None,
    steps: int = 800,
    batch_size: int = 8,
    encoder: ConformerConfig | None = None,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    min_word_score: float = DEFAULT_MIN_WORD_SCORE,
    progress: bool = True,
) -> dict[str, Any]:
    """Train (unless ``model_dir`` holds an aligner) on the corpus train split, align its test split with
    the synthesiser's word times removed, and score against them. Builds the ``small`` default corpus
    when its speech splits are missing. Returns train metrics and, for both word extent rules (``chars``,
    ``into_blanks``), the alignment report counts and the boundary errors in ms (mean, median, p90, max of
    |start diff| and |end diff|)."""
    corpus = Path(corpus_dir)
    train, test = (corpus / "speech" / split / "manifest.jsonl" for split in ("train", "test"))
    if not (train.is_file() and test.is_file()):
        from speechbraid.corpora import build_default_corpus

        build_default_corpus(corpus, size="small", seed=0, progress=progress)
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    train_metrics: dict[str, Any] | None = None
    if model_dir is None or not (Path(model_dir) / CONFIG_FILE).is_file():
        model_dir = Path(model_dir or work / "aligner")
        encoder = encoder or replace(ConformerConfig(), d_model=96, n_layers=3)
        train_metrics = train_ctc_aligner([train], model_dir, steps, batch_size=batch_size, encoder=encoder,
                                          resume=True, progress=progress)
    unaligned = work / "test-unaligned.jsonl"
    # absolute audio paths: the stripped copy lives in another directory than the test split
    stripped = (replace(r, words=None, audio=str(Path(r.audio).resolve())) for r in read_manifest(test))
    write_manifest(stripped, unaligned)
    began = time.perf_counter()
    result: dict[str, Any] = {"corpus": str(corpus), "model": str(model_dir), "train": train_metrics,
                              "min_confidence": min_confidence, "min_word_score": min_word_score}
    for rule, into_blanks in (("chars", False), ("into_blanks", True)):
        aligned = work / f"test-aligned-{rule}.jsonl"
        began = time.perf_counter()
        report = align_manifest(unaligned, model_dir, aligned, min_confidence=min_confidence,
                                min_word_score=min_word_score, into_blanks=into_blanks,
                                rejects=work / "test-rejects.jsonl", progress=progress)
        stats = score_alignment(aligned, test)
        result[rule] = {"aligned": report.aligned, "rejected": [r.format() for r in report.rejected],
                        "align_seconds": round(time.perf_counter() - began, 1), "boundary_error": stats.to_dict(),
                        "summary": stats.format()}
    return result

"""The main job on the embedded default: corpus -> text prior -> ASR speech LLMs -> held-out scores.

It is the JSTIP study's ``quick`` preset: one shared ASR warm-up (frozen whisper-base encoder; the adapter with
the LM frozen, then adapter + LM), continued for the same steps and seed ASR-only and with ASR + interleaved
sequences; both are scored on the held-out test set. Every step resumes: re-running the command skips finished
steps and continues an interrupted one (corpus synthesis per utterance, LM and ASR training from their last
checkpoint, transcription from its partial hypotheses file).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PLANS = {"default": "quick", "tiny": "quick-tiny"}  # demo plan -> JSTIP study preset


def run_main_job(out_dir: str | Path = "runs/main", corpus_dir: str | Path = "data/default", *,
                 plan: str = "default", progress: bool = True) -> dict[str, Any]:
    from speechbraid.evaluation.asr_metrics import format_report
    from speechbraid.experiments.jstip import run_jstip_study

    out = Path(out_dir)
    result = run_jstip_study(out, corpus_dir, preset=PLANS[plan], progress=progress)
    asr_only = json.loads((out / "rows" / "asr-only" / "seed0" / "test_eval.json").read_text(encoding="utf-8"))
    print("\nASR-only speech LLM on the held-out test set (entities never seen in training):")
    print(format_report(asr_only))
    print(f"\nresults: {out / 'results.json'}, table: {out / 'table.md'}, plot: {out / 'table.png'}")
    return result

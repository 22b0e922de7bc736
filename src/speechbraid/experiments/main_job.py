"""The main job on the embedded default: corpus -> ASR speech LLMs on SmolLM2 -> held-out scores.

It is the JSTIP study's ``quick`` preset: one shared ASR warm-up on SmolLM2-135M (frozen whisper-base encoder;
the adapter through the CTC bridge, then LoRA on the LLM), continued for the same steps and seed ASR-only and with
ASR + interleaved sequences; both are scored on the held-out test set (decoded by the LLM alone and jointly with
their CTC bridge) beside whisper-base on the same utterances, and so is the warm-up's CTC bridge alone and
beam-searched with word n-gram LMs (with and without domain text).
Every step resumes: re-running the command skips finished steps and continues an interrupted one (corpus
synthesis per utterance, training from its last checkpoint, transcription from its partial hypotheses file).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PLANS = {"default": "quick", "tiny": "quick-tiny"}  # demo plan -> JSTIP study preset


def run_main_job(out_dir: str | Path = "runs/main", corpus_dir: str | Path = "data/default", *,
                 plan: str = "default", progress: bool = True) -> dict[str, Any]:
    from speechbraid.experiments.jstip import PRESETS, run_jstip_study
    from speechbraid.metrics.asr import format_report

    out = Path(out_dir)
    result = run_jstip_study(out, corpus_dir, preset=PLANS[plan], progress=progress)
    reports = [("ASR-only speech LLM (LLM decoding) on the held-out test set (entities never seen in speech training)",
                out / "rows" / "asr-only" / "seed0" / "test_eval.json"),
               ("its CTC bridge beam-searched with the n-gram LM of transcripts, general and domain text (no LLM step)",
                out / "lm" / "domain_eval" / "test_eval.json"),
               # the open-source ASR a user would otherwise pick, on the same utterances
               (f"{PRESETS[PLANS[plan]].reference} on the same utterances", out / "reference" / "test_eval.json")]
    for title, path in reports:
        if path.is_file():
            print(f"\n{title}:")
            print(format_report(json.loads(path.read_text(encoding="utf-8"))))
    print(f"\nresults: {out / 'results.json'}, table: {out / 'table.md'}, plot: {out / 'table.png'}")
    return result

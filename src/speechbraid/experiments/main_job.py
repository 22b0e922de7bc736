"""The main job on the embedded default: corpus -> text prior -> ASR-only speech LLM -> held-out scores.

Every step is resumable: re-running the same command skips finished steps and continues an
interrupted one (corpus synthesis per utterance, LM and ASR training from their last checkpoint,
transcription from its partial hypotheses file).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speechbraid.config import load_config
from speechbraid.configs import resolve_config
from speechbraid.training.checkpoint import atomic_write_text


@dataclass(frozen=True)
class MainJobPlan:
    """Sizes of each step; ``default`` fits about 15 minutes on 2 CPU cores, ``tiny`` is for tests."""

    corpus_size: str
    lm_preset: str
    lm_steps: int | None  # None: the preset's own
    asr_overrides: tuple[str, ...]


PLANS: dict[str, MainJobPlan] = {
    "default": MainJobPlan("small", "small", None, ()),
    "tiny": MainJobPlan("tiny", "tiny", 20, (
        "model.conformer={d_model: 32, n_layers: 1, n_heads: 2}", "data.rows=2", "data.max_len=256",
        "stages=[{name: adapter, steps: 2, lr: 1.0e-3, trainable: ['^adapter\\.']}, "
        "{name: full, steps: 2, lr: 1.0e-3}]", "ckpt_every=2", "tensorboard=false")),
}


def run_main_job(out_dir: str | Path = "runs/main", corpus_dir: str | Path = "data/default", *,
                 plan: str = "default", seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) every step; returns and saves ``out_dir/results.json``."""
    from speechbraid.corpora import build_default_corpus
    from speechbraid.evaluation.asr_metrics import format_report
    from speechbraid.inference.transcribe import evaluate_model
    from speechbraid.training.pretrain_lm import pretrain_lm
    from speechbraid.training.trainer import TrainConfig, train

    steps = PLANS[plan]
    out, corpus = Path(out_dir), Path(corpus_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    def step(name: str) -> None:
        timings[name] = round(time.perf_counter() - started, 1)
        print(f"\n== {name} done ({timings[name]:.0f} s since start)", flush=True)

    started = time.perf_counter()
    print("== 1/4 default corpus (offline text + espeak-ng synthesis)", flush=True)
    summary = build_default_corpus(corpus, size=steps.corpus_size, seed=seed, progress=progress)
    print(summary.format())
    step("corpus")

    print("\n== 2/4 text prior: BPE tokenizer + small Llama on general + domain text", flush=True)
    lm_dir = out / "lm"
    lm = pretrain_lm([corpus / "text" / "general_lm.txt", corpus / "text" / "domain.txt"], lm_dir,
                     preset=steps.lm_preset, steps=steps.lm_steps, seed=seed, resume=True, progress=progress)
    print(f"validation perplexity {lm['val_perplexity']:.1f}")
    step("lm")

    print("\n== 3/4 ASR-only speech LLM (stage 1: adapter; stage 2: everything)", flush=True)
    train_manifest = corpus / "speech" / "train" / "manifest.jsonl"
    config = load_config(TrainConfig, resolve_config("asr_default"), [
        f"model.llm={lm_dir}", f"data.train=[{{manifest: '{train_manifest}', layout: asr}}]", f"seed={seed}",
        *steps.asr_overrides])
    final = train(config, out / "asr", resume=True, progress=progress)
    step("asr")

    print("\n== 4/4 transcribe the held-out test set (entities never seen in training) and score", flush=True)
    result = evaluate_model(out / "asr" / "model", corpus / "speech" / "test" / "manifest.jsonl",
                            hyps_out=out / "test_hyps.jsonl", progress=progress)
    print(format_report(result))
    step("evaluate")

    results = {"plan": plan, "seed": seed, "lm": lm, "asr_final_train_loss": final.get("loss"),
               "test": result, "timings_s": timings}
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    return results

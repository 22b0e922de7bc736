"""``speechbraid demo``: the main job on the embedded default data (no downloads)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        description="The main job, end to end on the embedded default: build the default corpus (offline text "
        "sources + espeak-ng synthesis, held-out test entities), train an ASR speech LLM on SmolLM2-135M (frozen "
        "whisper-base encoder, CTC-bridge adapter stage, then LoRA), continue it ASR-only and ASR + interleaved "
        "(JSTIP) for the same steps, transcribe the held-out test set and print WER/TER/EER per domain beside "
        "whisper-base on the same utterances. Re-running resumes: finished steps are skipped, interrupted ones "
        "continue.",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/main"), help="run directory (default: %(default)s)")
    parser.add_argument("--corpus", type=Path, default=Path("data/default"),
                        help="corpus directory (default: %(default)s)")
    parser.add_argument("--plan", choices=("default", "tiny"), default="default",
                        help="sizes: default (measured 36 min on 2 cores from a fresh clone) or tiny (a smoke test)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from speechbraid.experiments.main_job import run_main_job

    run_main_job(args.out, args.corpus, plan=args.plan)
    return 0

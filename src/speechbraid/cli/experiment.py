"""``speechbraid experiment NAME``: the studies that compose the whole toolkit."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    from speechbraid.experiments.jstip import PRESETS, ROWS

    parser = subparsers.add_parser(
        "experiment",
        description="Run a study end to end (resumable: re-run the same command to continue).",
    )
    studies = parser.add_subparsers(dest="study", metavar="STUDY", required=True)
    jstip = studies.add_parser(
        "jstip", help="JSTIP: ASR-only vs joint vs interleaved training, domain text / TTS, IL ablation",
        description="Train every row (same model, steps and seeds) from one shared stage 1 and score WER, "
        "EER per domain on held-out entities, T2T/S2T multiple-choice accuracy and gap, and zero-shot "
        "spoken QA; writes results.json, table.md and table.png. Rows: " + "; ".join(ROWS) + ".",
    )
    jstip.add_argument("--preset", choices=sorted(PRESETS), default="small",
                       help="small: every row, 2 seeds (2-core CPU); quick: ASR-only vs +IL; tiny: smoke test")
    jstip.add_argument("--rows", nargs="+", metavar="ROW", help="only these rows (quote names with spaces)")
    jstip.add_argument("--out", type=Path, default=Path("runs/jstip"))
    jstip.add_argument("--corpus", type=Path, default=Path("data/default"))
    jstip.add_argument("--lm", type=Path, help="a trained text LM directory (default: pretrain one into OUT/lm)")
    jstip.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from speechbraid.experiments.jstip import run_jstip_study

    run_jstip_study(args.out, args.corpus, preset=args.preset, lm_dir=args.lm, rows=args.rows)
    return 0

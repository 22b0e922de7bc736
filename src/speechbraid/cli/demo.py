"""``speechbraid demo``: the main job on the embedded default data (no downloads)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        description="Build the embedded default corpus (offline text sources + espeak-ng synthesis, "
        "with held-out test entities) and print its statistics. Re-running resumes/skips finished work.",
    )
    parser.add_argument("--out", type=Path, default=Path("data/default"),
                        help="output directory (default: %(default)s)")
    parser.add_argument("--size", choices=("tiny", "small", "medium"), default="small", help="corpus size preset")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=None, help="synthesis processes (default: all cores)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from speechbraid.corpora import build_default_corpus

    summary = build_default_corpus(args.out, size=args.size, seed=args.seed, jobs=args.jobs, progress=True)
    print(summary.format())
    print(f"\nCorpus written to {args.out}/ (statistics in {args.out}/summary.json)")
    return 0

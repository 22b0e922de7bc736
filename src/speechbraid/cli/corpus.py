"""``speechbraid corpus``: build the offline default corpus, or print the statistics of one."""

from __future__ import annotations

import argparse
from typing import Any

from speechbraid.corpora import DEFAULT_PIPER_SHARE, SIZES, build_default_corpus, summarize_corpus


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "corpus",
        description=(
            "Build the default corpus offline from Debian text packages (WordNet, fortunes, GCIDE) and "
            "the drug dictionary of drug-named-entity-recognition: general English plus entity-rich "
            "medical and banking sentences, with dev/test entities held out of all training text, and "
            "synthesised speech for the train/dev/test splits (espeak-ng voices, and a share spoken by the neural "
            "Piper voice). Re-running finishes an interrupted build."
        ),
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = actions.add_parser(
        "build", help="build (or resume building) the default corpus",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    build.add_argument("--out", default="data/default", metavar="DIR", help="output directory")
    build.add_argument("--size", choices=tuple(SIZES), default="small",
                       help="tiny: seconds (tests); small: minutes; medium: bigger runs")
    build.add_argument("--seed", type=int, default=0, help="seed for sentence choice, splits and voices")
    build.add_argument("--no-synth", action="store_true", help="write the text corpora only, no audio")
    build.add_argument("--engine", choices=("espeak", "piper"), default="espeak",
                       help="TTS engine of the utterances Piper does not speak")
    build.add_argument("--piper-share", type=float, default=DEFAULT_PIPER_SHARE, metavar="F",
                       help="share of each speech split and domain spoken by the neural Piper voice (0: none)")
    build.add_argument("--jobs", type=int, default=None, metavar="N", help="synthesis worker processes")
    build.set_defaults(func=run)
    stats = actions.add_parser("stats", help="print the statistics of a built corpus")
    stats.add_argument("dir", metavar="DIR", help="corpus directory (the --out of 'corpus build')")
    stats.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.action == "build":
        summary = build_default_corpus(
            args.out, size=args.size, seed=args.seed, synth=not args.no_synth, engine=args.engine,
            piper_share=args.piper_share, jobs=args.jobs,
        )
    else:
        summary = summarize_corpus(args.dir)
    print(summary.format())
    return 0

"""``speechbraid corpus``: build the offline default corpus, or print the statistics of one."""

from __future__ import annotations

import argparse
from typing import Any

from speechbraid.corpora import DEFAULT_PIPER_SHARE, SIZES, build_default_corpus, summarize_corpus
from speechbraid.corpora.recorded import RECORDED_SOURCES, build_recorded_corpus, summarize_recorded


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
    real = actions.add_parser(
        "real", help="manifest of real recorded English speech shipped by installed Debian packages",
        description=(
            "Copy the recordings with transcripts that installed Debian packages ship (pocketsphinx-testdata: "
            "LibriVox and CMU test speech; alsa-utils: speaker-test prompts) as 16 kHz WAVs into DIR and write "
            "DIR/manifest.jsonl with source 'recorded:<package>' and the license of each record. Installs nothing: "
            "a missing package is named (scripts/setup.sh installs both)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    real.add_argument("--out", default="data/recorded", metavar="DIR", help="output directory")
    real.add_argument("--source", action="append", choices=tuple(RECORDED_SOURCES), metavar="PACKAGE",
                      help=f"package to read (repeatable; default: all of {', '.join(RECORDED_SOURCES)})")
    real.set_defaults(func=run)
    stats = actions.add_parser("stats", help="print the statistics of a built corpus")
    stats.add_argument("dir", metavar="DIR", help="corpus directory (the --out of 'corpus build')")
    stats.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.action == "real":
        records = build_recorded_corpus(args.out, args.source)
        print(summarize_recorded(records))
        print(f"manifest: {args.out}/manifest.jsonl")
        return 0
    if args.action == "build":
        summary = build_default_corpus(
            args.out, size=args.size, seed=args.seed, synth=not args.no_synth, engine=args.engine,
            piper_share=args.piper_share, jobs=args.jobs,
        )
    else:
        summary = summarize_corpus(args.dir)
    print(summary.format())
    return 0

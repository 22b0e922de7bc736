"""``speechbraid ngram-lm``: build a word n-gram LM (ARPA) for the CTC bridge's beam search (``--decoder ctc-lm``)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ngram-lm",
        description=(
            "Build an interpolated Kneser-Ney word n-gram LM of plain text (one sentence per non-blank line; "
            "normalised like transcripts for WER) and write it as ARPA (gzipped when --out ends in .gz). "
            "'speechbraid transcribe/evaluate --decoder ctc-lm' fuse it into the CTC bridge's beam search; a model "
            "directory's lm.arpa.gz is used by default. Any ARPA file (e.g. from KenLM's lmplz) works the same."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--text", nargs="+", required=True, type=Path, metavar="FILE",
                        help="UTF-8 text files: speech transcripts, domain text, general text")
    parser.add_argument("--out", required=True, type=Path, metavar="FILE.arpa[.gz]", help="where to write the LM")
    parser.add_argument("--order", type=int, default=3, help="n-gram order")
    parser.add_argument("--discount", type=float, default=0.75, help="Kneser-Ney absolute discount (0-1)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from speechbraid.errors import ConfigError
    from speechbraid.models.ngram_lm import build_ngram_lm_file

    if args.order < 1 or not 0.0 < args.discount < 1.0:
        raise ConfigError(f"--order must be >= 1 and --discount between 0 and 1 (got {args.order}, {args.discount})")
    lm = build_ngram_lm_file(args.text, args.out, args.order, args.discount)
    sizes = ", ".join(f"{len(t)} {k + 1}-grams" for k, t in enumerate(lm.tables))
    print(f"{args.out}: {len(lm.vocabulary)} words; {sizes}")
    return 0

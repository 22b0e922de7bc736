"""``speechbraid convert``: move records between manifest formats, optionally attaching word alignments."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from speechbraid.data.interop import (
    AttachReport,
    TextGridDirectory,
    attach_alignments,
    read_ctm,
    read_cutset,
    read_nemo,
    write_ctm,
    write_cutset,
    write_nemo,
    write_textgrids,
)
from speechbraid.data.manifest import read_manifest, write_manifest
from speechbraid.data.records import Utterance
from speechbraid.errors import ConfigError

READ_FORMATS = ("manifest", "lhotse", "nemo")
WRITE_FORMATS = (*READ_FORMATS, "ctm", "textgrid")
ALIGNMENT_FORMATS = ("ctm", "textgrid")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "convert",
        description=(
            "Read INPUT in the --from format and write OUTPUT in the --to format (both default to a\n"
            "speechbraid JSONL manifest).\n\n"
            "formats:\n"
            "  manifest  speechbraid JSONL manifest\n"
            "  lhotse    lhotse cuts manifest (.jsonl or .jsonl.gz); text-only records cannot be cuts\n"
            "  nemo      NeMo JSONL (audio_filepath, duration, text, optional offset)\n"
            "  ctm       output only: word alignments, '<id> <channel> <start> <duration> <word> [<conf>]'\n"
            "  textgrid  output only: a directory with one <id>.TextGrid (tier 'words') per utterance\n\n"
            "--attach-alignments ctm FILE, or --attach-alignments textgrid DIR (e.g. Montreal Forced\n"
            "Aligner output), sets the word alignments of the records by utterance id on the way. Ids on\n"
            "one side only are listed in the summary, never dropped silently."
        ),
        epilog=(
            "examples:\n"
            "  speechbraid convert train.jsonl cuts.jsonl.gz --to lhotse\n"
            "  speechbraid convert nemo_train.json train.jsonl --from nemo\n"
            "  speechbraid convert train.jsonl aligned.jsonl --attach-alignments textgrid mfa_out/\n"
            "  speechbraid convert train.jsonl words.ctm --to ctm --skip-unconvertible"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", metavar="INPUT", help="file to read (format from --from)")
    parser.add_argument("output", metavar="OUTPUT", help="file (or directory for --to textgrid) to write")
    parser.add_argument("--from", dest="source_format", choices=READ_FORMATS, default="manifest",
                        help="format of INPUT (default: manifest)")
    parser.add_argument("--to", dest="target_format", choices=WRITE_FORMATS, default="manifest",
                        help="format of OUTPUT (default: manifest)")
    parser.add_argument("--attach-alignments", nargs=2, metavar=("FORMAT", "SRC"),
                        help="attach word alignments from a CTM file (ctm FILE) or a directory of "
                             "TextGrids named <utterance id>.TextGrid (textgrid DIR)")
    parser.add_argument("--tier", default="words",
                        help="TextGrid tier holding the words (default: words, as MFA writes)")
    parser.add_argument("--skip-unconvertible", action="store_true",
                        help="skip and list the records the target format cannot hold (text-only records "
                             "for lhotse/nemo, records without word alignment for ctm/textgrid) instead "
                             "of stopping at the first one")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    skipped: list[str] | None = [] if args.skip_unconvertible else None
    records = _read(args.source_format, args.input, skipped)
    report: AttachReport | None = None
    if args.attach_alignments:
        report = AttachReport()
        records = attach_alignments(records, _alignments(*args.attach_alignments, tier=args.tier), report)
    written = _WRITERS[args.target_format](records, args.output, skipped)
    unit = "words" if args.target_format == "ctm" else "records"
    print(f"wrote {written} {unit} to {args.output} ({args.target_format})", file=sys.stderr)
    if report is not None:
        print(report.summary(), file=sys.stderr)
    if skipped:
        more = f", ... (+{len(skipped) - 10} more)" if len(skipped) > 10 else ""
        print(f"skipped {len(skipped)} record(s) the target format cannot hold: {', '.join(skipped[:10])}{more}",
              file=sys.stderr)
    return 0


def _read(fmt: str, path: str, skipped: list[str] | None) -> Iterator[Utterance]:
    if fmt == "lhotse":
        return read_cutset(path, skipped)
    if fmt == "nemo":
        return read_nemo(path)
    return read_manifest(path)


def _alignments(fmt: str, src: str, tier: str) -> Any:
    if fmt == "ctm":
        return read_ctm(src)
    if fmt == "textgrid":
        return TextGridDirectory(src, tier=tier)
    raise ConfigError(f"--attach-alignments FORMAT must be one of {', '.join(ALIGNMENT_FORMATS)}, got {fmt!r}")


def _write_manifest(records: Iterable[Utterance], path: str, skipped: list[str] | None) -> int:
    return write_manifest(records, Path(path))


_WRITERS: dict[str, Callable[[Iterable[Utterance], str, list[str] | None], int]] = {
    "manifest": _write_manifest,
    "lhotse": write_cutset,
    "nemo": write_nemo,
    "ctm": lambda records, path, skipped: write_ctm(records, path, skipped=skipped),
    "textgrid": write_textgrids,
}

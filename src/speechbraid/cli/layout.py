"""``speechbraid layout``: show the braids a layout builds from a manifest (JSON, text drawing, picture)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from typing import Any

from speechbraid.braid.spans import Braid
from speechbraid.data.manifest import iter_manifest
from speechbraid.data.records import Utterance
from speechbraid.data.segment import SEGMENT_MODES
from speechbraid.errors import ConfigError, InputError
from speechbraid.layouts.interleave import VARIANTS
from speechbraid.layouts.registry import UTTERANCE_LAYOUTS, VARIANT_CHOICES, get_layout
from speechbraid.layouts.render import (
    DEFAULT_FRAME_RATE,
    BraidView,
    NullTokenizer,
    braid_json,
    format_utterance,
    legend,
    plot_braids,
)
from speechbraid.layouts.tokenizer import TextTokenizer

DEFAULT_TOKENIZER = "default-lm"  # the text prior `speechbraid pretrain-lm` registers
PLOT_LIMIT = 8  # utterances drawn when --plot is given without --limit (a taller PNG is unreadable)
SKIP_LISTED = 10  # skipped utterances named one by one in the report; the rest are counted


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "layout",
        description=(
            "Show, utterance by utterance, the braided sequence a layout builds: speech spans as time ranges "
            "of the audio with their adapter frames [first,last), text spans with their token ids, special "
            "tokens by name, and which spans carry loss. --json prints one JSON object per utterance; "
            "otherwise a drawing for people (loss text marked ^^^, or bold/underlined on a terminal); --plot "
            "also draws the braids into a PNG. Utterances the layout cannot use (no word alignment for "
            "interleaved layouts, no audio for speech layouts) are errors naming file:line, or with "
            "--skip-unaligned are reported and skipped."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--manifest", required=True, metavar="MANIFEST", help="JSONL manifest")
    parser.add_argument("--format", required=True, choices=UTTERANCE_LAYOUTS, help="layout to build")
    parser.add_argument("--variant", choices=VARIANT_CHOICES, default="speech-first",
                        help="interleaved layouts: which alternation (A1 T2 ... or T1 A2 ...); 'both' shows both")
    parser.add_argument("--segment-by", choices=SEGMENT_MODES, default="silence",
                        help="segment-il / mixed-il: where segments break")
    parser.add_argument("--tokenizer", default=DEFAULT_TOKENIZER, metavar="NAME_OR_DIR",
                        help="registered model name or HF tokenizer directory; 'none' shows text without token ids")
    parser.add_argument("--frame-rate", type=float, default=DEFAULT_FRAME_RATE,
                        help="adapter frames per second (12.5 = 80 ms frames)")
    parser.add_argument("--limit", type=int, metavar="N",
                        help=f"show the first N usable utterances (default: all; {PLOT_LIMIT} with --plot)")
    parser.add_argument("--skip-unaligned", action="store_true",
                        help="report and skip utterances the layout cannot use instead of stopping at the first")
    parser.add_argument("--json", action="store_true", help="print one JSON object per utterance (JSON lines)")
    parser.add_argument("--plot", metavar="FILE.png", help="also draw the braids into this PNG")
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                        help="text drawing: ANSI styles instead of ^^^ marks (auto: when stdout is a terminal)")
    parser.add_argument("--width", type=int, help="text drawing: line width (default: the terminal's)")
    parser.set_defaults(func=run)


def load_tokenizer(name_or_dir: str) -> TextTokenizer:
    """The LLM tokenizer of a registered model or HF directory; ``none`` gives :class:`NullTokenizer`."""
    if name_or_dir == "none":
        return NullTokenizer()
    from speechbraid.models.registry import resolve_model

    try:
        directory = resolve_model(name_or_dir)
    except ConfigError as exc:
        raise ConfigError(
            f"cannot find tokenizer {name_or_dir!r}: {exc} The default tokenizer is {DEFAULT_TOKENIZER!r}, which "
            f"`speechbraid pretrain-lm` creates; or pass any Hugging Face tokenizer directory with --tokenizer DIR, "
            "or --tokenizer none to show text without token ids."
        ) from None
    from transformers import AutoTokenizer

    from speechbraid.layouts.tokenizer import HFTextTokenizer

    try:
        return HFTextTokenizer(AutoTokenizer.from_pretrained(directory))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{directory} holds no usable Hugging Face tokenizer: {exc}") from None


def braids_to_show(record: Utterance, layout: str, tokenizer: TextTokenizer, variant: str = "speech-first",
                   segment_by: str = "silence") -> list[Braid]:
    """Every braid the layout can make of ``record`` under ``variant``: one per alternation, and for
    ``mixed-il`` both its word-level and segment-level forms (``choice`` picks them, as in training)."""
    spec = get_layout(layout)
    if not spec.interleaves:
        return [spec.build(record, tokenizer)]
    variants = VARIANTS if variant == "both" else (variant,)
    return [spec.build(record, tokenizer, variant=v, segment_by=segment_by, choice=c)
            for v in variants for c in spec.form_choices()]


def run(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {args.limit}")
    if args.frame_rate <= 0:
        raise ConfigError(f"--frame-rate must be > 0, got {args.frame_rate}")
    if args.plot and not args.plot.lower().endswith(".png"):
        raise ConfigError(f"--plot writes a PNG: give a file name ending in .png, got {args.plot!r}")
    limit = args.limit
    if args.plot and limit is None:
        limit = PLOT_LIMIT
        print(f"layout: --plot without --limit: showing the first {PLOT_LIMIT} utterances", file=sys.stderr)
    view = BraidView.for_tokenizer(load_tokenizer(args.tokenizer), args.frame_rate)
    color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty() and "NO_COLOR" not in os.environ)
    width = args.width or shutil.get_terminal_size((100, 24)).columns
    if not args.json:
        print(legend(view, color) + "\n")
    layout = get_layout(args.format)
    skipped: list[str] = []
    drawn: list[tuple[str, Braid]] = []
    shown = 0
    for item in iter_manifest(args.manifest):
        if limit is not None and shown >= limit:
            break
        record = item.record
        lacks = layout.lacks(record)
        if lacks is not None:
            if not args.skip_unaligned:
                raise InputError(f"utterance {record.id!r} has {lacks}, which layout {args.format!r} needs "
                                 "(pass --skip-unaligned to skip such utterances)", item.path, item.line)
            skipped.append(f"{item.where()} [{record.id}] has {lacks}")
            continue
        try:
            braids = braids_to_show(record, args.format, view.tokenizer, args.variant, args.segment_by)
        except ValueError as exc:  # e.g. a word that ends before it starts
            raise InputError(f"utterance {record.id!r}: {exc} (check it with `speechbraid validate`)",
                             item.path, item.line) from None
        shown += 1
        if args.json:
            print(json.dumps({"id": record.id, "where": item.where(), "audio": record.audio,
                              "duration": record.duration, "text": record.text,
                              "braids": [braid_json(b, view) for b in braids]}, ensure_ascii=False))
        else:
            duration = "text only" if record.duration is None else f"{record.duration:.2f} s"
            header = f"{record.id}  {args.format}  {duration}  ({item.where()})  {json.dumps(record.text)}"
            print(format_utterance(header, braids, view, width, color) + "\n")
        drawn += [(f"{record.id}\n{b.layout}", b) for b in braids]
    if skipped:
        listed = "\n  ".join(skipped[:SKIP_LISTED])
        more = f"\n  ... and {len(skipped) - SKIP_LISTED} more" if len(skipped) > SKIP_LISTED else ""
        print(f"layout: skipped {len(skipped)} utterance(s) that layout {args.format!r} cannot use:\n  {listed}{more}",
              file=sys.stderr)
    if not shown:
        print(f"layout: no utterance of {args.manifest} to show", file=sys.stderr)
    if args.plot and drawn:
        path = plot_braids(drawn, view, args.plot)
        print(f"layout: drew {len(drawn)} braid(s) of {shown} utterance(s) into {path}", file=sys.stderr)
    return 0

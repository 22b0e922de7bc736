"""``speechbraid evaluate``: transcribe a reference manifest with a model and score it."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from speechbraid.cli.transcribe import add_decoding_options
from speechbraid.inference.transcribe import describe_skipped, evaluate_model, load_transcriber
from speechbraid.metrics.asr import format_report


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        description=(
            "Transcribe every utterance with audio in a reference manifest and print WER (normalised text), "
            "TER (raw text) and the entity error rate, overall, per domain and per entity type, with the "
            "real-time factor. Text-only records are skipped and counted. --out keeps the hypotheses as JSONL "
            "for 'speechbraid score'."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--manifest", required=True, metavar="MANIFEST", help="reference JSONL manifest")
    add_decoding_options(parser)
    parser.add_argument("--out", metavar="HYPS.jsonl",
                        help="also write the hypotheses as JSONL; finished batches are kept in HYPS.jsonl.partial so "
                        "re-running the same command after an interruption resumes")
    parser.add_argument("--max-missed", type=int, default=20, metavar="N",
                        help="list at most N missed entities in the text report; -1 lists all")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    skipped: list[str] = []
    transcriber = load_transcriber(args.model, args.device, args.decoder, args.lm, args.ctc_weight, args.precision)
    result = evaluate_model(transcriber, args.manifest, batch_size=args.batch_size, beam_size=args.beam,
                            max_new_tokens=args.max_new_tokens, context=args.context, device=args.device,
                            hyps_out=args.out, skipped=skipped)
    if skipped:
        print(f"speechbraid evaluate: {describe_skipped(skipped)}", file=sys.stderr)
    for warning in result["warnings"]:
        print(f"speechbraid evaluate: warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        print(f"model: {result['model']}\nmanifest: {result['manifest']}\nutterances: {result['n']}")
        print(format_report(result, max_missed=args.max_missed))
        rtf = "-" if result["rtf"] is None else f"{result['rtf']:.3f}"
        resumed = f" ({result['resumed']} transcript(s) resumed from an interrupted run)" if result["resumed"] else ""
        print(f"audio: {result['audio_seconds']:.2f} s, wall: {result['wall_seconds']:.2f} s, RTF {rtf}{resumed}")
    return 0

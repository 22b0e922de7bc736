"""``speechbraid validate``: check a manifest line by line; report, or write the clean records."""

from __future__ import annotations

import argparse
import json
from typing import Any

from speechbraid.data.audio import DEFAULT_SAMPLE_RATE
from speechbraid.data.validate import validate_manifest


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "validate",
        description=(
            "Check every line of a JSONL manifest: parse errors, missing or unreadable audio, sample "
            "rate and duration against the audio header (never decoded), word alignments against the "
            "audio and the text, entity offsets, empty texts and duplicate ids. Problems are listed as "
            "FILE:LINE: [ID] CODE: MESSAGE. With --policy fail (default) the exit status is 1 when any "
            "record has an error; with --policy skip the clean records go to --output and every "
            "skipped record is reported."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("manifest", metavar="MANIFEST", help="JSONL manifest to check")
    parser.add_argument("--policy", choices=("fail", "skip"), default="fail",
                        help="fail: report and exit 1 on errors; skip: write clean records to --output")
    parser.add_argument("--output", metavar="CLEAN.jsonl", help="clean manifest to write (needs --policy skip)")
    parser.add_argument("--rejects", metavar="REJECTS.jsonl",
                        help="write every bad record's file, line, id and reasons here (no cap)")
    parser.add_argument("--sample-rate", type=int, default=DEFAULT_SAMPLE_RATE,
                        help="expected audio sample rate in Hz; 0 accepts any rate")
    parser.add_argument("--duration-tolerance", type=float, default=0.05,
                        help="seconds a declared duration or a word end may exceed the audio")
    parser.add_argument("--no-audio-check", action="store_true",
                        help="do not open audio files (trust declared sample_rate and duration)")
    parser.add_argument("--max-report", type=int, default=1000, metavar="N",
                        help="list at most N problems (counts always cover all); -1 lists all")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    report = validate_manifest(
        args.manifest,
        policy=args.policy,
        output=args.output,
        rejects=args.rejects,
        expected_sample_rate=args.sample_rate or None,
        duration_tolerance=args.duration_tolerance,
        check_audio=not args.no_audio_check,
        max_problems=None if args.max_report < 0 else args.max_report,
        progress=True,
    )
    print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) if args.json else report.format())
    return 1 if args.policy == "fail" and not report.ok else 0

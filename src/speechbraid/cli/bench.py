"""``speechbraid bench SUITE``: speed and memory figures, measured side by side in one run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SUITES = ("data",)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        description="Measure speed and memory figures on this machine and print them as tables (or JSON). "
        "Suites: data (synthesis speed per engine, manifest validation throughput and peak memory at two "
        "manifest sizes, log-mel extraction speed).",
    )
    parser.add_argument("suite", choices=SUITES, help="which benchmark suite to run")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--save", type=Path, help="also write the JSON result to this file")
    parser.add_argument("--lines", type=int, nargs="+", default=[10_000, 100_000],
                        help="data: manifest sizes for the validation benchmark (default: %(default)s)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from speechbraid.benchmarks.data import bench_data, format_data

    result = bench_data(manifest_lines=args.lines)
    text = format_data(result)
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(json.dumps(result, indent=2) if args.json else text)
    return 0

"""``speechbraid`` console command: dispatches to one module per subcommand."""

from __future__ import annotations

import argparse
import importlib
import sys

from speechbraid import __version__
from speechbraid.errors import SpeechbraidError

# Each module defines ``register(subparsers)`` that adds its parser and sets ``func``.
# Order here is the order in ``speechbraid --help``.
COMMANDS: tuple[str, ...] = (
    "validate",
    "segment",
    "pretrain_lm",
    "import_whisper",
    "corpus",
    "synth",
    "score",
    "convert",
    "features",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="speechbraid",
        description="Braid speech and text into one sequence for decoder-only speech LLMs.",
        epilog="Run 'speechbraid COMMAND --help' for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"speechbraid {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"speechbraid.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except SpeechbraidError as exc:
        print(f"speechbraid {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"speechbraid {args.command}: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

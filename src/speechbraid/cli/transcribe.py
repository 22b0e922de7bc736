"""``speechbraid transcribe``: audio files and/or manifests -> one transcript line per input."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from speechbraid.inference.transcribe import (
    DECODERS,
    DEFAULT_CTC_WEIGHT,
    PRECISIONS,
    collect_inputs,
    describe_skipped,
    hypothesis_lines,
    load_transcriber,
    partial_path,
    transcribe_resumable,
    write_lines,
)


def add_decoding_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``transcribe`` and ``evaluate``."""
    parser.add_argument("--model", required=True, metavar="NAME_OR_DIR",
                        help="a speech LLM directory (speechbraid.json), a Whisper HF checkpoint, or a registered name")
    parser.add_argument("--beam", type=int, default=1, metavar="N", help="beam size (1 = greedy; speech LLMs only)")
    parser.add_argument("--batch-size", type=int, default=8, metavar="N", help="utterances decoded together")
    parser.add_argument("--max-new-tokens", type=int, default=None, metavar="N",
                        help="longest transcript in tokens (speech LLMs only; default 128)")
    parser.add_argument("--context", metavar="TEXT",
                        help="text prompt placed before the speech, e.g. a domain hint (speech LLMs only)")
    parser.add_argument("--device", metavar="DEV", help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--decoder", choices=DECODERS, default="llm",
                        help="llm: the speech LLM decodes (default); llm-ctc: the speech LLM's beam search scored "
                             "jointly with its CTC bridge's prefix probabilities (hybrid CTC/attention decoding; "
                             "with --lm also a word n-gram); ctc: the CTC bridge's greedy output alone, no LLM "
                             "step (speech LLMs trained with model.ctc); ctc-lm: the CTC bridge's beam search fused "
                             "with a word n-gram LM (the model's lm.arpa.gz, or --lm)")
    parser.add_argument("--lm", metavar="FILE.arpa[.gz]",
                        help="word n-gram LM for --decoder ctc-lm or llm-ctc (ARPA; 'speechbraid ngram-lm' builds one)")
    parser.add_argument("--ctc-weight", type=float, default=DEFAULT_CTC_WEIGHT, metavar="W",
                        help="--decoder llm-ctc: weight of the CTC bridge (and n-gram) against the LLM, in [0, 1)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="autocast of the speech LLM's decoding, or a Whisper model's weights: auto = bf16 where "
                             "the device has it natively (bf16 GPUs, CPUs with AVX512-BF16 or AMX), else fp32")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "transcribe",
        description=(
            "Transcribe audio files (WAV, FLAC, anything soundfile reads) and/or JSONL manifests (.jsonl, .json) "
            "with a speech LLM or a Whisper checkpoint. Prints one 'path<TAB>text' line per input in input "
            "order, or with --json one {\"id\", \"audio\", \"text\"} object per line (what 'speechbraid score "
            "--hyp' reads; an audio file's id is its file stem, a manifest record keeps its id). Text-only "
            "manifest records are skipped and counted. Progress and the real-time factor go to stderr."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", metavar="FILE", help="audio files and/or JSONL manifests")
    add_decoding_options(parser)
    parser.add_argument("--json", action="store_true", help="write JSONL {\"id\", \"audio\", \"text\"} lines")
    parser.add_argument("--out", metavar="FILE",
                        help="write the lines to FILE instead of stdout; finished batches are kept in FILE.partial "
                        "so re-running the same command after an interruption resumes")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    skipped: list[str] = []
    items = collect_inputs(args.inputs, skipped)  # every audio header is checked before the model loads
    if skipped:
        print(f"speechbraid transcribe: {describe_skipped(skipped)}", file=sys.stderr)
    transcriber = load_transcriber(args.model, args.device, args.decoder, args.lm, args.ctc_weight, args.precision)
    options = dict(batch_size=args.batch_size, beam_size=args.beam, max_new_tokens=args.max_new_tokens,
                   context=args.context)
    if args.out:
        result, resumed = transcribe_resumable(transcriber, items, partial_path(args.out), **options)
        if resumed:
            print(f"speechbraid transcribe: resumed: {resumed} of {len(items)} transcript(s) taken from "
                  f"{partial_path(args.out)}", file=sys.stderr)
        write_lines(hypothesis_lines(items, result.texts, as_json=args.json), args.out)
        partial_path(args.out).unlink()
    else:
        result = transcriber.transcribe(items, **options)
        sys.stdout.writelines(line + "\n" for line in hypothesis_lines(items, result.texts, as_json=args.json))
    for warning in result.warnings:
        print(f"speechbraid transcribe: warning: {warning}", file=sys.stderr)
    print(f"speechbraid transcribe: {len(items)} input(s); transcribed {result.speed()}", file=sys.stderr)
    return 0

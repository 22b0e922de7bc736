"""``speechbraid bench SUITE``: speed and memory figures, measured side by side in one run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

SUITES = ("data", "train", "asr-decode", "jstip", "decode", "llm")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        description="Measure speed and memory figures on this machine and print them as tables (or JSON). "
        "Suites: data (synthesis speed per engine, manifest validation throughput and peak memory at two "
        "manifest sizes, training data path peak memory as the manifest grows and braids/s per rank in a world of "
        "1 and 2, log-mel extraction speed); train (speech-LLM step throughput against the bare LLM on "
        "the same packed batches, packing efficiency against plain padding, achieved FLOP/s against a plain "
        "matmul, step throughput reading encoder outputs from the disk store against RAM); asr-decode (greedy "
        "decoding with and without the KV cache, transcription real-time factor "
        "on CPU); jstip (word-level interleaving: single-pass encode+scatter against encoding every speech span "
        "separately - step time, peak memory, loss; word-il and segment-il training throughput against ASR-only; "
        "braid building rate per layout); decode (joint text-speech generation per pattern - interleaved, esi, "
        "parallel - on one model and prompt set: decoding steps, sequence length, wall time, units/s, time to first "
        "audio chunk, teacher-forced length ratios on reference answers, KV-cache speed-up, batched throughput; "
        "--model or an untrained stand-in); llm (one causal LM's fwd+bwd step throughput with its weights frozen, with "
        "LoRA and fully trained, AdamW included, on the same batches, and greedy KV-cache decoding speed; --model, "
        "default the registered 'smollm2-135m'). train, asr-decode and jstip use the default corpus when it exists "
        "(else a tiny stand-in built for "
        "the run) and the registered 'default-lm' when there is one (else an untrained small Llama).",
    )
    parser.add_argument("suite", choices=SUITES, help="which benchmark suite to run")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--save", type=Path, help="also write the JSON result to this file")
    parser.add_argument("--lines", type=int, nargs="+", default=[10_000, 100_000],
                        help="data: manifest sizes for the validation benchmark (default: %(default)s)")
    parser.add_argument("--train-lines", type=int, nargs="+", default=[10_000, 100_000, 1_000_000],
                        help="data: manifest sizes for the training data path benchmark; throughput is measured on "
                        "the smallest (default: %(default)s)")
    parser.add_argument("--steps", type=int,
                        help="train: measured steps per row, after one warm-up step; jstip: measured batches "
                        "per row; llm: measured steps per row after one warm-up step, and decoding repeats "
                        "(default: 5 for train, 2 for jstip, 3 for llm)")
    parser.add_argument("--corpus", type=Path, default=Path("data/default"),
                        help="train, asr-decode, jstip: default corpus directory (default: %(default)s)")
    parser.add_argument("--device",
                        help="train, asr-decode, jstip, llm: torch device (default: cuda if available, else cpu)")
    parser.add_argument("--model", type=Path,
                        help="decode: a trained speech-LLM directory with units (default: an untrained stand-in); "
                        "llm: a causal LM directory or registered name (default: smollm2-135m when registered, "
                        "else the stand-in LLM of train)")
    parser.add_argument("--patterns", default="interleaved,esi,parallel",
                        help="decode: comma-separated generation patterns (default: %(default)s)")
    parser.add_argument("--qa", type=Path,
                        help="decode: spoken QA file with units for prompts and reference answers "
                        "(default: candidate questions, answer lengths from espeak-ng)")
    parser.add_argument("--max-steps", type=int, default=160,
                        help="decode: decoding steps per response at most (default: %(default)s)")
    parser.add_argument("--kv-steps", type=int, default=48,
                        help="decode: steps of the KV cache vs full recompute comparison (default: %(default)s)")
    parser.add_argument("--rows", type=int, default=4, help="llm: rows per training batch (default: %(default)s)")
    parser.add_argument("--length", type=int, default=384,
                        help="llm: positions per training row (default: %(default)s)")
    parser.add_argument("--decode-batch", type=int, default=8,
                        help="llm: prompts decoded together (default: %(default)s)")
    parser.add_argument("--prompt-tokens", type=int, default=128,
                        help="llm: prompt length for decoding (default: %(default)s)")
    parser.add_argument("--new-tokens", type=int, default=64,
                        help="llm: tokens generated per prompt (default: %(default)s)")
    parser.set_defaults(func=run)


def _steps(args: argparse.Namespace, default: int) -> int:
    from speechbraid.errors import ConfigError

    steps = default if args.steps is None else args.steps
    if steps < 1:
        raise ConfigError(f"--steps must be >= 1, got {steps}")
    return steps


def _measure(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    if args.suite == "data":
        from speechbraid.benchmarks.data import bench_data, format_data

        result = bench_data(manifest_lines=args.lines, train_lines=args.train_lines)
        return result, format_data(result)
    if args.suite == "train":
        from speechbraid.benchmarks.train import bench_train, format_train

        result = bench_train(args.corpus, steps=_steps(args, 5), device=args.device)
        return result, format_train(result)
    if args.suite == "jstip":
        from speechbraid.benchmarks.jstip import bench_jstip, format_jstip

        result = bench_jstip(args.corpus, steps=_steps(args, 2), device=args.device)
        return result, format_jstip(result)
    if args.suite == "decode":
        from speechbraid.benchmarks.decode import bench_decode, format_decode

        result = bench_decode(args.model, [p for p in args.patterns.split(",") if p], qa=args.qa,
                              max_steps=args.max_steps, kv_steps=args.kv_steps, corpus_dir=args.corpus,
                              device=args.device)
        return result, format_decode(result)
    if args.suite == "llm":
        from speechbraid.benchmarks.llm import bench_llm_steps, format_llm

        result = bench_llm_steps(args.model, steps=_steps(args, 3), rows=args.rows, length=args.length,
                                 decode_batch=args.decode_batch, prompt_tokens=args.prompt_tokens,
                                 new_tokens=args.new_tokens, device=args.device)
        return result, format_llm(result)
    from speechbraid.benchmarks.asr_decode import bench_asr_decode, format_asr_decode

    result = bench_asr_decode(args.corpus, device=args.device)
    return result, format_asr_decode(result)


def run(args: argparse.Namespace) -> int:
    result, text = _measure(args)
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(json.dumps(result, indent=2) if args.json else text)
    return 0

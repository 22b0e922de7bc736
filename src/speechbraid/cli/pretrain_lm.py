"""``speechbraid pretrain-lm``: train the default text prior (tokenizer + small causal LM) on plain text."""

from __future__ import annotations

import argparse
from pathlib import Path

from speechbraid.models.registry import default_model_dir, register_model_dir
from speechbraid.models.text_lm import PRESETS

DEFAULT_NAME = "default-lm"  # the name the speech LLM's config resolves its text LLM by


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pretrain-lm",
        description=(
            "Train a byte-level BPE tokenizer and a small Llama-style causal LM on plain text (one "
            "document per non-blank line). The output directory is a normal Hugging Face model "
            "directory (AutoTokenizer / AutoModelForCausalLM load it) plus metrics.json (validation "
            "perplexity) and train_log.jsonl. Checkpoints are written as training goes; re-run with "
            "--resume to continue an interrupted run exactly."
        ),
    )
    parser.add_argument("--text", nargs="+", required=True, type=Path, metavar="FILE",
                        help="UTF-8 text files, one document (sentence or paragraph) per line")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help=f"output model directory (default: the models directory's entry for --name, "
                             f"i.e. {default_model_dir(DEFAULT_NAME)} unless --name is given)")
    parser.add_argument("--preset", default="small", metavar="NAME",
                        help=f"model size and training defaults: {', '.join(PRESETS)} (default: small)")
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps (default: the preset's)")
    parser.add_argument("--vocab-size", type=int, default=4000, help="BPE vocabulary size (default: 4000)")
    parser.add_argument("--seq-len", type=int, default=256, help="tokens per packed block (default: 256)")
    parser.add_argument("--batch-size", type=int, default=None, help="blocks per step (default: the preset's)")
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the preset's)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the split, init and data order")
    parser.add_argument("--resume", action="store_true", help="continue the run already in --out")
    parser.add_argument("--name", metavar="NAME",
                        help=f"model name to resolve the result by (e.g. in speech LLM configs); with --out "
                             f"the directory is registered under it. Default without --out: {DEFAULT_NAME}")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from speechbraid.training.pretrain_lm import pretrain_lm  # torch/transformers load only when used

    name = args.name or (DEFAULT_NAME if args.out is None else None)
    out = default_model_dir(name) if args.out is None else args.out
    metrics = pretrain_lm(
        args.text, out, preset=args.preset, vocab_size=args.vocab_size, steps=args.steps,
        seq_len=args.seq_len, batch_size=args.batch_size, lr=args.lr, seed=args.seed, resume=args.resume,
        progress=not args.no_progress,
    )
    print(f"model: {out}")
    print(f"validation perplexity: {metrics['val_perplexity']:.2f} (loss {metrics['val_loss']:.4f} "
          f"over {metrics['val_tokens']} tokens); {metrics['steps']} steps in {metrics['train_seconds']:.0f} s")
    if name is not None:
        register_model_dir(name, out)  # a no-op when ``out`` is the name's default location
        print(f"resolves as model {name!r}")
    return 0

"""``speechbraid train``: train a speech LLM from a YAML config (plus key=value overrides)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        description="Train a decoder-only speech LLM. The config (YAML) names the causal LM, the encoder, "
        "the data sources with their layouts and token-ratio weights, and the training stages; "
        "any option can be overridden as key.sub=value. Re-run with --resume to continue a killed run "
        "exactly where it stopped. Multi-process: torchrun --nproc-per-node N -m speechbraid train ... (the same "
        "config; distributed=ddp replicates the weights, distributed=fsdp shards them; N processes x grad_accum A "
        "train as one process with grad_accum N*A).",
    )
    parser.add_argument("--config", help="YAML config file, or a packaged config name: "
                        "asr_default (whisper-base encoder), asr_conformer, jstip_gpu")
    parser.add_argument("--out", type=Path, required=True, help="run directory (checkpoints, logs, final model)")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete the run already in --out and start afresh (without --resume or --overwrite a "
                        "non-empty --out is refused, so an earlier run is never replaced by accident)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. data.rows=4")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from speechbraid.config import load_config
    from speechbraid.configs import resolve_config
    from speechbraid.training.checkpoint import prepare_run_dir
    from speechbraid.training.trainer import TrainConfig, train

    config = load_config(TrainConfig, resolve_config(args.config) if args.config else None, args.overrides)
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 owns (and may clear) the run directory
        prepare_run_dir(args.out, resume=args.resume, overwrite=args.overwrite)
    metrics = train(config, args.out, resume=args.resume)
    print(f"final loss {metrics.get('loss', float('nan')):.4f}; model saved to {args.out / 'model'}")
    return 0

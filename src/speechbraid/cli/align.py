"""``speechbraid align``: train a character CTC aligner, add word alignments to a manifest, score them."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from typing import Any

from speechbraid.align import DEFAULT_MIN_CONFIDENCE, DEFAULT_MIN_WORD_SCORE
from speechbraid.errors import ConfigError

DEFAULT_STEPS = 800


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "align",
        description=(
            "Word alignments for speech that has none: a character CTC model (Conformer encoder at 20 ms "
            "frames + CTC head) is trained on manifests with audio and text, then Viterbi forced alignment "
            "of each transcript gives per-word start/end times and a confidence. Utterances that cannot be "
            "aligned or fall below the confidence threshold are reported with file:line and left out."
        ),
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    defaults = argparse.ArgumentDefaultsHelpFormatter

    train = actions.add_parser("train", help="train a CTC aligner (resumable)", formatter_class=defaults)
    train.add_argument("--manifest", action="append", required=True, metavar="M",
                       help="training manifest with audio and text (repeatable)")
    train.add_argument("--out", required=True, metavar="DIR", help="model directory")
    train.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="optimiser steps")
    train.add_argument("--batch-size", type=int, default=8, help="utterances per step")
    train.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    train.add_argument("--d-model", type=int, default=96, help="encoder width")
    train.add_argument("--layers", type=int, default=3, help="Conformer blocks")
    train.add_argument("--subsample", type=int, choices=(1, 2, 3), default=1,
                       help="stride-2 convolutions: 1 = 20 ms frames, 2 = 40 ms, 3 = 80 ms")
    train.add_argument("--seed", type=int, default=0, help="seed for weights and batch order")
    train.add_argument("--fresh", action="store_true", help="start over instead of resuming a run in DIR")
    _common(train)
    train.set_defaults(func=run)

    align = actions.add_parser("run", help="align a manifest with a trained model", formatter_class=defaults)
    align.add_argument("--model", required=True, metavar="DIR", help="aligner directory from 'align train'")
    align.add_argument("--manifest", required=True, metavar="M", help="manifest to align")
    align.add_argument("--out", required=True, metavar="ALIGNED", help="output manifest (aligned records only)")
    align.add_argument("--min-confidence", type=float, default=DEFAULT_MIN_CONFIDENCE, metavar="X",
                       help="reject utterances whose confidence (0-1) is below X")
    align.add_argument("--min-word-score", type=float, default=DEFAULT_MIN_WORD_SCORE, metavar="X",
                       help="reject utterances with a word scoring (0-1) below X (catches transcript errors)")
    align.add_argument("--rejects", default=None, metavar="FILE", help="also write rejected records here")
    align.add_argument("--into-blanks", action="store_true",
                       help="inner words also take the blank frames up to the word-boundary tokens on either side "
                            "(default: a word spans its characters' frames only)")
    _common(align)
    align.set_defaults(func=run)

    score = actions.add_parser("score", help="boundary errors of aligned word times against reference times")
    score.add_argument("--manifest", required=True, metavar="ALIGNED", help="aligned manifest")
    score.add_argument("--reference", required=True, metavar="REF", help="manifest with reference word times")
    score.add_argument("--json", action="store_true", help="print the statistics as JSON")
    score.set_defaults(func=run)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=None, help="torch device (default: cuda if present, else cpu)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads for torch (1 is fastest on a busy machine)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    if args.action == "score":
        from speechbraid.align.score import score_alignment

        stats = score_alignment(args.manifest, args.reference)
        print(json.dumps(stats.to_dict(), indent=2) if args.json else stats.format())
        return 0
    import torch

    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads must be positive, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.action == "train":
        from speechbraid.align.train import train_ctc_aligner
        from speechbraid.models.encoders import ConformerConfig

        encoder = replace(ConformerConfig(), d_model=args.d_model, n_layers=args.layers)
        metrics = train_ctc_aligner(
            args.manifest, args.out, args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
            subsample_layers=args.subsample, encoder=encoder, resume=not args.fresh, device=args.device,
            progress=not args.quiet,
        )
        print(json.dumps(metrics, indent=2))
        return 0
    from speechbraid.align.run import align_manifest
    from speechbraid.device import pick_device

    report = align_manifest(
        args.manifest, args.model, args.out,
        min_confidence=args.min_confidence, min_word_score=args.min_word_score, rejects=args.rejects,
        into_blanks=args.into_blanks, device=str(pick_device(args.device)), progress=not args.quiet,
    )
    print(report.format(), file=sys.stderr)
    return 0

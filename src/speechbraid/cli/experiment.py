"""``speechbraid experiment NAME``: the studies that compose the whole toolkit."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    from speechbraid.experiments.jstip import PRESETS, ROWS

    parser = subparsers.add_parser(
        "experiment",
        description="Run a study end to end (resumable: re-run the same command to continue).",
    )
    studies = parser.add_subparsers(dest="study", metavar="STUDY", required=True)
    jstip = studies.add_parser(
        "jstip", help="JSTIP: ASR-only vs joint vs interleaved training, domain text / TTS, IL ablation",
        description="Train every row (same model, steps and seeds) from one shared ASR warm-up and score WER, "
        "EER per domain on held-out entities, T2T/S2T multiple-choice accuracy and gap, and zero-shot "
        "spoken QA; writes results.json, table.md and table.png. Rows: " + "; ".join(ROWS) + ".",
    )
    jstip.add_argument("--preset", choices=sorted(PRESETS), default="small",
                       help="small: the five rows of the claim, 3 seeds (2-core CPU); gpu: every row of Tables I "
                       "and III; quick: the demo (ASR-only vs +IL); tiny: smoke test")
    jstip.add_argument("--rows", nargs="+", metavar="ROW", help="only these rows (quote names with spaces)")
    jstip.add_argument("--out", type=Path, default=Path("runs/jstip"))
    jstip.add_argument("--corpus", type=Path, default=Path("data/default"))
    jstip.add_argument("--lm", type=Path, help="a trained text LM directory (default: pretrain one into OUT/lm)")
    jstip.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                       help="config overrides for every run, e.g. model.encoder_precision=fp32")
    jstip.set_defaults(func=run)

    from speechbraid.experiments.esi import PATTERN_NAMES
    from speechbraid.experiments.esi import PRESETS as ESI_PRESETS

    esi = studies.add_parser(
        "esi", help="ESI: interleaved vs early-stop interleaved vs parallel joint speech-text decoding",
        description="Build curated spoken QA (questions in espeak voices, answers in the preset's response voice, "
        "judge-ASR filter), train a unit tokenizer and vocoder, train one model per generation pattern and seed "
        "(same LM, units, data and steps; parallel with a speech head) and score text-out and speech-out accuracy, "
        "alignment WER, decoding steps, sequence length and decoding time (mean and spread over seeds); writes "
        "results.json, table.md and table.png.",
    )
    esi.add_argument("--preset", choices=sorted(ESI_PRESETS), default="smollm2",
                     help="smollm2: SmolLM2-135M, long answers in one Piper voice, 3 seeds (2-core CPU: ~75 min per "
                     "pattern and seed); smollm2-gpu: the same with more data and training; small: a 4M LM pretrained "
                     "here, short espeak answers; tiny: smoke test")
    esi.add_argument("--patterns", nargs="+", choices=PATTERN_NAMES, default=list(PATTERN_NAMES))
    esi.add_argument("--seeds", nargs="+", type=int, metavar="SEED", help="train these seeds (default: the preset's)")
    esi.add_argument("--out", type=Path, default=Path("runs/esi"))
    esi.add_argument("--corpus", type=Path, default=Path("data/default"))
    esi.add_argument("--lm", help="a text LM directory or registered name (default: the preset's: smollm2-135m, or one "
                     "pretrained into OUT/lm)")
    esi.add_argument("--judge", default="whisper-base", help="Whisper judge model name or directory")
    esi.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    esi.set_defaults(func=run_esi)


def run(args: argparse.Namespace) -> int:
    from speechbraid.experiments.jstip import run_jstip_study

    run_jstip_study(args.out, args.corpus, preset=args.preset, lm_dir=args.lm, rows=args.rows,
                    overrides=args.overrides)
    return 0


def run_esi(args: argparse.Namespace) -> int:
    from speechbraid.experiments.esi import run_esi_study

    run_esi_study(args.out, args.corpus, preset=args.preset, lm_dir=args.lm, judge=args.judge,
                  patterns=args.patterns, seeds=args.seeds, device=args.device)
    return 0

"""``speechbraid units``: train a k-means speech tokenizer, tokenize manifests, train a unit vocoder, synthesise."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from speechbraid.cli.options import add_options, from_args
from speechbraid.errors import ConfigError, InputError
from speechbraid.units.tokenizer import UnitTokenizerConfig
from speechbraid.units.vocoder import VocoderConfig


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "units",
        description=(
            "Discrete speech units: k-means over speech-encoder frames (whisper, conformer or raw fbank) "
            "at 25 or 12.5 Hz, manifests tokenized into a 'units' field (units already in a manifest, "
            "e.g. from CosyVoice or GLM-4-Voice, are kept), and a small unit-to-mel model with "
            "Griffin-Lim that turns units back into 16 kHz WAV."
        ),
    )
    sub = parser.add_subparsers(dest="units_command", metavar="ACTION", required=True)
    fmt = argparse.ArgumentDefaultsHelpFormatter

    train = sub.add_parser("train", help="train a k-means unit tokenizer on a manifest's audio", formatter_class=fmt,
                           description="Fit k-means units on encoder frames of a manifest; saves DIR.")
    train.add_argument("--manifest", required=True, help="JSONL manifest with audio")
    train.add_argument("--out", required=True, metavar="DIR", help="output directory for the tokenizer")
    add_options(train, UnitTokenizerConfig, flags={"rate_hz": "--rate", "max_train_frames": "--max-frames"})
    train.add_argument("--device", default=None, help="torch device for the encoder")
    train.set_defaults(func=_train)

    tok = sub.add_parser("tokenize", help="write a manifest copy with units for every record with audio",
                         formatter_class=fmt,
                         description="Tokenize a manifest (resumable: re-run the same command after a stop).")
    tok.add_argument("--model", required=True, metavar="DIR", help="unit tokenizer directory")
    tok.add_argument("--manifest", required=True, help="input JSONL manifest")
    tok.add_argument("--out", required=True, metavar="M2", help="output manifest")
    tok.add_argument("--device", default=None)
    tok.set_defaults(func=_tokenize)

    voc = sub.add_parser("vocoder-train", help="train the unit-to-mel model (Griffin-Lim vocoder)",
                         formatter_class=fmt,
                         description="Train units -> log-mel with L1 on the manifest's audio; resumable from "
                                     "DIR/checkpoints. Records' own 'units' are used when present.")
    voc.add_argument("--units-model", required=True, metavar="DIR", help="unit tokenizer directory")
    voc.add_argument("--manifest", required=True)
    voc.add_argument("--out", required=True, metavar="DIR")
    voc.add_argument("--steps", type=int, default=6000)
    voc.add_argument("--batch-size", type=int, default=16)
    voc.add_argument("--lr", type=float, default=2e-3)
    add_options(voc, VocoderConfig, "d_model", "unit_layers", "mel_layers", "kernel")
    voc.add_argument("--seed", type=int, default=0)
    voc.add_argument("--device", default=None)
    voc.set_defaults(func=_vocoder_train)

    synth = sub.add_parser("synth", help="units -> WAV", formatter_class=fmt,
                           description="Synthesise WAV files from units given inline or from a manifest's "
                                       "'units' field (one <id>.wav per record).")
    synth.add_argument("--vocoder", required=True, metavar="DIR")
    source = synth.add_mutually_exclusive_group(required=True)
    source.add_argument("--units", help='space-separated unit ids, e.g. "12 7 7 3"')
    source.add_argument("--manifest", help="manifest whose records carry 'units'")
    synth.add_argument("--out", required=True, metavar="DIR")
    synth.add_argument("--chunk", type=int, default=0, help="synthesise in streaming chunks of this many units")
    synth.set_defaults(func=_synth)

    ev = sub.add_parser("evaluate", help="resynthesis quality judged by the Whisper judge ASR", formatter_class=fmt,
                        description="audio -> units -> audio for a manifest's records; WER of the judge ASR on "
                                    "the original, on Griffin-Lim of the original mel and on the resynthesis; "
                                    "WAVs, report.jsonl and summary.json go to DIR.")
    ev.add_argument("--model", required=True, metavar="DIR", help="unit tokenizer directory")
    ev.add_argument("--vocoder", required=True, metavar="DIR")
    ev.add_argument("--manifest", required=True)
    ev.add_argument("--out", required=True, metavar="DIR")
    ev.add_argument("--judge", default="whisper-base", help="Whisper model name or directory")
    ev.add_argument("--limit", type=int, default=None, help="at most this many utterances")
    ev.add_argument("--stream-chunk", type=int, default=10,
                    help="units pushed at a time when measuring the streaming latency to the first audio")
    ev.add_argument("--device", default=None)
    ev.set_defaults(func=_evaluate)


def _train(args: argparse.Namespace) -> int:
    from speechbraid.units.tokenizer import train_tokenizer

    tokenizer = train_tokenizer(args.manifest, from_args(UnitTokenizerConfig, args), device=args.device or "cpu")
    tokenizer.save(args.out)
    print(json.dumps(tokenizer.stats))
    print(f"unit tokenizer saved to {args.out}", file=sys.stderr)
    return 0


def _tokenize(args: argparse.Namespace) -> int:
    from speechbraid.units.tokenizer import UnitTokenizer, tokenize_manifest

    if Path(args.out).resolve() == Path(args.manifest).resolve():
        raise ConfigError("--out must differ from --manifest (the input is read while the output is written)")
    stats = tokenize_manifest(args.manifest, args.out, UnitTokenizer.load(args.model, args.device or "cpu"))
    print(json.dumps(stats))
    return 0


def _vocoder_train(args: argparse.Namespace) -> int:
    from speechbraid.training.vocoder import manifest_pairs, train_vocoder
    from speechbraid.units.tokenizer import UnitTokenizer

    tokenizer = UnitTokenizer.load(args.units_model, args.device or "cpu")
    config = from_args(VocoderConfig, args, n_units=tokenizer.config.n_units, unit_rate_hz=tokenizer.rate_hz)
    start = time.perf_counter()
    pairs = manifest_pairs(args.manifest, tokenizer, config)
    prep = time.perf_counter() - start
    train_vocoder(pairs, args.out, config, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                  seed=args.seed, device=args.device)
    print(f"vocoder saved to {args.out} (data {prep:.0f} s, training {time.perf_counter() - start - prep:.0f} s)",
          file=sys.stderr)
    return 0


def _synth(args: argparse.Namespace) -> int:
    import numpy as np

    from speechbraid.data.audio import write_wav
    from speechbraid.data.manifest import iter_manifest
    from speechbraid.units.vocoder import SAMPLE_RATE, UnitVocoder

    vocoder = UnitVocoder.load(args.vocoder)
    if args.units is not None:
        try:
            jobs = [("units", [int(u) for u in args.units.split()], None)]
        except ValueError:
            raise InputError(f"--units must be space-separated integers, got {args.units!r}") from None
    else:
        jobs = [(item.record.id, item.record.units, item) for item in iter_manifest(args.manifest)]
        missing = [item for _, units, item in jobs if units is None]
        if missing:
            raise InputError(f"record {missing[0].record.id!r} has no 'units' ({len(missing)} such record(s)); "
                             "run `speechbraid units tokenize` first", missing[0].path, missing[0].line)
    out = Path(args.out)
    for name, units, item in jobs:
        try:
            if args.chunk > 0:
                chunks = [units[i : i + args.chunk] for i in range(0, len(units), args.chunk)]
                audio = np.concatenate(list(vocoder.stream_audio(chunks)))
            else:
                audio = vocoder.units_to_audio(units)
        except InputError as exc:
            raise InputError(exc.message, *(item.path, item.line) if item else ()) from None
        write_wav(out / f"{name}.wav", audio, SAMPLE_RATE)
        print(f"{out / f'{name}.wav'}\t{len(units)} units\t{len(audio) / SAMPLE_RATE:.2f} s")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from speechbraid.units.quality import resynthesis_report
    from speechbraid.units.tokenizer import UnitTokenizer
    from speechbraid.units.vocoder import UnitVocoder

    summary = resynthesis_report(args.manifest, UnitTokenizer.load(args.model, args.device or "cpu"),
                                 UnitVocoder.load(args.vocoder), args.out, judge=args.judge, limit=args.limit,
                                 device=args.device, stream_chunk=args.stream_chunk)
    print(json.dumps(summary, indent=2))
    return 0

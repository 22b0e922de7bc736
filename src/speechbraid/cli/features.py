"""``speechbraid features``: log-mel features for manifests (one ``<id>.npy`` per utterance), or with
``--kind encoder`` an encoder's outputs, precomputed into the sharded encoder store that training reads."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from speechbraid.cli.options import add_options, from_args
from speechbraid.data.audio import load_audio
from speechbraid.data.features import FEATURE_SAMPLE_RATE, FeatureConfig
from speechbraid.data.manifest import ManifestLine, iter_manifest
from speechbraid.errors import ConfigError, InputError
from speechbraid.files import atomic_open
from speechbraid.models.encoder_store import PrecomputeConfig

CONFIG_NAME = "feature_config.json"
ENCODER = "encoder"  # the --kind that precomputes encoder outputs instead of log-mel features


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "features",
        description=(
            "Compute log-mel features (time-major, frames x bins, float32) for each record with audio "
            "and save them as DIR/<id>.npy. fbank: Kaldi-style filterbank (lhotse); whisper: Whisper's "
            "log-mel at the audio's own length. Audio at any rate is resampled to 16 kHz. Resumable: "
            "files already in DIR are kept, so re-running the same command continues where it stopped; "
            f"DIR/{CONFIG_NAME} records the settings and a re-run with other settings is refused. "
            "Text-only records are counted and skipped. "
            f"--kind {ENCODER}: encode every audio file of the manifests once with --model's encoder (whole "
            "files, as training does) into the encoder store (--store, default where training looks): shards of "
            "memory-mapped safetensors plus an index, keyed by audio file and encoder weights. Resumable: finished "
            "shards are kept, an interrupted one is never visible. Train from it with encoder_store_mode=read-only."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("manifest", metavar="MANIFEST", nargs="+", help="JSONL manifest(s) to read")
    parser.add_argument("--out", metavar="DIR", help="directory for the .npy files (log-mel kinds)")
    add_options(parser, FeatureConfig, "kind", "num_mel_bins", extra_choices={"kind": (ENCODER,)})
    add_options(parser, PrecomputeConfig)
    parser.add_argument("--device", default=None, help="torch device to compute on, e.g. cuda:0")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.kind == ENCODER:
        if args.out is not None:
            raise ConfigError(f"--kind {ENCODER} writes into the encoder store (--store DIR), not --out")
        return _precompute_encoder(args)
    if args.out is None:
        raise ConfigError(f"--kind {args.kind} needs --out DIR")
    config = from_args(FeatureConfig, args)
    out = Path(args.out)
    _claim_directory(out, config)
    done = resumed = text_only = 0
    for manifest in args.manifest:
        for item in tqdm(iter_manifest(manifest), total=_count_lines(manifest), desc="features", unit="utt"):
            record = item.record
            if record.audio is None:
                text_only += 1
                continue
            target = out / f"{_file_stem(item)}.npy"
            if target.exists():
                resumed += 1
                continue
            _save(target, _compute(item, config, args.device))
            done += 1
    print(f"computed {done}, kept {resumed} already in {out}, skipped {text_only} text-only record(s)",
          file=sys.stderr)
    return 0


def _precompute_encoder(args: argparse.Namespace) -> int:
    from speechbraid.device import pick_device
    from speechbraid.models.build import load_speech_encoder
    from speechbraid.models.encoder_store import EncoderOutputStore, default_root, precompute

    config = from_args(PrecomputeConfig, args)
    audio, text_only = [], 0
    for manifest in args.manifest:
        for item in iter_manifest(manifest):
            if item.record.audio is None:
                text_only += 1
            else:
                audio.append(item.record.audio)
    encoder, feature_config = load_speech_encoder(config.model, config.precision)
    device = pick_device(args.device)
    encoder.to(device)  # before the store: the precision it computes in (part of the store's key) is the device's
    root = Path(config.store) if config.store else default_root()
    # no in-memory copies: every output is written once and not read back here
    store = EncoderOutputStore(root, encoder, 0, name=config.model, features=feature_config.to_dict())
    counts = precompute(store, encoder, feature_config.extract_file, audio, batch=config.batch,
                        shard_bytes=round(config.shard_mb * 2**20), device=device)
    print(f"encoded {counts['encoded']} audio file(s) into {counts['shards']} new shard(s), kept {counts['kept']} "
          f"already stored, skipped {text_only} text-only record(s)\n"
          f"store: {store.directory} ({len(store)} outputs of {config.model}, encoder weights {store.digest})\n"
          f"train from it with: encoder_store={root} encoder_store_mode=read-only", file=sys.stderr)
    return 0


def _claim_directory(out: Path, config: FeatureConfig) -> None:
    """Write (or check) the settings file so a resumed run never mixes two feature kinds."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / CONFIG_NAME
    if path.exists():
        stored = json.loads(path.read_text(encoding="utf-8"))
        if stored != config.to_dict():
            raise ConfigError(f"{out} holds features made with {stored}, not {config.to_dict()}; "
                              "use another --out directory")
        return
    path.write_text(json.dumps(config.to_dict(), indent=2) + "\n", encoding="utf-8")


def _count_lines(path: str) -> int | None:
    try:
        with open(path, "rb") as handle:
            return sum(1 for line in handle if line.strip())
    except OSError:
        return None  # iter_manifest reports the missing file with a clear message


def _file_stem(item: ManifestLine) -> str:
    utt_id = item.record.id
    if not utt_id or utt_id.startswith(".") or "/" in utt_id or os.sep in utt_id:
        raise InputError(f"id {utt_id!r} cannot be used as a file name", item.path, item.line)
    return utt_id


def _compute(item: ManifestLine, config: FeatureConfig, device: str | None) -> np.ndarray:
    record = item.record
    try:
        samples, rate = load_audio(record.audio, FEATURE_SAMPLE_RATE)
    except InputError as exc:
        raise InputError(f"record '{record.id}': {exc}", item.path, item.line) from None
    offset = record.extra.get("offset")
    if offset:  # a NeMo-style segment of a longer file
        first = round(float(offset) * rate)
        last = None if record.duration is None else first + round(record.duration * rate)
        samples = samples[first:last]
    try:
        feats = config.extract(samples, rate, device)
    except ValueError as exc:
        raise InputError(f"record '{record.id}': {exc}", item.path, item.line) from None
    return feats.cpu().numpy() if not isinstance(feats, np.ndarray) else feats


def _save(target: Path, feats: np.ndarray) -> None:
    """Write via a temporary name so an interrupted run never leaves a truncated .npy to be resumed over."""
    with atomic_open(target, "wb") as handle:
        np.save(handle, feats.astype(np.float32, copy=False))

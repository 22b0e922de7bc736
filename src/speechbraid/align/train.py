"""Training the character CTC aligner on manifests with audio and text (word times not needed).

Resumable with the project's checkpoint and run-log helpers: ``out/checkpoints`` holds the latest
step (weights as safetensors, optimiser/scheduler/RNG state loaded with ``weights_only=True``),
``out/train_log.jsonl`` one line per step. The batch of step ``s`` is a pure function of ``(seed, s)``,
so a resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from speechbraid.align.model import AlignerConfig, CTCAligner, save_aligner, utterance_features
from speechbraid.align.text import BLANK_ID, encode_transcript
from speechbraid.data.features import pad_features
from speechbraid.data.manifest import iter_manifest
from speechbraid.device import pick_device
from speechbraid.errors import ConfigError, InputError
from speechbraid.files import atomic_write_text
from speechbraid.models.encoders import ConformerConfig
from speechbraid.training.checkpoint import latest_checkpoint
from speechbraid.training.loop import CHECKPOINT_DIR, TrainingLoop, make_scheduler, progress_bar
from speechbraid.training.runlog import read_train_log
from speechbraid.training.runtime import batch_indices, seed_everything

RUN_FILE = "run.json"
METRICS_FILE = "metrics.json"
WARMUP_FRACTION = 0.1
FINAL_LR_FRACTION = 0.1
MAX_GRAD_NORM = 5.0


def _load_examples(manifests: Sequence[str | Path], config: AlignerConfig, progress: bool
                   ) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], dict[str, int]]:
    """Features and targets of every usable record, and counts of the records left out (and why)."""
    examples: list[tuple[torch.Tensor, torch.Tensor]] = []
    skipped = {"text_only": 0, "no_characters": 0, "too_short_for_transcript": 0}
    for manifest in manifests:
        for item in tqdm(iter_manifest(manifest), desc=f"features {Path(manifest).name}", unit="utt",
                         disable=not progress, dynamic_ncols=True):
            record = item.record
            if record.audio is None:
                skipped["text_only"] += 1
                continue
            targets = encode_transcript(record.text)
            if not targets.ids:
                skipped["no_characters"] += 1
                continue
            try:
                feats = utterance_features(record)
            except (ValueError, InputError) as exc:
                raise InputError(f"record '{record.id}': {exc}", item.path, item.line) from None
            if config.output_frames(feats.shape[0]) < targets.min_frames:
                skipped["too_short_for_transcript"] += 1
                continue
            examples.append((feats, torch.tensor(targets.ids, dtype=torch.long)))
    if not examples:
        raise InputError("no record with audio and alignable text to train on", manifests[0])
    return examples, skipped


def _length_buckets(examples: list[tuple[torch.Tensor, torch.Tensor]], batch_size: int) -> list[list[int]]:
    """Batches of similar length (sorted by frames, then cut): padding to a batch's longest costs ~2x on
    random batches of these corpora. Steps visit the batches in a per-epoch seeded order."""
    order = sorted(range(len(examples)), key=lambda i: (examples[i][0].shape[0], i))
    return [order[i: i + batch_size] for i in range(0, len(order), batch_size)]


def train_ctc_aligner(
    manifests: Sequence[str | Path],
    out_dir: str | Path,
    steps: int = 1500,
    *,
    batch_size: int = 16,
    lr: float = 2e-3,
    seed: int = 0,
    subsample_layers: int = 1,
    encoder: ConformerConfig | None = None,
    resume: bool = False,
    checkpoint_every: int = 100,
    device: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train a character CTC aligner on ``manifests`` into ``out_dir``; returns (and saves) its metrics.

    With ``resume`` a run continues from ``out_dir/checkpoints`` when it holds one and its settings match;
    ``steps`` may be raised on resume (the learning-rate schedule is stretched to the new total).
    """
    if steps < 1 or batch_size < 1:
        raise ConfigError(f"steps and batch_size must be positive, got {steps} and {batch_size}")
    config = AlignerConfig(encoder=encoder or ConformerConfig(), subsample_layers=subsample_layers)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run = {"aligner": config.to_dict(), "manifests": [str(m) for m in manifests], "batch_size": batch_size,
           "lr": lr, "seed": seed}
    run_path = out / RUN_FILE
    latest = latest_checkpoint(out / CHECKPOINT_DIR) if resume else None
    if latest is not None and (not run_path.is_file() or json.loads(run_path.read_text(encoding="utf-8")) != run):
        raise ConfigError(f"{out} holds a run with other settings ({run_path}); use another --out or the same "
                          "settings to resume")
    atomic_write_text(run_path, json.dumps(run, indent=2) + "\n")

    examples, skipped = _load_examples(manifests, config, progress)
    dev = pick_device(device)
    seed_everything(seed)
    model = CTCAligner(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    # warm-up, then decay to a floor: the aligner keeps learning to the last step
    scheduler = make_scheduler(optimizer, steps, WARMUP_FRACTION, "cosine_with_min_lr", FINAL_LR_FRACTION)
    loop = TrainingLoop(model, optimizer, scheduler, out, clip=MAX_GRAD_NORM, checkpoint_every=checkpoint_every)
    start, _ = loop.restore(latest is not None)
    model.to(dev).train()
    buckets = _length_buckets(examples, batch_size)
    ctc = torch.nn.CTCLoss(blank=BLANK_ID, reduction="mean", zero_infinity=True)

    def step_fn(step: int) -> dict[str, Any]:
        batch = [examples[i] for i in buckets[batch_indices(step, 1, len(buckets), seed)[0]]]
        feats, lengths = pad_features([f for f, _ in batch])
        targets = [t for _, t in batch]
        log_probs, out_lengths = model(feats.to(dev), lengths.to(dev))
        loss = ctc(log_probs.transpose(0, 1), torch.cat(targets).to(dev), out_lengths,
                   torch.tensor([len(t) for t in targets], device=dev))
        loss.backward()
        return {"loss": loss.item()}

    with progress_bar(steps, start, "align train", progress) as bar:
        loop.run(step_fn, start, steps, bar)
    train_seconds = loop.train_seconds

    tail = [r["loss"] for r in read_train_log(out)[-20:]]
    metrics = {
        "steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed, "examples": len(examples),
        "skipped": skipped, "frame_ms": round(config.frame_seconds * 1000),
        "parameters": sum(p.numel() for p in model.parameters()),
        "final_train_loss": sum(tail) / len(tail) if tail else None,
        "train_seconds": round(train_seconds, 1), "device": dev.type,
    }
    save_aligner(model.to("cpu"), out)
    atomic_write_text(out / METRICS_FILE, json.dumps(metrics, indent=2) + "\n")
    if any(skipped.values()):
        print(f"align train: left out of training: {skipped}", file=sys.stderr)
    return metrics


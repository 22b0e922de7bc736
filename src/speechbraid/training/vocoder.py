"""Training the unit vocoder (units -> log-mel, :mod:`speechbraid.units.vocoder`): L1 on log-mel over random crops.

Checkpoints, RNG handling and the step log are the training package's own, so a resumed run repeats exactly the
steps an uninterrupted run would have taken.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from speechbraid.device import pick_device
from speechbraid.errors import ConfigError, InputError
from speechbraid.training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from speechbraid.training.runlog import LOG_FILE, truncate_log
from speechbraid.training.runtime import apply_gradients, rng_state, seed_everything, set_rng_state
from speechbraid.units.vocoder import N_MELS, UnitToMel, UnitVocoder, VocoderConfig, log_mel


@dataclass
class UtteranceMel:
    """Training pair: unit ids and the log-mel of the same audio, trimmed to whole units."""

    units: torch.Tensor  # (U,)
    mel: torch.Tensor  # (U * upsample, 80)


def make_pair(units: Sequence[int] | np.ndarray, samples: np.ndarray, upsample: int) -> UtteranceMel:
    """Pair units with the audio's log-mel; the (at most one) unit without a full mel span is dropped."""
    mel = log_mel(samples)
    n = min(len(units), mel.shape[0] // upsample)
    return UtteranceMel(torch.as_tensor(np.asarray(units[:n], dtype=np.int64)), mel[: n * upsample])


def train_vocoder(
    pairs: Sequence[UtteranceMel],
    out: str | Path,
    config: VocoderConfig,
    steps: int = 2000,
    batch_size: int = 16,
    crop_units: int = 50,
    lr: float = 2e-3,
    seed: int = 0,
    save_every: int = 200,
    device: str | None = None,
    progress: bool = True,
) -> UnitVocoder:
    """Train :class:`UnitToMel` with L1 on log-mel over random crops; resumes from ``out/checkpoints``.

    Checkpoints, RNG/device handling and the step log reuse ``speechbraid.training`` (atomic
    checkpoints, ``train_log.jsonl`` truncated to the checkpoint on resume), so a resumed run repeats
    exactly the steps an uninterrupted run would have taken. The final model is saved to ``out``.
    """
    usable = [p for p in pairs if p.units.numel() > 0]
    if not usable:
        raise InputError("no utterance with units and audio to train the vocoder on")
    for pair in usable:
        if int(pair.units.max()) >= config.n_units:
            raise InputError(f"unit id {int(pair.units.max())} outside the vocoder's {config.n_units} units")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    target = pick_device(device)
    seed_everything(seed)
    model = UnitToMel(config).to(target)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warmup = max(1, steps // 20)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup))))
    sampler = torch.Generator().manual_seed(seed)
    step = 0
    ckpt_root = out / "checkpoints"
    latest = latest_checkpoint(ckpt_root)
    settings = {"config": asdict(config), "batch_size": batch_size, "crop_units": crop_units, "lr": lr,
                "steps": steps, "seed": seed}
    if latest is not None:
        state = load_checkpoint(latest, model)
        if state["settings"] != settings:
            raise ConfigError(f"{ckpt_root} holds a run with settings {state['settings']}, not {settings}; "
                              "use another --out directory")
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        sampler.set_state(state["sampler"])
        set_rng_state(state["rng"])
        step = int(state["step"])
    log_path = out / LOG_FILE
    truncate_log(log_path, step)
    model.train()
    start = time.perf_counter()
    with log_path.open("a", encoding="utf-8") as log, tqdm(total=steps, initial=step, desc="vocoder",
                                                           unit="step", disable=not progress) as bar:
        while step < steps:
            units, mel, mask = _batch(usable, batch_size, crop_units, config.upsample, sampler)
            pred = model(units.to(target))
            err = (pred - mel.to(target)).abs().mean(dim=-1)
            loss = (err * mask.to(target)).sum() / mask.sum().to(target)
            loss.backward()
            apply_gradients(model, optimizer, scheduler, 1.0)
            step += 1
            log.write(json.dumps({"step": step, "loss": round(loss.item(), 5),
                                  "lr": scheduler.get_last_lr()[0],
                                  "seconds": round(time.perf_counter() - start, 2)}) + "\n")
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if step % save_every == 0 or step == steps:
                log.flush()
                save_checkpoint(ckpt_root, step, model, {
                    "step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "sampler": sampler.get_state(), "rng": rng_state(), "settings": settings})
    vocoder = UnitVocoder(model.cpu())
    vocoder.save(out)
    return vocoder


def _batch(pairs: Sequence[UtteranceMel], batch_size: int, crop_units: int, upsample: int,
           gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random crops of ``crop_units`` units (shorter utterances zero-padded and masked out of the loss)."""
    picks = torch.randint(len(pairs), (batch_size,), generator=gen).tolist()
    units = torch.zeros(batch_size, crop_units, dtype=torch.long)
    mel = torch.zeros(batch_size, crop_units * upsample, N_MELS)
    mask = torch.zeros(batch_size, crop_units * upsample)
    for row, index in enumerate(picks):
        pair = pairs[index]
        n = pair.units.shape[0]
        first = int(torch.randint(n - crop_units + 1, (1,), generator=gen)) if n > crop_units else 0
        take = min(crop_units, n)
        units[row, :take] = pair.units[first : first + take]
        mel[row, : take * upsample] = pair.mel[first * upsample : (first + take) * upsample]
        mask[row, : take * upsample] = 1.0
    return units, mel, mask

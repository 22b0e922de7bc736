"""Training the unit vocoder (units -> log-mel, :mod:`speechbraid.units.vocoder`): L1 on log-mel over random crops.

It runs in the one training loop (:mod:`speechbraid.training.loop`), so a resumed run repeats exactly the steps an
uninterrupted run would have taken.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from speechbraid.device import autocast, autocast_dtype, pick_device
from speechbraid.errors import ConfigError, InputError
from speechbraid.training.loop import TrainingLoop, make_scheduler, progress_bar
from speechbraid.training.runtime import seed_everything
from speechbraid.units.vocoder import N_MELS, UnitToMel, UnitVocoder, VocoderConfig, log_mel

WARMUP_FRACTION = 0.05


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


def manifest_pairs(manifest: str | Path, tokenizer: Any, config: VocoderConfig,
                   progress: bool = True) -> list[UtteranceMel]:
    """Training pairs of every record with audio in ``manifest``: its ``units`` when the manifest has them, else
    ``tokenizer``'s (a :class:`speechbraid.units.tokenizer.UnitTokenizer`); units outside the vocoder's range are an
    error naming the manifest line."""
    from tqdm import tqdm

    from speechbraid.data.audio import load_audio
    from speechbraid.data.manifest import iter_manifest

    pairs = []
    for item in tqdm(iter_manifest(manifest), desc="units+mel", unit="utt", disable=not progress):
        record = item.record
        if record.audio is None:
            continue
        units = record.units if record.units is not None else tokenizer.encode(record.audio)
        if len(units) and not 0 <= min(units) <= max(units) < config.n_units:
            raise InputError(f"units outside [0, {config.n_units}) of the unit tokenizer", item.path, item.line)
        pairs.append(make_pair(units, load_audio(record.audio)[0], config.upsample))
    return pairs


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
    """Train :class:`UnitToMel` with L1 on log-mel over random crops (bf16 autocast where the device computes it
    natively); resumes from ``out/checkpoints``.

    The steps run in :class:`speechbraid.training.loop.TrainingLoop` (atomic checkpoints, ``train_log.jsonl``
    truncated to the checkpoint on resume), so a resumed run repeats exactly the steps an uninterrupted run would
    have taken. The final model is saved to ``out``.
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
    amp = autocast_dtype(target)  # bf16 where native: 1.5x per step on a 2-core AMX CPU
    seed_everything(seed)
    model = UnitToMel(config).to(target)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sampler = torch.Generator().manual_seed(seed)
    settings = {"config": asdict(config), "batch_size": batch_size, "crop_units": crop_units, "lr": lr,
                "steps": steps, "seed": seed}
    loop = TrainingLoop(model, optimizer, make_scheduler(optimizer, steps, WARMUP_FRACTION), out, clip=1.0,
                        checkpoint_every=save_every, state=lambda: {"sampler": sampler.get_state(),
                                                                    "settings": settings})
    step, state = loop.restore(resume=True, optimizer_state=False)  # a re-run always continues its run
    if state is not None:
        if state["settings"] != settings:
            raise ConfigError(f"{loop.checkpoints} holds a run with settings {state['settings']}, not {settings}; "
                              "use another --out directory")
        loop.load_optimizer(state)
        sampler.set_state(state["sampler"])
    model.train()

    def step_fn(step: int) -> dict[str, Any]:
        units, mel, mask = _batch(usable, batch_size, crop_units, config.upsample, sampler)
        with autocast(target, amp):
            pred = model(units.to(target))
        err = (pred.float() - mel.to(target)).abs().mean(dim=-1)
        loss = (err * mask.to(target)).sum() / mask.sum().to(target)
        loss.backward()
        return {"loss": round(loss.item(), 5)}

    with progress_bar(steps, step, "vocoder", progress) as bar:
        loop.run(step_fn, step, steps, bar)
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

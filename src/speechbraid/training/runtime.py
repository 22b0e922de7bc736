"""RNG handling, batch order and the optimizer step shared by every trainer."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Torch RNG state as tensors only (a checkpoint must load with ``weights_only=True``)."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def batch_indices(step: int, batch_size: int, n_blocks: int, seed: int) -> list[int]:
    """Block indices of optimiser step ``step``: consecutive slices of per-epoch seeded permutations."""
    perms: dict[int, list[int]] = {}
    out: list[int] = []
    for sample in range(step * batch_size, (step + 1) * batch_size):
        epoch, pos = divmod(sample, n_blocks)
        if epoch not in perms:
            gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
            perms[epoch] = torch.randperm(n_blocks, generator=gen).tolist()
        out.append(perms[epoch][pos])
    return out


def apply_gradients(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any | None,
                    max_grad_norm: float, scaler: torch.amp.GradScaler | None = None) -> float:
    """The end of every optimizer step: clip the trainable parameters' gradient norm, step the optimizer and
    the schedule (if any), clear the gradients. Returns the gradient norm before clipping.

    With an fp16 ``scaler`` the gradients are unscaled first (clipping sees true gradients), a step whose
    gradients overflowed is skipped by the scaler, and the scale is updated."""
    if scaler is not None:
        scaler.unscale_(optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], max_grad_norm)
    if hasattr(grad_norm, "full_tensor"):  # sharded (FSDP) parameters: the norm is a DTensor
        grad_norm = grad_norm.full_tensor()
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    if scheduler is not None:
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return float(grad_norm)

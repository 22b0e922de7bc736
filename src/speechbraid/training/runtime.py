"""Device, precision and RNG handling shared by every trainer."""

from __future__ import annotations

import contextlib
import random
from typing import Any

import numpy as np
import torch


def pick_device(name: str | torch.device | None = None) -> torch.device:
    """``name`` if given ("cpu", "cuda", "cuda:1"), else CUDA when present, else CPU."""
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """bf16 autocast on GPUs that support it; CPU stays fp32 by default (bf16 matmuls are slower than
    fp32 on CPUs without AMX, and fp32 keeps CPU runs bit-reproducible across resumes)."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision != "auto":
        raise ValueError(f"unknown precision {precision!r}; choose auto, bf16 or fp32")
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


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
                    max_grad_norm: float) -> float:
    """The end of every optimizer step: clip the trainable parameters' gradient norm, step the optimizer and
    the schedule (if any), clear the gradients. Returns the gradient norm before clipping."""
    grad_norm = torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], max_grad_norm)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return float(grad_norm)

"""Device and precision choice, shared by training and inference (bf16 autocast on GPUs, fp32 on CPU)."""

from __future__ import annotations

import contextlib
from typing import Any

import torch


def pick_device(name: str | torch.device | None = None) -> torch.device:
    """``name`` if given ("cpu", "cuda", "cuda:1"), else CUDA when present, else CPU."""
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """bf16 autocast on GPUs that support it; CPU stays fp32 by default (bf16 matmuls are slower than
    fp32 on CPUs without AMX, and fp32 keeps CPU runs bit-reproducible across resumes). ``fp16`` autocast needs
    a gradient scaler in training (the training loop keeps one)."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if precision != "auto":
        raise ValueError(f"unknown precision {precision!r}; choose auto, bf16, fp16 or fp32")
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()

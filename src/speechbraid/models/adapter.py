"""Adapter: stack ``k`` consecutive encoder frames, then an MLP into the LLM's embedding width."""

from __future__ import annotations

import torch
from torch import nn


class FrameStackAdapter(nn.Module):
    def __init__(self, encoder_dim: int, llm_dim: int, stack: int = 1, hidden: int | None = None,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.stack = stack
        hidden = hidden or 2 * llm_dim
        # Dropout matters on small corpora: a pretrained encoder's frames carry the whole utterance's context, so
        # an undropped adapter learns the training sentences by heart instead of their sounds.
        self.proj = nn.Sequential(nn.Dropout(dropout), nn.Linear(encoder_dim * stack, hidden), nn.GELU(),
                                  nn.Dropout(dropout), nn.Linear(hidden, llm_dim))

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return torch.div(lengths + self.stack - 1, self.stack, rounding_mode="floor")

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, time, dim = frames.shape
        pad = (-time) % self.stack  # the last incomplete group is zero-padded, so no frame is dropped
        if pad:
            frames = torch.cat([frames, frames.new_zeros(batch, pad, dim)], dim=1)
        stacked = frames.reshape(batch, (time + pad) // self.stack, dim * self.stack)
        return self.proj(stacked), self.output_lengths(lengths)

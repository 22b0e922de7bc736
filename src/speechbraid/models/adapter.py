"""The adapter: encoder frames -> the LLM's embedding width, at a lower frame rate."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class FrameMasking:
    """SpecAugment-style masking of the encoder frames the adapter reads, in training only (as wav2vec 2.0's
    fine-tuning masks its feature encoder's outputs): each frame starts a masked time span with probability
    ``time_prob``, each channel starts a masked channel span with probability ``channel_prob``; masked values
    are zeroed. It keeps a small adapter on a frozen encoder from learning the training sentences by heart."""

    time_prob: float = 0.0
    time_span: int = 10  # encoder frames (whisper: 20 ms each)
    channel_prob: float = 0.0
    channel_span: int = 16

    def __post_init__(self) -> None:
        for name in ("time_prob", "channel_prob"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"frame masking {name} must be in [0, 1), got {getattr(self, name)}")
        for name in ("time_span", "channel_span"):
            if getattr(self, name) < 1:
                raise ValueError(f"frame masking {name} must be at least 1, got {getattr(self, name)}")

    def apply(self, frames: torch.Tensor) -> torch.Tensor:
        """``frames`` (batch, time, dim) with random spans zeroed (the input is left as it is)."""
        batch, time, dim = frames.shape
        if self.time_prob:
            frames = frames * _span_keep(batch, time, self.time_prob, self.time_span, frames.device)[:, :, None]
        if self.channel_prob:
            frames = frames * _span_keep(batch, dim, self.channel_prob, self.channel_span, frames.device)[:, None, :]
        return frames


def _span_keep(batch: int, length: int, prob: float, span: int, device: torch.device) -> torch.Tensor:
    """(batch, length) bool: False inside spans of ``span`` positions, each position starting one with ``prob``."""
    starts = (torch.rand(batch, length, device=device) < prob).float()
    # a position is masked when a span started at it or at one of the span - 1 positions before it
    covered = torch.nn.functional.conv1d(starts.unsqueeze(1), starts.new_ones(1, 1, span), padding=span - 1)
    return covered[:, 0, :length] == 0


class FrameStackAdapter(nn.Module):
    """Stacks ``stack`` consecutive encoder frames and projects them (MLP) into the LLM's width.

    ``context`` > 0 adds a depthwise 1-D convolution of that kernel size over the stacked frames (with a
    residual path) between the two layers: each output frame then sees its neighbours, which a frozen encoder's
    frame does not give a per-frame MLP for free (measured in the README: dev WER 56.7% -> 47.2% at 500 CTC steps).
    ``layers`` > 0 adds that many pre-norm Transformer layers at the ``hidden`` width (64 dimensions per head)
    after it: trainable context over the whole utterance on top of a frozen encoder. ``masking`` zeroes random
    spans of the encoder frames while training (see :class:`FrameMasking`).
    """

    def __init__(self, encoder_dim: int, llm_dim: int, stack: int = 1, hidden: int | None = None,
                 dropout: float = 0.0, context: int = 0, layers: int = 0,
                 masking: FrameMasking | None = None) -> None:
        super().__init__()
        self.masking = masking
        if context < 0 or (context and context % 2 == 0):
            raise ValueError(f"adapter context must be 0 or an odd kernel size, got {context}")
        self.stack = stack
        hidden = hidden or 2 * llm_dim
        # Dropout matters on small corpora: a pretrained encoder's frames carry the whole utterance's context, so
        # an undropped adapter learns the training sentences by heart instead of their sounds.
        self.inner = nn.Sequential(nn.Dropout(dropout), nn.Linear(encoder_dim * stack, hidden), nn.GELU())
        self.context = (nn.Conv1d(hidden, hidden, context, padding=context // 2, groups=hidden)
                        if context else None)
        self.layers = None
        if layers:
            if hidden % 64:
                raise ValueError(f"adapter Transformer layers need a hidden width divisible by 64, got {hidden}")
            layer = nn.TransformerEncoderLayer(hidden, hidden // 64, 4 * hidden, dropout, batch_first=True,
                                               norm_first=True)
            self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.outer = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, llm_dim))

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return torch.div(lengths + self.stack - 1, self.stack, rounding_mode="floor")

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training and self.masking is not None:
            frames = self.masking.apply(frames)
        batch, time, dim = frames.shape
        pad = (-time) % self.stack  # the last incomplete group is zero-padded, so no frame is dropped
        if pad:
            frames = torch.cat([frames, frames.new_zeros(batch, pad, dim)], dim=1)
        stacked = frames.reshape(batch, (time + pad) // self.stack, dim * self.stack)
        out_lengths = self.output_lengths(lengths)
        hidden = self.inner(stacked)
        valid = torch.arange(hidden.shape[1], device=hidden.device)[None, :] < out_lengths[:, None]
        if self.context is not None:
            # padding frames are zeroed first, so an utterance's output does not depend on its batch-mates
            hidden = hidden * valid.unsqueeze(-1).to(hidden.dtype)
            hidden = hidden + self.context(hidden.transpose(1, 2)).transpose(1, 2)
        if self.layers is not None:
            hidden = self.layers(hidden, src_key_padding_mask=~valid)
        return self.outer(hidden), out_lengths

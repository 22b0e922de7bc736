"""Speech encoders: log-mel frames in, one embedding per output frame out, with output lengths.

- :class:`ConformerEncoder`: trained from scratch; three stride-2 convolutions give 8x downsampling
  (10 ms fbank frames -> 80 ms), then Conformer blocks (Gulati et al. 2020: half-step FF, MHSA,
  convolution module, half-step FF).
- :class:`WhisperSpeechEncoder`: a Hugging Face Whisper encoder from a local directory, fed
  variable-length audio (no padding to 30 s), frozen or trainable; 20 ms output frames (stack 4 in the
  adapter for 80 ms).

Both run their matmuls in the precision they are given (:class:`SpeechEncoder`): a frozen pretrained encoder is
a fixed feature extractor, and bf16 where the hardware has it halves the cost of encoding a corpus.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from speechbraid.device import compute_dtype
from speechbraid.models.hf_load import load_pretrained


@dataclass(frozen=True)
class ConformerConfig:
    n_mels: int = 80
    d_model: int = 144
    n_layers: int = 4
    n_heads: int = 4
    ff_mult: int = 4
    conv_kernel: int = 15
    dropout: float = 0.1
    subsample_layers: int = 3  # stride-2 convolutions before the blocks: 3 -> 80 ms frames, 1 -> 20 ms


class _FeedForward(nn.Sequential):
    def __init__(self, d: int, mult: int, dropout: float) -> None:
        super().__init__(nn.LayerNorm(d), nn.Linear(d, d * mult), nn.SiLU(), nn.Dropout(dropout),
                         nn.Linear(d * mult, d), nn.Dropout(dropout))


class _ConvModule(nn.Module):
    def __init__(self, d: int, kernel: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.pointwise_in = nn.Conv1d(d, 2 * d, 1)
        self.depthwise = nn.Conv1d(d, d, kernel, padding=kernel // 2, groups=d)
        self.batch_norm = nn.GroupNorm(1, d)  # GroupNorm(1) statistics, taken over real frames only (_masked_norm)
        self.pointwise_out = nn.Conv1d(d, d, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        y = self.norm(x).masked_fill(pad_mask[..., None], 0.0).transpose(1, 2)
        # re-mask after the biased 1x1 conv: the depthwise conv must read zeros beyond the end, as it does alone
        y = F.glu(self.pointwise_in(y), dim=1).masked_fill(pad_mask[:, None, :], 0.0)
        y = self.pointwise_out(F.silu(self._masked_norm(self.depthwise(y), pad_mask)))
        return self.dropout(y.transpose(1, 2))

    def _masked_norm(self, y: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        """GroupNorm(1) over (channels, real frames): padding must not shift the statistics."""
        keep = (~pad_mask)[:, None, :].to(y.dtype)
        count = keep.sum(dim=(1, 2), keepdim=True) * y.shape[1]
        mean = (y * keep).sum(dim=(1, 2), keepdim=True) / count
        var = ((y - mean) ** 2 * keep).sum(dim=(1, 2), keepdim=True) / count
        y = (y - mean) * torch.rsqrt(var + self.batch_norm.eps)
        return y * self.batch_norm.weight[None, :, None] + self.batch_norm.bias[None, :, None]


class _ConformerBlock(nn.Module):
    def __init__(self, cfg: ConformerConfig) -> None:
        super().__init__()
        self.ff1 = _FeedForward(cfg.d_model, cfg.ff_mult, cfg.dropout)
        self.attn_norm = nn.LayerNorm(cfg.d_model)
        self.attn = nn.MultiheadAttention(cfg.d_model, cfg.n_heads, dropout=cfg.dropout, batch_first=True)
        self.conv = _ConvModule(cfg.d_model, cfg.conv_kernel, cfg.dropout)
        self.ff2 = _FeedForward(cfg.d_model, cfg.ff_mult, cfg.dropout)
        self.out_norm = nn.LayerNorm(cfg.d_model)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        x = x + 0.5 * self.ff1(x)
        y = self.attn_norm(x)
        x = x + self.attn(y, y, y, key_padding_mask=pad_mask, need_weights=False)[0]
        x = x + self.conv(x, pad_mask)
        x = x + 0.5 * self.ff2(x)
        return self.out_norm(x)


def _sinusoids(length: int, dim: int, device: torch.device) -> torch.Tensor:
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)
    return table


class SpeechEncoder(nn.Module):
    """An encoder whose :meth:`encode` runs in ``precision`` (auto: bf16 where native, see
    :func:`speechbraid.device.compute_dtype`) whatever autocast its caller runs under - fp32 stays fp32 inside a bf16
    training run or decoder - so outputs kept in an encoder store are what the store's key says; outputs are float32
    either way."""

    def __init__(self, precision: str = "fp32") -> None:
        super().__init__()
        self.precision = precision
        compute_dtype(torch.device("cpu"), precision)  # an unknown precision fails here, not at the first batch

    def compute_dtype(self, device: torch.device) -> torch.dtype | None:
        return compute_dtype(device, self.precision)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dtype = self.compute_dtype(features.device)
        with torch.autocast(features.device.type, dtype=dtype, enabled=dtype is not None):
            out, out_lengths = self.encode(features, lengths)
        return out.float(), out_lengths

    def encode(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


class ConformerEncoder(SpeechEncoder):
    """Log-mel ``(B, T, n_mels)`` -> ``(B, ~T / 2**subsample_layers, d_model)`` plus output lengths."""

    input_kind = "fbank"

    def __init__(self, cfg: ConformerConfig | None = None, precision: str = "fp32") -> None:
        super().__init__(precision)
        self.cfg = cfg = cfg or ConformerConfig()
        if cfg.subsample_layers < 1:
            raise ValueError(f"subsample_layers must be >= 1, got {cfg.subsample_layers}")
        self.subsample = nn.ModuleList(
            [nn.Conv1d(cfg.n_mels if i == 0 else cfg.d_model, cfg.d_model, 3, stride=2, padding=1)
             for i in range(cfg.subsample_layers)]
        )
        self.blocks = nn.ModuleList(_ConformerBlock(cfg) for _ in range(cfg.n_layers))
        self.output_dim = cfg.d_model
        self.downsample = 2**cfg.subsample_layers

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        for _ in range(len(self.subsample)):  # each conv: kernel 3, stride 2, padding 1
            lengths = torch.div(lengths - 1, 2, rounding_mode="floor") + 1
        return lengths

    def encode(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = features.transpose(1, 2)
        valid = lengths
        for conv in self.subsample:
            x = F.gelu(conv(x))
            # zero what lies past each audio's end, so the next stride-2 conv sees the padding it sees alone
            valid = torch.div(valid - 1, 2, rounding_mode="floor") + 1
            x = x.masked_fill(torch.arange(x.shape[2], device=x.device)[None, None, :] >= valid[:, None, None], 0.0)
        x = x.transpose(1, 2)
        out_lengths = self.output_lengths(lengths)
        pad_mask = torch.arange(x.shape[1], device=x.device)[None, :] >= out_lengths[:, None]
        x = x * math.sqrt(self.cfg.d_model) + _sinusoids(x.shape[1], self.cfg.d_model, x.device).to(x.dtype)
        for block in self.blocks:
            x = block(x, pad_mask)
        return x.masked_fill(pad_mask[..., None], 0.0), out_lengths


class WhisperSpeechEncoder(SpeechEncoder):
    """The encoder of a local HF Whisper checkpoint, run on variable-length input.

    HF's ``WhisperEncoder.forward`` insists on 3000 input frames (30 s); padding every utterance to 30 s
    wastes ~10x compute on short utterances, so this runs the same modules directly on the real
    length and slices the positional table. A batch is padded to its longest member, and the padding is masked
    (attention never reads padded frames, the convolutions see zeros there as at an utterance's end), so an
    utterance encodes the same alone and beside longer ones - transcripts do not depend on batch composition.
    """

    downsample = 2
    input_kind = "whisper"
    # names what the outputs are a function of besides the weights: part of the encoder store's key, so outputs
    # computed before padding was masked (they depended on batch-mates) are never read as current ones
    computation = "padding-masked"

    def __init__(self, model_dir: str | Path | None = None, trainable: bool = False, config: Any = None,
                 precision: str = "fp32") -> None:
        """The encoder of the Whisper checkpoint in ``model_dir``; or, given only a ``WhisperConfig``, an encoder
        of that shape whose weights the caller loads (a saved speech LLM holds them itself)."""
        super().__init__(precision)
        from transformers import WhisperModel
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        if model_dir is not None:
            # A bare WhisperEncoder.from_pretrained on a full Whisper checkpoint (keys "model.encoder.*") loads
            # nothing and leaves random weights; the full model maps the keys and hands over its encoder.
            whisper = load_pretrained(WhisperModel.from_pretrained, model_dir, "Whisper encoder")
            self.encoder, self.config = whisper.get_encoder(), whisper.config
        elif config is not None:
            self.encoder, self.config = WhisperEncoder(config), config
        else:
            raise ValueError("WhisperSpeechEncoder needs a checkpoint directory or a WhisperConfig")
        self.output_dim = self.config.d_model
        self.max_frames = self.config.max_source_positions * 2
        self.encoder.requires_grad_(trainable)

    @staticmethod
    def output_lengths(lengths: torch.Tensor) -> torch.Tensor:
        return torch.div(lengths - 1, 2, rounding_mode="floor") + 1  # conv2 has stride 2, padding 1

    def encode(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if features.shape[1] > self.max_frames:
            seconds = features.shape[1] / 100
            raise ValueError(f"Whisper encodes at most {self.max_frames / 100:.0f} s of audio; got {seconds:.1f} s")
        enc = self.encoder
        out_lengths = self.output_lengths(lengths)
        padded = bool((lengths < features.shape[1]).any())
        x = features.transpose(1, 2).to(enc.conv1.weight.dtype)
        x = F.gelu(enc.conv1(x))
        if padded:  # conv2 must see zeros past an utterance's end, as it does alone (its own zero padding)
            inside = torch.arange(x.shape[2], device=x.device)[None, :] < lengths[:, None]
            x = x * inside[:, None, :].to(x.dtype)
        x = F.gelu(enc.conv2(x)).transpose(1, 2)
        x = x + enc.embed_positions.weight[: x.shape[1]]
        mask = None
        if padded:  # (batch, 1, 1, keys): True where a real frame may be attended to (SDPA's boolean mask)
            mask = (torch.arange(x.shape[1], device=x.device)[None, :] < out_lengths[:, None])[:, None, None, :]
            if self.config._attn_implementation == "eager":  # eager attention adds its mask to the scores
                mask = torch.zeros(mask.shape, dtype=x.dtype, device=x.device).masked_fill(
                    ~mask, torch.finfo(x.dtype).min)
        for layer in enc.layers:
            out = layer(x, attention_mask=mask)
            x = out[0] if isinstance(out, tuple) else out  # transformers < 5 returns a tuple
        return enc.layer_norm(x), out_lengths

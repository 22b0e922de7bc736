"""The CTC aligner model: the project's Conformer with a shallower subsampling front, plus a CTC head.

Why not the ASR encoder as it is: its 8x subsampling gives 80 ms frames (12.5 per second), fewer than
the ~13-16 characters per second of English read speech (word boundaries included), so a character CTC
path often does not even exist at that rate, and boundaries would be quantised to 80 ms. One stride-2
convolution (20 ms frames) keeps every Conformer block as it is and gives ~3x more frames than
characters. Saved as ``model.safetensors`` + ``aligner.json`` (no pickle).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import nn

from speechbraid.align.text import VOCAB
from speechbraid.data.audio import load_audio
from speechbraid.data.features import FEATURE_SAMPLE_RATE, FeatureConfig
from speechbraid.data.records import Utterance
from speechbraid.errors import CheckpointError, ConfigError
from speechbraid.files import atomic_write_text
from speechbraid.models.encoders import ConformerConfig, ConformerEncoder

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "aligner.json"
FEATURES = FeatureConfig()  # 80-bin fbank, 10 ms shift: what ConformerEncoder is built for


@dataclass(frozen=True)
class AlignerConfig:
    """Everything needed to rebuild the model and read its output frames as times."""

    encoder: ConformerConfig = field(default_factory=ConformerConfig)
    subsample_layers: int = 1  # stride-2 convolutions: 1 -> 20 ms frames, 2 -> 40 ms, 3 -> 80 ms
    vocab: tuple[str, ...] = VOCAB

    def __post_init__(self) -> None:
        if not 1 <= self.subsample_layers <= 3:
            raise ConfigError(f"subsample_layers must be 1, 2 or 3, got {self.subsample_layers}")

    @property
    def frame_seconds(self) -> float:
        return FEATURES.frame_shift * 2**self.subsample_layers

    def output_frames(self, feature_frames: int) -> int:
        """Encoder output frames for ``feature_frames`` input frames (kernel 3, stride 2, padding 1 each)."""
        for _ in range(self.subsample_layers):
            feature_frames = (feature_frames - 1) // 2 + 1
        return feature_frames

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["vocab"] = list(self.vocab)
        out["features"] = FEATURES.to_dict()
        return out

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> AlignerConfig:
        if obj.get("features", FEATURES.to_dict()) != FEATURES.to_dict():
            raise ConfigError(f"aligner was trained on features {obj['features']}, this version computes "
                              f"{FEATURES.to_dict()}")
        return cls(ConformerConfig(**obj["encoder"]), int(obj["subsample_layers"]), tuple(obj["vocab"]))


class CTCAligner(nn.Module):
    """Normalised log-mel ``(B, T, 80)`` -> CTC log posteriors ``(B, T', vocab)`` and lengths ``T'``."""

    def __init__(self, config: AlignerConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = ConformerEncoder(replace(config.encoder, subsample_layers=config.subsample_layers))
        self.head = nn.Linear(config.encoder.d_model, len(config.vocab))

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden, out_lengths = self.encoder(features, lengths)
        return self.head(hidden).log_softmax(dim=-1), out_lengths

    @torch.no_grad()
    def log_posteriors(self, features: torch.Tensor) -> np.ndarray:
        """``(frames, vocab)`` log posteriors of one utterance's features, in eval mode."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        feats = features.to(device)[None]
        log_probs, lengths = self(feats, torch.tensor([feats.shape[1]], device=device))
        self.train(was_training)
        return log_probs[0, : int(lengths[0])].float().cpu().numpy()


def utterance_features(record: Utterance) -> torch.Tensor:
    """Per-utterance mean/variance normalised fbank of a record's audio (a NeMo ``offset`` is honoured).

    Raises ValueError (audio too short) or InputError (unreadable audio); callers add the manifest line.
    """
    if record.audio is None:
        raise ValueError("text-only record: no audio to align")
    samples, rate = load_audio(record.audio, FEATURE_SAMPLE_RATE)
    offset = record.extra.get("offset")
    if offset:
        first = round(float(offset) * rate)
        samples = samples[first: None if record.duration is None else first + round(record.duration * rate)]
    feats = torch.as_tensor(FEATURES.extract(samples, rate), dtype=torch.float32)
    # CMVN per utterance: from-scratch training converges much faster when loudness and voice offsets are gone
    return (feats - feats.mean(dim=0)) / (feats.std(dim=0) + 1e-5)


def save_aligner(model: CTCAligner, out_dir: str | Path) -> None:
    """Write ``model.safetensors`` and ``aligner.json`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_model(model, str(out / MODEL_FILE))
    atomic_write_text(out / CONFIG_FILE, json.dumps(model.config.to_dict(), indent=2) + "\n")


def load_aligner(model_dir: str | Path, device: str | torch.device = "cpu") -> CTCAligner:
    """Load a trained aligner saved by :func:`save_aligner` (or ``speechbraid align train``)."""
    model_dir = Path(model_dir)
    config_path = model_dir / CONFIG_FILE
    if not config_path.is_file():
        raise CheckpointError(f"not an aligner directory: {CONFIG_FILE} missing (train one with "
                              "'speechbraid align train')", model_dir)
    try:
        config = AlignerConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"invalid aligner config: {exc}", config_path) from None
    if config.vocab != VOCAB:
        raise CheckpointError("aligner vocabulary differs from this version's character set", config_path)
    model = CTCAligner(config)
    try:
        load_model(model, str(model_dir / MODEL_FILE), strict=True)
    except (OSError, RuntimeError, ValueError, SafetensorError) as exc:
        raise CheckpointError(f"cannot load aligner weights: {exc}", model_dir / MODEL_FILE) from None
    return model.to(device).eval()

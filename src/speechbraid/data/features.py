"""Acoustic features for the speech encoders: 80-dim log-mel, 25 ms window, 10 ms shift, at 16 kHz.

Two variants, both from maintained implementations rather than hand-written DSP:

- ``fbank``: Kaldi-compatible log-mel filterbank (lhotse ``Fbank``; what Conformer ASR recipes use);
- ``whisper``: Whisper's log-mel (transformers ``WhisperFeatureExtractor``: log10 with a 1e-10 clamp,
  floor at max - 8, then ``(x + 4) / 4``), at the audio's own length unless padding to 30 s is asked for.

Every feature array is time-major, ``(frames, bins)`` (``(batch, frames, bins)`` for batches), as the
encoders take it; HF Whisper models want ``.transpose(-1, -2)``. Input at any sample rate is resampled
to 16 kHz with soxr, the resampler ``speechbraid.data.audio`` uses. Output type follows the input:
numpy in, numpy out; a torch tensor in (or ``device=`` given), a torch tensor out on that device.

Frame count rule (:meth:`FeatureConfig.frames_for`), with ``n`` samples at 16 kHz and hop 160:
- fbank: ``(n + 80) // 160``: Kaldi with ``snip_edges=False`` centres frame ``i`` at ``i * 10 ms`` and
  keeps every frame whose centre lies inside the audio (rounded to the nearest frame);
- whisper: ``n // 160``: a centred STFT gives ``n // 160 + 1`` frames and Whisper drops the last one;
  with ``pad_to_30s`` always 3000 (longer audio is cut at 30 s, as Whisper does).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import soxr
import torch

from speechbraid.data.audio import load_audio
from speechbraid.errors import ConfigError

FEATURE_SAMPLE_RATE = 16000
WHISPER_WINDOW = 400  # samples (25 ms): fixed by the Whisper models
WHISPER_HOP = 160  # samples (10 ms)
WHISPER_CHUNK_SECONDS = 30

Samples = np.ndarray | torch.Tensor


@dataclass(frozen=True)
class FeatureConfig:
    """Which features to compute; ``frames_for`` is the one place the frame count rule lives."""

    kind: Literal["fbank", "whisper"] = "fbank"  # feature variant
    num_mel_bins: int = 80  # mel bins (128 for Whisper large-v3)
    frame_length: float = 0.025  # seconds
    frame_shift: float = 0.01  # seconds
    pad_to_30s: bool = False  # whisper only: pad (or cut) to Whisper's fixed 30 s window

    def __post_init__(self) -> None:
        if self.kind not in ("fbank", "whisper"):
            raise ConfigError(f"feature kind must be 'fbank' or 'whisper', got {self.kind!r}")
        if self.num_mel_bins < 1:
            raise ConfigError(f"num_mel_bins must be positive, got {self.num_mel_bins}")
        if not 0 < self.frame_shift <= self.frame_length:
            raise ConfigError(f"need 0 < frame_shift <= frame_length, got {self.frame_shift}, {self.frame_length}")
        if self.kind == "whisper" and (self.window_samples, self.hop_samples) != (WHISPER_WINDOW, WHISPER_HOP):
            raise ConfigError("whisper features have a fixed 25 ms window and 10 ms shift")
        if self.pad_to_30s and self.kind != "whisper":
            raise ConfigError("pad_to_30s applies to whisper features only")

    @property
    def hop_samples(self) -> int:
        return round(self.frame_shift * FEATURE_SAMPLE_RATE)

    @property
    def window_samples(self) -> int:
        return round(self.frame_length * FEATURE_SAMPLE_RATE)

    def frames_for(self, duration_s: float) -> int:
        """Number of feature frames for ``duration_s`` seconds of audio (rule in the module docstring)."""
        n = round(duration_s * FEATURE_SAMPLE_RATE)
        if self.kind == "fbank":
            return (n + self.hop_samples // 2) // self.hop_samples
        if self.pad_to_30s:
            return WHISPER_CHUNK_SECONDS * FEATURE_SAMPLE_RATE // WHISPER_HOP
        return n // WHISPER_HOP

    def extract(self, samples: Samples, sample_rate: int, device: str | torch.device | None = None) -> Samples:
        """Features of one mono waveform: ``(frames, num_mel_bins)``."""
        if self.kind == "fbank":
            return log_mel(samples, sample_rate, device=device, config=self)
        return whisper_log_mel(samples, sample_rate, self.pad_to_30s, device=device, num_mel_bins=self.num_mel_bins)

    def extract_file(self, path: str | Path, device: str | torch.device | None = None) -> torch.Tensor:
        """Features of an audio file as a tensor, e.g. as ``collate(rows, features=config.extract_file)``."""
        samples, rate = load_audio(path, FEATURE_SAMPLE_RATE)
        return _as_tensor(self.extract(samples, rate), device)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def log_mel(
    samples: Samples,
    sample_rate: int,
    device: str | torch.device | None = None,
    config: FeatureConfig | None = None,
) -> Samples:
    """Kaldi-style 80-bin log-mel fbank (lhotse ``Fbank``) of a mono waveform: ``(frames, bins)``."""
    config = config or FeatureConfig()
    if config.kind != "fbank":
        raise ConfigError(f"log_mel computes fbank features; got a {config.kind!r} config")
    audio, out_device = _prepare(samples, sample_rate, device, config.window_samples)
    extractor = _fbank(config.num_mel_bins, config.frame_length, config.frame_shift, str(out_device or "cpu"))
    with _full_precision(out_device):
        feats = extractor.extract(torch.as_tensor(audio), FEATURE_SAMPLE_RATE)
    return _output(feats, out_device)


def whisper_log_mel(
    samples: Samples,
    sample_rate: int,
    pad_to_30s: bool = False,
    device: str | torch.device | None = None,
    num_mel_bins: int = 80,
) -> Samples:
    """Whisper's log-mel of a mono waveform: ``(frames, bins)``, ``len // 160`` frames unless padded to 30 s.

    Normalisation (the max - 8 floor) is per utterance, over the valid audio only, so the unpadded
    features equal the first frames of the padded ones (up to the last frame, whose window sees the
    zero padding instead of reflection).
    """
    audio, out_device = _prepare(samples, sample_rate, device, WHISPER_WINDOW)
    extractor = _whisper(num_mel_bins)
    with _full_precision(out_device):
        feats = extractor(
            audio,
            sampling_rate=FEATURE_SAMPLE_RATE,
            padding="max_length" if pad_to_30s else "longest",
            truncation=pad_to_30s,  # Whisper cuts at 30 s only in its fixed-window mode
            return_tensors="np",
            device=str(out_device or "cpu"),
        ).input_features[0]
    return _output(np.ascontiguousarray(feats.T), out_device)


def extract_batch(
    waveforms: Sequence[Samples],
    sample_rate: int,
    config: FeatureConfig | None = None,
    device: str | torch.device | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of several waveforms: zero-padded ``(batch, max_frames, bins)`` and ``(batch,)`` lengths.

    Each item is computed on its own, so an item's features do not depend on what it is batched with
    (Whisper's own batched call shares the normalisation maximum across the batch).
    """
    config = config or FeatureConfig()
    return pad_features([_as_tensor(config.extract(w, sample_rate, device), device) for w in waveforms])


def pad_features(features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad ``(frames, bins)`` tensors with zeros into ``(batch, max_frames, bins)``; return lengths too."""
    if not features:
        raise ValueError("pad_features needs at least one feature matrix")
    lengths = torch.tensor([f.shape[0] for f in features], dtype=torch.long, device=features[0].device)
    return torch.nn.utils.rnn.pad_sequence(list(features), batch_first=True), lengths


def measure_feature_speed(
    kind: Literal["fbank", "whisper"], seconds_of_audio: float = 60.0, device: str | None = None
) -> float:
    """Throughput as x real time (seconds of audio per second of compute) on a seeded noise signal."""
    config = FeatureConfig(kind=kind)
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(round(seconds_of_audio * FEATURE_SAMPLE_RATE))).astype(np.float32)
    config.extract(audio[:FEATURE_SAMPLE_RATE], FEATURE_SAMPLE_RATE, device)  # warm-up: caches, allocators
    start = time.perf_counter()
    feats = config.extract(audio, FEATURE_SAMPLE_RATE, device)
    if isinstance(feats, torch.Tensor) and feats.is_cuda:
        torch.cuda.synchronize(feats.device)
    return seconds_of_audio / (time.perf_counter() - start)


def _prepare(
    samples: Samples, sample_rate: int, device: str | torch.device | None, min_samples: int
) -> tuple[np.ndarray, torch.device | None]:
    """Mono float32 numpy at 16 kHz, plus the device the result should live on (None: return numpy)."""
    out_device = torch.device(device) if device is not None else None
    if isinstance(samples, torch.Tensor):
        out_device = out_device or samples.device
        samples = samples.detach().to("cpu", torch.float32).numpy()
    audio = np.asarray(samples, dtype=np.float32)
    if audio.ndim == 2 and audio.shape[0] == 1:
        audio = audio[0]
    if audio.ndim != 1:
        raise ValueError(f"expected a mono waveform (samples,), got shape {tuple(audio.shape)}")
    if sample_rate != FEATURE_SAMPLE_RATE:
        audio = soxr.resample(audio, sample_rate, FEATURE_SAMPLE_RATE).astype(np.float32, copy=False)
    if audio.shape[0] < min_samples:
        raise ValueError(
            f"audio too short for features: {audio.shape[0]} samples at 16 kHz, need at least {min_samples} "
            f"({min_samples / FEATURE_SAMPLE_RATE * 1000:.0f} ms, one analysis window)"
        )
    return audio, out_device


def _full_precision(device: str | torch.device | None) -> torch.autocast:
    """Features are signal processing, not a model: computed in fp32 even when the caller decodes or trains under
    bf16 autocast (which would otherwise round the spectrum, and hand numpy callers a dtype it cannot hold)."""
    return torch.autocast(torch.device(device or "cpu").type, enabled=False)


def _output(feats: Samples, device: torch.device | None) -> Samples:
    if device is None:
        return feats.cpu().numpy() if isinstance(feats, torch.Tensor) else feats
    return _as_tensor(feats, device)


def _as_tensor(feats: Samples, device: str | torch.device | None) -> torch.Tensor:
    tensor = torch.as_tensor(feats, dtype=torch.float32)
    return tensor if device is None else tensor.to(device)


@lru_cache(maxsize=8)
def _fbank(num_mel_bins: int, frame_length: float, frame_shift: float, device: str) -> Any:
    from lhotse import Fbank, FbankConfig

    return Fbank(
        FbankConfig(
            sampling_rate=FEATURE_SAMPLE_RATE,
            num_mel_bins=num_mel_bins,
            frame_length=frame_length,
            frame_shift=frame_shift,
            device=device,
        )
    )


@lru_cache(maxsize=4)
def _whisper(num_mel_bins: int) -> Any:
    from transformers import WhisperFeatureExtractor

    # Built from parameters, not downloaded: the defaults are Whisper's (16 kHz, n_fft 400, hop 160, 30 s).
    return WhisperFeatureExtractor(feature_size=num_mel_bins)

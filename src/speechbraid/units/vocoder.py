"""Units back to audio: a small unit-to-mel network plus Griffin-Lim phase reconstruction.

- :class:`UnitToMel`: unit embedding -> residual 1-D convolutions at the unit rate -> repeat each unit
  ``100 / rate`` times -> residual convolutions at 100 Hz -> 80-bin natural-log mel. Speaker-agnostic
  (no speaker input); trained with L1 on the log-mel of the corpus audio. Only convolutions and
  per-frame LayerNorm, so its receptive field is finite and known (``lookahead_units``): that is what
  makes chunked synthesis exact. The default size (384 channels, 6 unit-rate layers; 7.9M parameters with
  2,000 units), trained 6,000 steps, was measured against the previous one (192, 3) trained 3,000: whisper-base
  judge WER 21.9 vs 24.9% on 60 held-out sentences of one Piper voice (2,000 standardised layer-3 units;
  README, "Units -> speech").
- Griffin-Lim (torch ``stft``/``istft``, with the "fast" momentum variant of Perraudin et al. 2013)
  from the mel through the pseudo-inverse of the mel filterbank (transformers' ``mel_filter_bank``,
  Slaney scale and norm), 16 kHz output.

Lengths: ``n`` units at ``rate`` Hz give ``n * 100 / rate`` mel frames and exactly
``n * 16000 / rate`` samples (``n / rate`` seconds).

Streaming (:func:`stream_audio`): the mel of unit ``i`` depends on units ``i - L .. i + L`` with
``L = lookahead_units``; a chunk's mel is computed once ``L`` further units have arrived, with ``L``
units of left context, so the streamed mel equals the whole-utterance mel exactly. Griffin-Lim runs
per chunk; the last ``overlap_frames`` (default 8 = 80 ms) of each chunk's audio are held back and
cross-faded with the next chunk, whose phase search starts from the held-back frames' phases, so
chunk boundaries do not click. Latency beyond the chunk itself: ``L`` units of lookahead plus the
held-back overlap (``overlap_frames / 100`` s). With the default config ``L = 3 * 2 + ceil(2 * 2 /
upsample) = 13`` units: 520 ms at 25 Hz, 1.04 s at 12.5 Hz, plus 80 ms overlap; fewer ``unit_layers``
or a smaller ``kernel`` shorten it (3 unit layers: 7 units, 280 ms at 25 Hz, for a less intelligible voice).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import nn
from torch.nn import functional as F

from speechbraid.errors import CheckpointError, ConfigError, InputError
from speechbraid.files import read_model_config

SAMPLE_RATE = 16000
HOP = 160  # 10 ms: 100 Hz mel frames
N_FFT = 1024  # long window: better frequency resolution for Griffin-Lim at 16 kHz
N_MELS = 80
LOG_FLOOR = 1e-5
MODEL_FILE = "vocoder.safetensors"
CONFIG_FILE = "vocoder.json"


# ---------------------------------------------------------------------------------------------
# Mel analysis and Griffin-Lim


@lru_cache(maxsize=1)
def _mel_basis() -> tuple[torch.Tensor, torch.Tensor]:
    """(mel filterbank ``(n_mels, bins)``, its pseudo-inverse ``(bins, n_mels)``)."""
    from transformers.audio_utils import mel_filter_bank

    fb = mel_filter_bank(num_frequency_bins=N_FFT // 2 + 1, num_mel_filters=N_MELS, min_frequency=0.0,
                         max_frequency=SAMPLE_RATE / 2, sampling_rate=SAMPLE_RATE, norm="slaney", mel_scale="slaney")
    basis = torch.as_tensor(fb.T, dtype=torch.float32)
    return basis, torch.linalg.pinv(basis)


def mel_frames(n_samples: int) -> int:
    """Mel frames of ``n_samples`` samples: ``n // 160`` (the centred STFT's extra last frame is dropped)."""
    return n_samples // HOP


def log_mel(samples: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Natural-log mel ``(frames, 80)`` of 16 kHz mono audio, ``len // 160`` frames."""
    audio = torch.as_tensor(samples, dtype=torch.float32)
    window = torch.hann_window(N_FFT)
    spec = torch.stft(audio, N_FFT, HOP, window=window, center=True, pad_mode="reflect", return_complex=True)
    mel = _mel_basis()[0] @ spec.abs()
    return torch.log(mel.clamp_min(LOG_FLOOR))[:, : mel_frames(audio.shape[0])].T.contiguous()


def griffin_lim(logmel: torch.Tensor, n_iter: int = 32, momentum: float = 0.99,
                init_phase: torch.Tensor | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Audio ``(frames * 160,)`` from a log-mel ``(frames, 80)``; also the phases ``(bins, frames)`` reached.

    ``init_phase`` may fix the starting phase of the first frames (streaming continuity); the rest
    start from seeded random phases, so the result is deterministic.
    """
    frames = logmel.shape[0]
    mag = (_mel_basis()[1] @ torch.exp(logmel.T.float())).clamp_min(0.0)
    mag = torch.cat([mag, mag[:, -1:]], dim=1)  # the centred STFT has one frame more than we keep
    gen = torch.Generator().manual_seed(seed)
    angles = torch.exp(2j * math.pi * torch.rand(mag.shape, generator=gen))
    if init_phase is not None:
        angles[:, : init_phase.shape[1]] = torch.exp(1j * init_phase)
    window = torch.hann_window(N_FFT)
    length = frames * HOP
    previous = torch.zeros_like(angles)
    for _ in range(n_iter):
        audio = torch.istft(mag * angles, N_FFT, HOP, window=window, center=True, length=length)
        rebuilt = torch.stft(audio, N_FFT, HOP, window=window, center=True, pad_mode="reflect", return_complex=True)
        angles = rebuilt - (momentum / (1 + momentum)) * previous
        angles = angles / angles.abs().clamp_min(1e-16)
        previous = rebuilt
    audio = torch.istft(mag * angles, N_FFT, HOP, window=window, center=True, length=length)
    return audio, torch.angle(angles[:, :frames])


# ---------------------------------------------------------------------------------------------
# Unit-to-mel model


@dataclass(frozen=True)
class VocoderConfig:
    n_units: int = 500
    unit_rate_hz: float = 25.0
    d_model: int = 384  # channels of every layer
    unit_layers: int = 6  # residual convolutions at the unit rate
    mel_layers: int = 2  # residual convolutions at 100 Hz
    kernel: int = 5

    def __post_init__(self) -> None:
        if float(self.unit_rate_hz) not in (25.0, 12.5):
            raise ConfigError(f"unit rate must be 25 or 12.5 Hz, got {self.unit_rate_hz}")
        if self.kernel % 2 == 0 or self.kernel < 1:
            raise ConfigError(f"kernel must be odd, got {self.kernel}")

    @property
    def upsample(self) -> int:
        """Mel frames (10 ms) per unit."""
        return round(100 / self.unit_rate_hz)

    @property
    def lookahead_units(self) -> int:
        """Units on each side that influence one unit's mel (the streaming lookahead and left context)."""
        half = self.kernel // 2
        return self.unit_layers * half + math.ceil(self.mel_layers * half / self.upsample)


class _ResConv(nn.Module):
    def __init__(self, d: int, kernel: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.conv = nn.Conv1d(d, d, kernel, padding=kernel // 2)
        self.proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, d)
        y = self.conv(self.norm(x).transpose(1, 2)).transpose(1, 2)
        return x + self.proj(F.gelu(y))


class UnitToMel(nn.Module):
    """Units ``(B, U)`` -> log-mel ``(B, U * upsample, 80)``."""

    def __init__(self, config: VocoderConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.n_units, config.d_model)
        self.unit_blocks = nn.ModuleList(_ResConv(config.d_model, config.kernel) for _ in range(config.unit_layers))
        self.mel_blocks = nn.ModuleList(_ResConv(config.d_model, config.kernel) for _ in range(config.mel_layers))
        self.out = nn.Sequential(nn.LayerNorm(config.d_model), nn.Linear(config.d_model, N_MELS))
        # Start mid-way between the log floor and 0: early steps then learn spectra, not a constant offset.
        nn.init.constant_(self.out[1].bias, math.log(LOG_FLOOR) / 2)

    def forward(self, units: torch.Tensor) -> torch.Tensor:
        x = self.embed(units)
        for block in self.unit_blocks:
            x = block(x)
        x = x.repeat_interleave(self.config.upsample, dim=1)
        for block in self.mel_blocks:
            x = block(x)
        return self.out(x)


class UnitVocoder:
    """A trained :class:`UnitToMel` plus Griffin-Lim: units -> 16 kHz audio, whole or streamed."""

    def __init__(self, model: UnitToMel, gl_iters: int = 32) -> None:
        self.model = model.eval()
        self.config = model.config
        self.gl_iters = gl_iters

    def _check(self, units: Sequence[int] | np.ndarray) -> torch.Tensor:
        ids = torch.as_tensor(np.asarray(units, dtype=np.int64))
        if ids.ndim != 1 or ids.numel() == 0:
            raise InputError("units must be a non-empty 1-D sequence of ids")
        if int(ids.min()) < 0 or int(ids.max()) >= self.config.n_units:
            raise InputError(f"unit ids must lie in [0, {self.config.n_units}), got {int(ids.min())}..{int(ids.max())}")
        return ids

    @torch.inference_mode()
    def units_to_mel(self, units: Sequence[int] | np.ndarray) -> torch.Tensor:
        return self.model(self._check(units)[None])[0]

    def units_to_audio(self, units: Sequence[int] | np.ndarray) -> np.ndarray:
        """Float32 audio at 16 kHz, ``len(units) * 16000 / rate`` samples."""
        audio, _ = griffin_lim(self.units_to_mel(units), self.gl_iters)
        return audio.numpy().astype(np.float32)

    def stream_mel(self, unit_chunks: Iterable[Sequence[int] | np.ndarray]) -> Iterator[torch.Tensor]:
        """Mel frames chunk by chunk, identical to :meth:`units_to_mel` of the concatenated units."""
        stream = UnitStream(self)
        for chunk in unit_chunks:
            mel = stream.push_mel(chunk)
            if mel is not None:
                yield mel
        mel = stream.push_mel([], final=True)
        if mel is not None:
            yield mel

    def stream_audio(self, unit_chunks: Iterable[Sequence[int] | np.ndarray],
                     overlap_frames: int = 8) -> Iterator[np.ndarray]:
        """Audio pieces as unit chunks arrive; concatenated they are as long as :meth:`units_to_audio`."""
        stream = UnitStream(self, overlap_frames)
        for chunk in unit_chunks:
            audio = stream.push(chunk)
            if audio.size:
                yield audio
        audio = stream.flush()
        if audio.size:
            yield audio

    def save(self, out_dir: str | Path) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        save_model(self.model, str(out / MODEL_FILE))
        meta = {"config": asdict(self.config), "gl_iters": self.gl_iters}
        (out / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        return out

    @classmethod
    def load(cls, model_dir: str | Path) -> UnitVocoder:
        path = Path(model_dir)
        config, gl_iters = read_model_config(path, CONFIG_FILE, "unit vocoder",
                                             lambda meta: (VocoderConfig(**meta["config"]), meta.get("gl_iters", 32)))
        model = UnitToMel(config)
        try:
            load_model(model, str(path / MODEL_FILE), strict=True)
        except (OSError, RuntimeError, SafetensorError) as exc:
            raise CheckpointError(f"cannot load vocoder weights: {exc}", path / MODEL_FILE) from None
        return cls(model, gl_iters)


class UnitStream:
    """Push-style streaming synthesis for one utterance: ``push(units)`` returns the audio that is final so
    far (possibly empty), ``flush()`` the rest once the units have ended.

    Suits callback decoders (one ``UnitStream`` per response). The mel of the pushed units is exact
    (``lookahead_units`` of right and left context); each audio piece's Griffin-Lim starts from the
    phases of the ``overlap_frames`` held back from the previous piece, whose audio is cross-faded
    linearly with the new piece (see the module docstring).
    """

    def __init__(self, vocoder: UnitVocoder, overlap_frames: int = 8) -> None:
        if overlap_frames < 0:
            raise ValueError(f"overlap_frames must be >= 0, got {overlap_frames}")
        self.vocoder = vocoder
        self.overlap_frames = overlap_frames
        self._buffer = torch.zeros(0, dtype=torch.long)  # units from ``_offset`` on
        self._offset = self._done = 0  # absolute index of _buffer[0]; units whose mel is out
        self._tail: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # held-back mel, audio, phase
        ov = overlap_frames * HOP
        self._fade = torch.linspace(0.0, 1.0, ov + 2)[1:-1]

    @torch.inference_mode()
    def push_mel(self, units: Sequence[int] | np.ndarray, final: bool = False) -> torch.Tensor | None:
        """Mel of the units that have their full right context now (all of them when ``final``)."""
        if len(units):
            self._buffer = torch.cat([self._buffer, self.vocoder._check(units)])
        config = self.vocoder.config
        look, up = config.lookahead_units, config.upsample
        total = self._offset + self._buffer.shape[0]
        end = total if final else total - look
        if end <= self._done:
            return None
        lo, hi = max(self._done - look, self._offset), min(end + look, total)
        mel = self.vocoder.model(self._buffer[lo - self._offset : hi - self._offset][None])[0]
        mel = mel[(self._done - lo) * up : (end - lo) * up]
        self._done = end
        keep = max(end - look, self._offset)  # left context the next span still needs
        self._buffer, self._offset = self._buffer[keep - self._offset :], keep
        return mel

    def push(self, units: Sequence[int] | np.ndarray) -> np.ndarray:
        return self._audio(self.push_mel(units), final=False)

    def flush(self) -> np.ndarray:
        return self._audio(self.push_mel([], final=True), final=True)

    def _audio(self, mel: torch.Tensor | None, final: bool) -> np.ndarray:
        if mel is None:
            if not final or self._tail is None:
                return np.zeros(0, dtype=np.float32)
            audio = self._tail[1]
            self._tail = None
            return audio.numpy().astype(np.float32)
        init_phase = None
        if self._tail is not None:
            mel, init_phase = torch.cat([self._tail[0], mel]), self._tail[2]
        audio, phase = griffin_lim(mel, self.vocoder.gl_iters, init_phase=init_phase)
        if self._tail is not None:
            held = self._tail[1].shape[0]
            fade = self._fade[-held:]
            audio[:held] = self._tail[1] * (1 - fade) + audio[:held] * fade
        self._tail = None
        ov = self.overlap_frames
        if final or ov == 0:
            return audio.numpy().astype(np.float32)
        if mel.shape[0] <= ov:  # too short to hold anything back and still emit
            self._tail = (mel, audio, phase)
            return np.zeros(0, dtype=np.float32)
        cut = audio.shape[0] - ov * HOP
        self._tail = (mel[-ov:], audio[cut:], phase[:, -ov:])
        return audio[:cut].numpy().astype(np.float32)

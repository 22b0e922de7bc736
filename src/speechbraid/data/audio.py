"""Audio I/O: read any soundfile-readable file as mono float32 at a target rate, write 16-bit WAV atomically."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from speechbraid.errors import InputError
from speechbraid.files import atomic_path

DEFAULT_SAMPLE_RATE = 16000


def audio_info(path: str | Path) -> tuple[int, float]:
    """(sample rate, duration in seconds) from the file header, without decoding the samples.

    A WAV whose data chunk is shorter than its header declares (a cut-off copy or download) is an
    :class:`InputError`: libsndfile silently reads only what is there.
    """
    try:
        info = sf.info(str(path))
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise InputError(f"unreadable audio: {exc}", path) from None
    declared = _declared_wav_frames(path)
    if declared is not None and info.frames < declared:
        raise InputError(f"truncated audio: the WAV header declares {declared / info.samplerate:.3f} s but the file "
                         f"holds only {info.frames / info.samplerate:.3f} s", path)
    return int(info.samplerate), float(info.frames) / float(info.samplerate)


def _declared_wav_frames(path: str | Path) -> int | None:
    """Frames the RIFF/WAVE header of ``path`` declares for its data chunk; None for other formats and for
    streamed WAVs whose size field was never filled in (0 or 0xFFFFFFFF)."""
    with open(path, "rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        block_align = None
        while True:
            chunk = handle.read(8)
            if len(chunk) < 8:
                return None
            chunk_id, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if chunk_id == b"fmt ":
                fmt = handle.read(size + (size & 1))
                if len(fmt) >= 14:
                    block_align = struct.unpack("<H", fmt[12:14])[0]
            elif chunk_id == b"data":
                if not block_align or size in (0, 0xFFFFFFFF):
                    return None
                return size // block_align
            else:
                handle.seek(size + (size & 1), os.SEEK_CUR)  # chunks are padded to even sizes


def load_audio(path: str | Path, sample_rate: int | None = DEFAULT_SAMPLE_RATE) -> tuple[np.ndarray, int]:
    """Decode ``path`` to mono float32; resample (soxr, high quality) when ``sample_rate`` differs.

    Returns (samples, rate). ``sample_rate=None`` keeps the file's own rate.
    """
    if not Path(path).is_file():
        raise InputError("audio file not found", path)
    audio_info(path)  # header checks, e.g. a truncated WAV, which sf.read would silently accept
    try:
        samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise InputError(f"unreadable audio: {exc}", path) from None
    mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    if sample_rate is not None and rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate).astype(np.float32, copy=False)
        rate = sample_rate
    return np.ascontiguousarray(mono), int(rate)


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int) -> None:
    """Write PCM-16 WAV via a temporary file + rename, so a killed job leaves no half-written file."""
    with atomic_path(path, suffix=".wav") as tmp:
        sf.write(tmp, np.clip(samples, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")


def frame_rms(samples: np.ndarray, sample_rate: int, frame_seconds: float = 0.02) -> np.ndarray:
    """Root-mean-square level of consecutive non-overlapping frames (the last partial frame dropped)."""
    size = max(1, round(frame_seconds * sample_rate))
    count = len(samples) // size
    frames = np.asarray(samples[: count * size], dtype=np.float64).reshape(count, size)
    return np.sqrt((frames**2).mean(axis=1)) if count else np.zeros(0)


def speech_seconds_after(samples: np.ndarray, sample_rate: int, time: float, relative_level: float = 0.1,
                         frame_seconds: float = 0.02) -> float:
    """Seconds of audio after ``time`` louder than ``relative_level`` times the loudest frame: how much speech
    lies beyond a point that should end it (e.g. the last aligned word). 0.0 for silent audio."""
    rms = frame_rms(samples, sample_rate, frame_seconds)
    if not rms.size or rms.max() <= 0:
        return 0.0
    first = int(np.ceil(time / frame_seconds))
    return float((rms[first:] > relative_level * rms.max()).sum()) * frame_seconds

"""Audio I/O: read any soundfile-readable file as mono float32 at a target rate, write 16-bit WAV atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from speechbraid.errors import InputError

DEFAULT_SAMPLE_RATE = 16000


def audio_info(path: str | Path) -> tuple[int, float]:
    """(sample rate, duration in seconds) from the file header, without decoding the samples."""
    try:
        info = sf.info(str(path))
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise InputError(f"unreadable audio: {exc}", path) from None
    return int(info.samplerate), float(info.frames) / float(info.samplerate)


def load_audio(path: str | Path, sample_rate: int | None = DEFAULT_SAMPLE_RATE) -> tuple[np.ndarray, int]:
    """Decode ``path`` to mono float32; resample (soxr, high quality) when ``sample_rate`` differs.

    Returns (samples, rate). ``sample_rate=None`` keeps the file's own rate.
    """
    if not Path(path).is_file():
        raise InputError("audio file not found", path)
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".wav", dir=path.parent)
    os.close(fd)
    try:
        sf.write(tmp, np.clip(samples, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

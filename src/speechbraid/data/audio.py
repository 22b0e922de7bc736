"""Audio I/O: read any soundfile-readable file as mono float32 at a target rate, write 16-bit WAV atomically.

An audio reference is a file path, or ``<shard>.tar#<name>`` for audio stored inside a tar shard (lhotse Shar
writes each cut's audio as a member ``<cut id>.<format>``): the member whose name without its extension is
``<name>`` (metadata ``.json`` members aside) is read by seeking into the tar, never extracted.
"""

from __future__ import annotations

import io
import os
import struct
import tarfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from speechbraid.errors import InputError
from speechbraid.files import atomic_path

DEFAULT_SAMPLE_RATE = 16000


TAR_MEMBER = ".tar#"  # what marks an audio reference into a tar shard


def split_tar_reference(path: str | Path) -> tuple[Path, str] | None:
    """(tar shard, member name without extension) of a ``<shard>.tar#<name>`` reference; None for a plain path."""
    text = str(path)
    cut = text.rfind(TAR_MEMBER)
    if cut < 0:
        return None
    return Path(text[: cut + len(TAR_MEMBER) - 1]), text[cut + len(TAR_MEMBER):]


def audio_file(path: str | Path) -> Path:
    """The file that holds the audio of ``path`` (the tar shard of a member reference)."""
    member = split_tar_reference(path)
    return member[0] if member else Path(path)


@lru_cache(maxsize=16)
def _tar_index(tar: Path, stamp: tuple[int, int]) -> dict[str, tuple[int, int]]:
    """Audio members of a tar shard: name without extension -> (data offset, size); one pass over the headers."""
    del stamp  # part of the cache key only: a rewritten shard is indexed again
    members: dict[str, tuple[int, int]] = {}
    try:
        with tarfile.open(tar) as archive:
            for member in archive:
                if member.isfile() and not member.name.endswith(".json"):
                    members[member.name.rsplit(".", 1)[0]] = (member.offset_data, member.size)
    except (OSError, tarfile.TarError) as exc:
        raise InputError(f"unreadable tar shard: {exc}", tar) from None
    return members


def _tar_member(tar: Path, name: str) -> io.BytesIO:
    if not tar.is_file():
        raise InputError("audio tar shard not found", tar)
    stat = tar.stat()
    found = _tar_index(tar, (stat.st_mtime_ns, stat.st_size)).get(name)
    if found is None:
        raise InputError(f"no audio member {name!r} in the tar shard (the cuts and the shard disagree)", tar)
    offset, size = found
    with tar.open("rb") as handle:
        handle.seek(offset)
        data = handle.read(size)
    if len(data) != size:
        raise InputError(f"tar shard is truncated: member {name!r} holds {len(data)} of {size} bytes", tar)
    return io.BytesIO(data)


def _source(path: str | Path) -> str | io.BytesIO:
    member = split_tar_reference(path)
    return _tar_member(*member) if member else str(path)


def audio_info(path: str | Path) -> tuple[int, float]:
    """(sample rate, duration in seconds) from the file header, without decoding the samples.

    A WAV whose data chunk is shorter than its header declares (a cut-off copy or download) is an
    :class:`InputError`: libsndfile silently reads only what is there.
    """
    try:
        info = sf.info(_source(path))
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise InputError(f"unreadable audio: {exc}", path) from None
    if split_tar_reference(path):
        return int(info.samplerate), float(info.frames) / float(info.samplerate)
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
    if split_tar_reference(path) is None and not Path(path).is_file():
        raise InputError("audio file not found", path)
    audio_info(path)  # header checks, e.g. a truncated WAV, which sf.read would silently accept
    try:
        samples, rate = sf.read(_source(path), dtype="float32", always_2d=True)
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

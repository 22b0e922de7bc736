"""Seeded augmentation of synthetic speech: speed perturbation and additive white/pink noise."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import soxr

from speechbraid.synth.base import SynthResult

NOISE_KINDS = ("white", "pink")


def speed_perturb(result: SynthResult, factor: float) -> SynthResult:
    """Play ``factor`` times faster (tempo and pitch, as Kaldi/lhotse speed perturbation does).

    The samples are treated as recorded at ``rate * factor`` and resampled to ``rate``; every word
    time is divided by ``factor``.
    """
    if factor == 1.0:
        return result
    samples = soxr.resample(result.samples, result.sample_rate * factor, result.sample_rate).astype(np.float32)
    duration = len(samples) / result.sample_rate
    words = [replace(w, start=min(w.start / factor, duration), end=min(w.end / factor, duration)) for w in result.words]
    return SynthResult(samples, result.sample_rate, words)


def add_noise(result: SynthResult, snr_db: float, kind: str, rng: np.random.Generator) -> SynthResult:
    """Add white or pink (1/f power) noise at ``snr_db`` relative to the power inside the word spans.

    Speech power is measured over the words only, so the long pauses of a slow voice do not make the
    noise quieter than the stated SNR.
    """
    if kind not in NOISE_KINDS:
        raise ValueError(f"unknown noise kind {kind!r}")
    samples = result.samples
    noise = rng.standard_normal(len(samples))
    if kind == "pink":
        spectrum = np.fft.rfft(noise)
        freqs = np.fft.rfftfreq(len(noise))
        spectrum[1:] /= np.sqrt(freqs[1:])
        spectrum[0] = 0.0
        noise = np.fft.irfft(spectrum, n=len(noise))
    mask = np.zeros(len(samples), dtype=bool)
    for w in result.words:
        mask[int(w.start * result.sample_rate) : int(w.end * result.sample_rate)] = True
    speech = samples[mask] if mask.any() else samples
    speech_power = float(np.mean(speech.astype(np.float64) ** 2))
    noise_power = float(np.mean(noise**2)) or 1.0
    noise *= np.sqrt(speech_power / (noise_power * 10.0 ** (snr_db / 10.0)))
    return SynthResult((samples + noise).astype(np.float32), result.sample_rate, result.words)

"""Log-mel features: shapes and the frame rule, tone placement, resampling, Whisper parity, batching."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformers import WhisperFeatureExtractor

from speechbraid.data.features import (
    FeatureConfig,
    extract_batch,
    log_mel,
    measure_feature_speed,
    pad_features,
    whisper_log_mel,
)
from speechbraid.errors import ConfigError

RATE = 16000


def _tone(freq: float, seconds: float, rate: int = RATE) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (0.5 * np.sin(2 * math.pi * freq * t)).astype(np.float32)


def _noise(seconds: float, rate: int = RATE, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(round(seconds * rate))).astype(np.float32)


@pytest.mark.parametrize("kind", ["fbank", "whisper"])
@pytest.mark.parametrize("num_samples", [400, 1599, 16000, 16079, 16080, 16159, 16160, 23456])
def test_shape_follows_frame_rule(kind: str, num_samples: int) -> None:
    config = FeatureConfig(kind=kind)
    feats = config.extract(_noise(num_samples / RATE), RATE)
    assert isinstance(feats, np.ndarray) and feats.dtype == np.float32
    assert feats.shape == (config.frames_for(num_samples / RATE), 80)
    assert abs(feats.shape[0] - num_samples / 160) <= 1  # one frame per 10 ms


def _hz_to_kaldi_mel(f: float) -> float:
    return 1127.0 * math.log(1.0 + f / 700.0)


def _hz_to_slaney_mel(f: float) -> float:
    # Slaney's scale (Whisper/librosa): linear below 1 kHz, logarithmic above.
    return f / (200.0 / 3) if f < 1000 else 15.0 + math.log(f / 1000.0) / (math.log(6.4) / 27.0)


def _nearest_centre(freq: float, to_mel, low: float, high: float, bins: int = 80) -> int:
    lo, hi = to_mel(low), to_mel(high)
    centres = [lo + (i + 1) * (hi - lo) / (bins + 1) for i in range(bins)]
    return int(np.argmin([abs(c - to_mel(freq)) for c in centres]))


@pytest.mark.parametrize("freq", [300.0, 1000.0, 2500.0, 5000.0])
def test_tone_energy_lands_in_its_mel_bin(freq: float) -> None:
    fbank_peak = int(log_mel(_tone(freq, 0.5), RATE).mean(axis=0).argmax())
    # lhotse's Kaldi defaults: filters between 20 Hz and 8000 - 400 Hz.
    assert fbank_peak == _nearest_centre(freq, _hz_to_kaldi_mel, 20.0, 7600.0)
    whisper_peak = int(whisper_log_mel(_tone(freq, 0.5), RATE).mean(axis=0).argmax())
    assert whisper_peak == _nearest_centre(freq, _hz_to_slaney_mel, 0.0, 8000.0)


@pytest.mark.parametrize("rate", [8000, 44100])
@pytest.mark.parametrize("kind", ["fbank", "whisper"])
def test_other_rates_are_resampled_to_16k(rate: int, kind: str) -> None:
    config = FeatureConfig(kind=kind)
    reference = config.extract(_tone(1000.0, 1.0), RATE)
    feats = config.extract(_tone(1000.0, 1.0, rate), rate)
    assert feats.shape == reference.shape == (100, 80)
    assert feats.mean(axis=0).argmax() == reference.mean(axis=0).argmax()
    # Away from the edges, the spectrum around the tone matches the native 16 kHz one.
    peak = int(reference.mean(axis=0).argmax())
    band = slice(max(peak - 5, 0), peak + 6)
    assert np.abs(feats[5:-5, band] - reference[5:-5, band]).mean() < 0.1


def test_whisper_matches_transformers_extractor() -> None:
    audio = _noise(3.2) + _tone(440.0, 3.2)
    ours = whisper_log_mel(audio, RATE)
    hf = WhisperFeatureExtractor(feature_size=80)
    padded = hf(audio, sampling_rate=RATE, return_tensors="np").input_features[0].T  # Whisper's 30 s default
    assert padded.shape == (3000, 80) and ours.shape == (320, 80)
    np.testing.assert_allclose(ours[:-1], padded[: ours.shape[0] - 1], atol=1e-5)
    # The last window sees reflection here and zeros there: close, not equal.
    assert np.abs(ours[-1] - padded[ours.shape[0] - 1]).max() < 0.25
    ours_padded = whisper_log_mel(audio, RATE, pad_to_30s=True)
    np.testing.assert_allclose(ours_padded, padded, atol=1e-5)
    assert FeatureConfig(kind="whisper", pad_to_30s=True).frames_for(3.2) == 3000


def test_whisper_unpadded_handles_audio_longer_than_30s() -> None:
    audio = _noise(31.0)
    assert whisper_log_mel(audio, RATE).shape == (3100, 80)
    assert whisper_log_mel(audio, RATE, pad_to_30s=True).shape == (3000, 80)


def test_torch_in_torch_out_and_device() -> None:
    audio = _noise(0.5)
    from_numpy = log_mel(audio, RATE)
    tensor = log_mel(torch.from_numpy(audio), RATE)
    assert isinstance(tensor, torch.Tensor) and tensor.device.type == "cpu"
    np.testing.assert_allclose(tensor.numpy(), from_numpy, atol=1e-5)
    as_tensor = whisper_log_mel(audio, RATE, device="cpu")
    assert isinstance(as_tensor, torch.Tensor) and as_tensor.shape == (50, 80)


@pytest.mark.parametrize("kind", ["fbank", "whisper"])
def test_features_stay_fp32_under_bf16_autocast(kind: str) -> None:
    # Regression: decoding and training run under bf16 autocast where the hardware has it; the fbank extractor's
    # matmuls then produced bf16 features (rounded, and numpy cannot hold them: TypeError deep in extraction).
    config, audio = FeatureConfig(kind=kind), _noise(0.7)
    plain = config.extract(audio, RATE)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = config.extract(audio, RATE)
        as_tensor = config.extract(torch.from_numpy(audio), RATE)
    assert under_autocast.dtype == np.float32 and as_tensor.dtype == torch.float32
    np.testing.assert_array_equal(under_autocast, plain)


def test_batch_pads_and_each_item_is_independent() -> None:
    waves = [_noise(1.0, seed=1), 0.01 * _noise(0.5, seed=2)]
    for kind in ("fbank", "whisper"):
        config = FeatureConfig(kind=kind)
        padded, lengths = extract_batch(waves, RATE, config)
        assert padded.shape == (2, 100, 80) and lengths.tolist() == [100, 50]
        single = config.extract(waves[1], RATE)
        np.testing.assert_allclose(padded[1, :50].numpy(), single, atol=1e-5)
        assert torch.all(padded[1, 50:] == 0)
    with pytest.raises(ValueError, match="at least one"):
        pad_features([])


def test_errors() -> None:
    with pytest.raises(ValueError, match="too short"):
        log_mel(np.zeros(399, np.float32), RATE)
    with pytest.raises(ValueError, match="mono"):
        log_mel(np.zeros((2, 16000), np.float32), RATE)
    with pytest.raises(ConfigError, match="fbank' or 'whisper"):
        FeatureConfig(kind="mfcc")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="fixed 25 ms"):
        FeatureConfig(kind="whisper", frame_shift=0.02)
    with pytest.raises(ConfigError, match="whisper features only"):
        FeatureConfig(pad_to_30s=True)


def test_measure_feature_speed_is_faster_than_real_time() -> None:
    for kind in ("fbank", "whisper"):
        assert measure_feature_speed(kind, seconds_of_audio=5) > 1.0

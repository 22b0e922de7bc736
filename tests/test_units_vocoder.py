"""Unit vocoder: unit-to-mel shapes, training and exact resume, Griffin-Lim, streaming vs whole synthesis."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from speechbraid.errors import ConfigError, InputError
from speechbraid.training.runlog import read_train_log
from speechbraid.training.vocoder import make_pair, train_vocoder
from speechbraid.units import vocoder as voc
from speechbraid.units.vocoder import (
    UnitStream,
    UnitToMel,
    UnitVocoder,
    VocoderConfig,
    griffin_lim,
    log_mel,
)

TINY = {"n_units": 12, "d_model": 32, "unit_layers": 3}  # lookahead 7 units


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _chirp(seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(16000 * seconds)) / 16000
    return (0.3 * np.sin(2 * np.pi * (300 + 400 * t) * t)).astype(np.float32)


def _pairs(upsample: int, n: int = 6) -> list:
    """Units that are a function of the audio (frequency bands), so the mapping is learnable."""
    rng = np.random.default_rng(0)
    pairs = []
    for _ in range(n):
        freqs = rng.choice([200, 500, 900, 1500], size=8)
        audio = np.concatenate([0.3 * np.sin(2 * np.pi * f * np.arange(1600) / 16000) for f in freqs])
        units = np.repeat([{200: 1, 500: 4, 900: 7, 1500: 10}[f] for f in freqs], 1600 // (160 * upsample))
        pairs.append(make_pair(units, audio.astype(np.float32), upsample))
    return pairs


@pytest.mark.parametrize("rate,up", [(25.0, 4), (12.5, 8)])
def test_forward_shapes_and_lengths(rate, up):
    config = VocoderConfig(unit_rate_hz=rate, **TINY)
    assert config.upsample == up
    model = UnitToMel(config)
    assert model(torch.randint(12, (3, 9))).shape == (3, 9 * up, 80)
    audio = UnitVocoder(model, gl_iters=4).units_to_audio([1, 2, 3, 4, 5])
    assert audio.dtype == np.float32 and audio.shape == (round(5 / rate * 16000),)
    with pytest.raises(ConfigError):
        VocoderConfig(unit_rate_hz=50)


def test_log_mel_frames_and_griffin_lim_reconstructs_magnitude():
    audio = _chirp()
    mel = log_mel(audio)
    assert mel.shape == (len(audio) // 160, 80)
    rebuilt, phase = griffin_lim(mel, n_iter=32)
    assert rebuilt.shape == (len(audio),) and phase.shape == (513, mel.shape[0])
    loud = mel > mel.max() - 4  # compare where there is energy (GL error dominates in near-silent bins)
    assert (log_mel(rebuilt.numpy()) - mel)[loud].abs().mean() < 0.5
    worse, _ = griffin_lim(mel, n_iter=0)
    assert (log_mel(worse.numpy()) - mel)[loud].abs().mean() > (log_mel(rebuilt.numpy()) - mel)[loud].abs().mean()


def test_training_reduces_loss_and_resumes_exactly(tmp_path, monkeypatch):
    config = VocoderConfig(**TINY)
    pairs = _pairs(config.upsample)
    settings = {"steps": 20, "batch_size": 4, "crop_units": 16, "lr": 1e-2, "save_every": 5, "progress": False}
    straight = train_vocoder(pairs, tmp_path / "a", config, **settings)
    losses = [r["loss"] for r in read_train_log(tmp_path / "a")]
    assert len(losses) == 20 and np.mean(losses[-4:]) < 0.9 * np.mean(losses[:4])

    # Kill the second run during step 13; the re-run resumes from step 10 and ends identical.
    calls = {"n": 0}
    clip = torch.nn.utils.clip_grad_norm_

    def dying_clip(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 13:
            raise KeyboardInterrupt
        return clip(*args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", dying_clip)
    with pytest.raises(KeyboardInterrupt):
        train_vocoder(pairs, tmp_path / "b", config, **settings)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)
    resumed = train_vocoder(pairs, tmp_path / "b", config, **settings)
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    assert [r["step"] for r in read_train_log(tmp_path / "b")] == list(range(1, 21))
    with pytest.raises(ConfigError, match="settings"):
        train_vocoder(pairs, tmp_path / "b", config, **(settings | {"batch_size": 2}))

    loaded = UnitVocoder.load(tmp_path / "a")
    np.testing.assert_array_equal(loaded.units_to_audio([1, 4, 7]), straight.units_to_audio([1, 4, 7]))


def test_streaming_matches_whole_synthesis_and_waits_only_for_the_lookahead():
    torch.manual_seed(0)
    vocoder = UnitVocoder(UnitToMel(VocoderConfig(**TINY)), gl_iters=16)
    units = np.random.default_rng(1).integers(0, 12, 61)
    chunks = [units[i : i + 10] for i in range(0, len(units), 10)]
    whole_mel = vocoder.units_to_mel(units)
    torch.testing.assert_close(torch.cat(list(vocoder.stream_mel(chunks))), whole_mel, atol=1e-5, rtol=0)

    # The first mel leaves as soon as chunk + lookahead units have arrived, not at the end.
    look = vocoder.config.lookahead_units
    fed = []
    feeder = (fed.append(len(c)) or c for c in chunks)
    first = next(vocoder.stream_mel(feeder))
    assert sum(fed) - look == first.shape[0] // vocoder.config.upsample and sum(fed) < len(units)

    whole = vocoder.units_to_audio(units)
    streamed = np.concatenate(list(vocoder.stream_audio(chunks)))
    assert streamed.shape == whole.shape
    # The push API (for callback decoders) gives the same audio; the first push emits all but the
    # lookahead units and the held-back overlap (8 frames).
    stream = UnitStream(vocoder)
    pushed = [stream.push(c) for c in chunks] + [stream.flush()]
    assert pushed[0].size == ((10 - look) * vocoder.config.upsample - 8) * 160
    np.testing.assert_array_equal(np.concatenate(pushed), streamed)
    # Phases differ (Griffin-Lim per chunk) but the spectra agree with the whole-utterance synthesis.
    ref = log_mel(whole)
    loud = ref > ref.max() - 4
    assert (log_mel(streamed) - ref)[loud].abs().mean() < 0.5


def test_streaming_seams_do_not_click():
    """A steady 440 Hz tone spectrum: any phase jump at a chunk seam stands out as a big sample step."""
    model = UnitToMel(VocoderConfig(**TINY))
    t = np.arange(16000) / 16000
    with torch.no_grad():
        model.out[1].weight.zero_()
        model.out[1].bias.copy_(log_mel((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)).mean(0))
    vocoder = UnitVocoder(model, gl_iters=16)
    units = np.random.default_rng(1).integers(0, 12, 61)
    chunks = [units[i : i + 10] for i in range(0, len(units), 10)]

    def seam_jump(overlap_frames: int) -> float:
        pieces = list(vocoder.stream_audio(chunks, overlap_frames=overlap_frames))
        steps = np.abs(np.diff(np.concatenate(pieces)))
        seams = np.cumsum([len(p) for p in pieces])[:-1]
        return float(steps[seams - 1].max() / np.percentile(steps, 99))

    assert seam_jump(8) < 1.5
    assert seam_jump(0) > 3  # without overlap the seams do click: the check can tell


def test_bad_units_are_input_errors():
    vocoder = UnitVocoder(UnitToMel(VocoderConfig(**TINY)), gl_iters=2)
    with pytest.raises(InputError, match=r"\[0, 12\)"):
        vocoder.units_to_audio([1, 12])
    with pytest.raises(InputError, match="non-empty"):
        vocoder.units_to_audio([])
    with pytest.raises(InputError, match="outside"):
        train_vocoder(_pairs(4, 1), "unused", VocoderConfig(n_units=5, d_model=8), steps=1, progress=False)


def test_corrupt_vocoder_directory(tmp_path):
    UnitVocoder(UnitToMel(VocoderConfig(**TINY))).save(tmp_path)
    (tmp_path / voc.MODEL_FILE).write_bytes(b"junk")
    with pytest.raises(InputError, match="weights"):
        UnitVocoder.load(tmp_path)

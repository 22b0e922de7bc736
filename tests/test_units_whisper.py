"""Whisper-layer units on the imported whisper-base: pretrained weights, frame rate, layer choice."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from speechbraid.data.audio import audio_info, load_audio
from speechbraid.errors import ConfigError
from speechbraid.models.registry import resolve_model
from speechbraid.units.tokenizer import FeatureSource, UnitTokenizer, UnitTokenizerConfig

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs Debian espeak-ng")


@pytest.fixture(scope="module")
def wav(tmp_path_factory):
    path = tmp_path_factory.mktemp("whisper_units") / "s.wav"
    subprocess.run(["espeak-ng", "-w", str(path), "The train leaves from platform four."], check=True)
    return path


def test_encoder_has_the_pretrained_weights_and_stops_at_the_layer(home):
    source = FeatureSource(UnitTokenizerConfig(encoder="whisper", layer=3))
    encoder = source.encoder.encoder  # type: ignore[union-attr]
    assert len(encoder.layers) == 3
    pretrained = load_file(str(resolve_model("whisper-base") / "model.safetensors"))
    for name in ("conv1.weight", "layers.2.fc2.weight", "layer_norm.weight"):
        torch.testing.assert_close(encoder.state_dict()[name], pretrained[f"model.encoder.{name}"].float())
    with pytest.raises(ConfigError, match="6 layers"):
        FeatureSource(UnitTokenizerConfig(encoder="whisper", layer=7))


@pytest.mark.parametrize("rate", [25.0, 12.5])
def test_whisper_units_at_the_rate(home, wav, rate):
    source = FeatureSource(UnitTokenizerConfig(encoder="whisper", rate_hz=rate))
    frames = source.frames(*load_audio(wav))
    duration = audio_info(wav)[1]
    assert frames.shape[1] == 512 and abs(frames.shape[0] - duration * rate) <= 1
    # Pooling really averages: 12.5 Hz frames are the means of 25 Hz frame pairs.
    if rate == 12.5:
        fine = FeatureSource(UnitTokenizerConfig(encoder="whisper", rate_hz=25.0)).frames(*load_audio(wav))
        n = fine.shape[0] // 2
        np.testing.assert_allclose(frames[:n], fine[: 2 * n].reshape(n, 2, -1).mean(axis=1), atol=1e-4)
    tokenizer = UnitTokenizer(UnitTokenizerConfig(encoder="whisper", rate_hz=rate, n_units=4, standardize=False),
                              frames[:4].copy())
    tokenizer._source = source
    # Encoding the same audio again reproduces the frames exactly: each is its own nearest centroid.
    assert tokenizer.encode(wav)[:4].tolist() == [0, 1, 2, 3]


def test_whisper_speech_encoder_loads_the_checkpoint_weights(home):
    """Regression: WhisperEncoder.from_pretrained on the imported full checkpoint silently kept random weights."""
    from safetensors.torch import load_file

    from speechbraid.models.encoders import WhisperSpeechEncoder
    from speechbraid.models.registry import resolve_model

    model_dir = resolve_model("whisper-base")
    encoder = WhisperSpeechEncoder(model_dir)
    saved = load_file(str(model_dir / "model.safetensors"))
    for name, tensor in encoder.encoder.state_dict().items():
        assert torch.equal(tensor, saved[f"model.encoder.{name}"].to(tensor.dtype)), name

"""Unit tokenizer: k-means training, frame rate, save/load, dedup, statistics, manifest tokenization."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from speechbraid.data.audio import audio_info, load_audio, write_wav
from speechbraid.data.manifest import read_manifest
from speechbraid.errors import ConfigError, InputError
from speechbraid.units.tokenizer import (
    FeatureSource,
    UnitTokenizer,
    UnitTokenizerConfig,
    dedup_units,
    sample_frames,
    tokenize_manifest,
    train_tokenizer,
    unit_stats,
)

SENTENCES = ["Take aspirin twice daily.", "The bank opened a savings account.",
             "Rest well and drink water.", "Transfer fifty dollars today."]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def speech_manifest(tmp_path_factory) -> Path:
    """Real speech (espeak-ng when present, else tones) plus one text-only and one externally-tokenized record."""
    out = tmp_path_factory.mktemp("units_corpus")
    lines = []
    for i, text in enumerate(SENTENCES):
        wav = out / f"u{i}.wav"
        if shutil.which("espeak-ng"):
            subprocess.run(["espeak-ng", "-w", str(wav), text], check=True)
        else:
            t = np.arange(int(16000 * (1 + 0.3 * i))) / 16000
            write_wav(wav, 0.3 * np.sin(2 * np.pi * (200 + 100 * i) * t), 16000)
        rate, duration = audio_info(wav)
        lines.append({"id": f"u{i}", "text": text, "audio": wav.name, "sample_rate": rate, "duration": duration})
    lines.append({"id": "t0", "text": "text only line"})
    lines.append({"id": "x0", "text": SENTENCES[0], "audio": "u0.wav", "units": [4, 4, 1]})
    (out / "manifest.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return out / "manifest.jsonl"


def _fbank(rate: float = 25.0, n_units: int = 16, **kw) -> UnitTokenizerConfig:
    return UnitTokenizerConfig(encoder="fbank", rate_hz=rate, n_units=n_units, **kw)


@pytest.mark.parametrize("rate", [25.0, 12.5])
def test_kmeans_deterministic_units_in_range_at_the_rate(speech_manifest, rate):
    first = train_tokenizer(speech_manifest, _fbank(rate), progress=False)
    second = train_tokenizer(speech_manifest, _fbank(rate), progress=False)
    np.testing.assert_array_equal(first.centroids.numpy(), second.centroids.numpy())
    other_seed = train_tokenizer(speech_manifest, _fbank(rate, seed=1), progress=False)
    assert not np.array_equal(first.centroids.numpy(), other_seed.centroids.numpy())
    for record in read_manifest(speech_manifest):
        if record.audio is None:
            continue
        units = first.encode(record.audio)
        assert units.dtype == np.int64 and units.min() >= 0 and units.max() < 16
        assert abs(len(units) - audio_info(record.audio)[1] * rate) <= 1
    assert first.stats["units_used"] <= 16 and 1 < first.stats["perplexity"] <= 16
    assert first.stats["train_frames"] > 16


def test_save_load_round_trip(speech_manifest, tmp_path):
    tokenizer = train_tokenizer(speech_manifest, _fbank(), progress=False)
    tokenizer.save(tmp_path / "tok")
    loaded = UnitTokenizer.load(tmp_path / "tok")
    assert loaded.config == tokenizer.config and loaded.stats == tokenizer.stats
    wav = speech_manifest.parent / "u1.wav"
    np.testing.assert_array_equal(loaded.encode(wav), tokenizer.encode(wav))
    (tmp_path / "tok" / "unit_tokenizer.json").write_text("{")
    with pytest.raises(InputError, match="corrupt"):
        UnitTokenizer.load(tmp_path / "tok")


def test_standardisation_keeps_one_loud_dimension_from_deciding_the_units(speech_manifest, monkeypatch):
    """Whisper states have a few huge dimensions; unstandardised k-means clusters on them, not on the speech."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 2000)
    frames = np.stack([rng.normal(0, 1000, 2000),  # loud and uninformative
                       2.0 * labels - 1 + rng.normal(0, 0.05, 2000),  # quiet, two clear classes
                       2.0 * labels - 1 + rng.normal(0, 0.05, 2000)], axis=1).astype(np.float32)
    monkeypatch.setattr("speechbraid.units.tokenizer.sample_frames", lambda *args, **kw: frames)

    def agreement(standardize: bool) -> float:
        tokenizer = train_tokenizer(speech_manifest, _fbank(n_units=2, standardize=standardize), progress=False)
        units = tokenizer.assign(frames)
        return max(np.mean(units == labels), np.mean(units != labels))  # unit ids are an arbitrary permutation

    assert agreement(True) == 1.0
    assert agreement(False) < 0.7


def test_standardised_tokenizer_round_trip_and_old_tokenizers_load_unstandardised(speech_manifest, tmp_path):
    tokenizer = train_tokenizer(speech_manifest, _fbank(), progress=False)
    assert tokenizer.config.standardize and tokenizer.standardizer is not None
    tokenizer.save(tmp_path / "tok")
    loaded = UnitTokenizer.load(tmp_path / "tok")
    torch.testing.assert_close(loaded.standardizer.mean, tokenizer.standardizer.mean)
    wav = speech_manifest.parent / "u3.wav"
    np.testing.assert_array_equal(loaded.encode(wav), tokenizer.encode(wav))
    # A tokenizer saved before the option existed: no key in its config, no mean/scale beside its centroids.
    plain = train_tokenizer(speech_manifest, _fbank(standardize=False), progress=False).save(tmp_path / "old")
    meta = json.loads((plain / "unit_tokenizer.json").read_text())
    del meta["config"]["standardize"]
    (plain / "unit_tokenizer.json").write_text(json.dumps(meta))
    old = UnitTokenizer.load(plain)
    assert not old.config.standardize and old.standardizer is None
    # The config promises standardisation but the tensors are missing: the centroids file is named.
    meta["config"]["standardize"] = True
    (plain / "unit_tokenizer.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match=r"centroids\.safetensors.*mean"):
        UnitTokenizer.load(plain)


def test_dedup_is_off_by_default_and_collapses_runs(speech_manifest):
    assert dedup_units([7, 7, 7, 3, 3, 7]).tolist() == [7, 3, 7]
    assert dedup_units([]).tolist() == []
    tokenizer = train_tokenizer(speech_manifest, _fbank(n_units=4), progress=False)
    wav = speech_manifest.parent / "u2.wav"
    plain, collapsed = tokenizer.encode(wav), tokenizer.encode(wav, dedup=True)
    assert np.any(plain[1:] == plain[:-1])  # 4 units at 25 Hz: runs are certain
    assert collapsed.tolist() == dedup_units(plain).tolist() and np.all(collapsed[1:] != collapsed[:-1])


def test_unit_stats_usage_and_perplexity():
    stats = unit_stats([[0, 1, 2, 3], [0, 1, 2, 3]], 8)
    assert stats == {"tokens": 8, "units_used": 4, "usage": 0.5, "perplexity": 4.0}
    assert unit_stats([[5, 5, 5]], 8)["perplexity"] == 1.0


def test_reservoir_sample_is_a_subset_of_the_frames(speech_manifest):
    source = FeatureSource(_fbank())
    everything = sample_frames(speech_manifest, source, 10**6, seed=0, progress=False)
    sample = sample_frames(speech_manifest, source, 40, seed=0, progress=False)
    assert sample.shape == (40, everything.shape[1])
    rows = {row.tobytes() for row in everything}
    assert all(row.tobytes() in rows for row in sample)
    np.testing.assert_array_equal(sample, sample_frames(speech_manifest, source, 40, seed=0, progress=False))


def test_tokenize_manifest_fills_units_keeps_external_and_resumes(speech_manifest, tmp_path, monkeypatch):
    tokenizer = train_tokenizer(speech_manifest, _fbank(), progress=False)
    full = tmp_path / "full.jsonl"
    stats = tokenize_manifest(speech_manifest, full, tokenizer, progress=False)
    assert (stats["tokenized"], stats["external"], stats["text_only"]) == (4, 1, 1)
    records = {r.id: r for r in read_manifest(full)}
    assert records["x0"].units == [4, 4, 1]  # external units kept
    assert records["t0"].units is None and records["t0"].audio is None
    assert records["u1"].units == tokenizer.encode(speech_manifest.parent / "u1.wav").tolist()
    assert Path(records["u1"].audio).is_file()
    assert not (tmp_path / "full.jsonl.partial").exists()

    # An interrupted run left two finished lines and a torn third one: only the rest is encoded again.
    resumed = tmp_path / "resumed.jsonl"
    done = full.read_text().splitlines(keepends=True)
    (tmp_path / "resumed.jsonl.partial").write_text("".join(done[:2]) + done[2][:15])
    calls = []
    original = tokenizer.encode
    monkeypatch.setattr(tokenizer, "encode", lambda path: calls.append(path) or original(path))
    stats = tokenize_manifest(speech_manifest, resumed, tokenizer, progress=False)
    assert stats["resumed"] == 2 and len(calls) == 2
    assert [r.to_dict() for r in read_manifest(resumed)] == [r.to_dict() for r in read_manifest(full)]

    (tmp_path / "other.jsonl.partial").write_text(json.dumps({"id": "nope", "text": "x"}) + "\n")
    with pytest.raises(InputError, match="another manifest"):
        tokenize_manifest(speech_manifest, tmp_path / "other.jsonl", tokenizer, progress=False)

    missing = tmp_path / "missing.jsonl"
    missing.write_text(json.dumps({"id": "m", "text": "x", "audio": "gone.wav"}) + "\n")
    with pytest.raises(InputError, match=f"{missing}:1: .*gone.wav"):
        tokenize_manifest(missing, tmp_path / "m_out.jsonl", tokenizer, progress=False)


def test_config_errors(speech_manifest):
    with pytest.raises(ConfigError, match="12.5"):
        UnitTokenizerConfig(encoder="conformer", encoder_model="x", rate_hz=25)
    with pytest.raises(ConfigError, match="speech-LLM"):
        UnitTokenizerConfig(encoder="conformer", rate_hz=12.5)
    with pytest.raises(ConfigError, match="25 or 12.5"):
        UnitTokenizerConfig(rate_hz=50)
    with pytest.raises(ConfigError, match="encoder"):
        UnitTokenizerConfig(encoder="hubert")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="fewer units"):
        train_tokenizer(speech_manifest, _fbank(n_units=2000, max_train_frames=5000), progress=False)


def test_conformer_units_come_from_a_saved_speech_llm(speech_manifest, tiny_llm_dir, tmp_path):
    from speechbraid.models.build import ModelConfig, build_speech_llm, save_speech_llm
    from speechbraid.models.encoders import ConformerConfig

    config = ModelConfig(llm=str(tiny_llm_dir), encoder="conformer",
                         conformer=ConformerConfig(d_model=32, n_layers=1, n_heads=2))
    model, hf_tokenizer = build_speech_llm(config)
    save_speech_llm(model, hf_tokenizer, config, tmp_path / "llm")
    source = FeatureSource(UnitTokenizerConfig(encoder="conformer", encoder_model=str(tmp_path / "llm"),
                                               rate_hz=12.5, n_units=4))
    torch.testing.assert_close(source.encoder.state_dict(), model.encoder.state_dict())  # type: ignore[union-attr]
    wav = speech_manifest.parent / "u3.wav"
    frames = source.frames(*load_audio(wav))
    assert frames.shape[1] == 32 and abs(frames.shape[0] - audio_info(wav)[1] * 12.5) <= 1


def test_a_corrupt_speech_llm_config_is_named_not_a_traceback(tmp_path):
    from speechbraid.errors import CheckpointError
    from speechbraid.units.tokenizer import _conformer_encoder

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "speechbraid.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"corrupt speechbraid speech-LLM config") as err:
        _conformer_encoder(str(tmp_path / "model"))
    assert "speechbraid.json" in str(err.value)
    with pytest.raises(CheckpointError, match="not a speechbraid speech-LLM directory"):
        _conformer_encoder(str(tmp_path))

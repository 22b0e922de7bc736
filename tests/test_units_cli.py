"""``speechbraid units``: train -> tokenize -> vocoder-train -> synth end to end, and the user errors."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from speechbraid.cli.main import main
from speechbraid.data.audio import audio_info, write_wav
from speechbraid.data.manifest import read_manifest

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("units_cli")
    lines = []
    for i, text in enumerate(["Good morning to you.", "Please check my balance.", "Take two tablets."]):
        wav = out / f"c{i}.wav"
        if shutil.which("espeak-ng"):
            subprocess.run(["espeak-ng", "-w", str(wav), text], check=True)
        else:
            t = np.arange(16000) / 16000
            write_wav(wav, 0.3 * np.sin(2 * np.pi * (200 + 150 * i) * t), 16000)
        lines.append({"id": f"c{i}", "text": text, "audio": wav.name})
    (out / "manifest.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return out / "manifest.jsonl"


def test_train_tokenize_vocoder_synth(manifest, tmp_path, capsys):
    tok, units_manifest, voc = tmp_path / "tok", tmp_path / "units.jsonl", tmp_path / "voc"
    assert main(["units", "train", "--manifest", str(manifest), "--out", str(tok), "--encoder", "fbank",
                 "--rate", "12.5", "--n-units", "8"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert 1 <= stats["units_used"] <= 8
    assert main(["units", "tokenize", "--model", str(tok), "--manifest", str(manifest),
                 "--out", str(units_manifest)]) == 0
    assert json.loads(capsys.readouterr().out)["tokenized"] == 3
    records = list(read_manifest(units_manifest))
    assert all(r.units and max(r.units) < 8 for r in records)
    assert main(["units", "vocoder-train", "--units-model", str(tok), "--manifest", str(units_manifest),
                 "--out", str(voc), "--steps", "3", "--d-model", "16"]) == 0
    assert (voc / "vocoder.json").is_file() and (voc / "train_log.jsonl").is_file()

    assert main(["units", "synth", "--vocoder", str(voc), "--units", "1 2 2 3 7", "--out", str(tmp_path / "w")]) == 0
    assert audio_info(tmp_path / "w" / "units.wav") == (16000, pytest.approx(5 / 12.5))
    assert main(["units", "synth", "--vocoder", str(voc), "--manifest", str(units_manifest), "--chunk", "4",
                 "--out", str(tmp_path / "m")]) == 0
    for record in records:
        assert audio_info(tmp_path / "m" / f"{record.id}.wav")[1] == pytest.approx(len(record.units) / 12.5)


def test_user_errors(manifest, tmp_path, capsys):
    tok = tmp_path / "tok"
    assert main(["units", "train", "--manifest", str(manifest), "--out", str(tok), "--encoder", "conformer",
                 "--rate", "25"]) == 2
    assert "12.5" in capsys.readouterr().err
    assert main(["units", "tokenize", "--model", str(tmp_path / "none"), "--manifest", str(manifest),
                 "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "not a unit tokenizer directory" in capsys.readouterr().err
    assert main(["units", "tokenize", "--model", str(tok), "--manifest", str(manifest),
                 "--out", str(manifest)]) == 2
    assert "--out must differ" in capsys.readouterr().err

    main(["units", "train", "--manifest", str(manifest), "--out", str(tok), "--encoder", "fbank", "--n-units", "4"])
    main(["units", "vocoder-train", "--units-model", str(tok), "--manifest", str(manifest), "--out",
          str(tmp_path / "voc"), "--steps", "1", "--d-model", "8"])
    capsys.readouterr()
    synth = ["units", "synth", "--vocoder", str(tmp_path / "voc"), "--out", str(tmp_path / "w")]
    assert main(synth + ["--units", "1 two 3"]) == 2
    assert "space-separated integers" in capsys.readouterr().err
    assert main(synth + ["--units", "1 9"]) == 2
    assert "[0, 4)" in capsys.readouterr().err
    assert main(synth + ["--manifest", str(manifest)]) == 2  # records without units: names file and line
    assert f"{manifest}:1:" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "b", "text": "x", "audio": str(manifest.parent / "c0.wav"), "units": [1, 99]})
                   + "\n")
    assert main(["units", "vocoder-train", "--units-model", str(tok), "--manifest", str(bad), "--out",
                 str(tmp_path / "v2"), "--steps", "1"]) == 2
    assert f"{bad}:1:" in capsys.readouterr().err

"""``speechbraid convert`` end to end: format round trips, alignment attach, skip reporting, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from speechbraid.cli.main import main
from speechbraid.data.audio import write_wav
from speechbraid.data.manifest import read_manifest, write_manifest
from speechbraid.data.records import Utterance, WordAlignment


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    audio = tmp_path / "a.wav"
    write_wav(audio, 0.1 * np.random.default_rng(0).standard_normal(16000).astype(np.float32), 16000)
    records = [
        Utterance(id="a", text="Hello there.", audio=str(audio), sample_rate=16000, duration=1.0,
                  words=[WordAlignment("Hello", 0.1, 0.4), WordAlignment("there.", 0.5, 0.9)], domain="chat"),
        Utterance(id="b", text="text only line"),
    ]
    path = tmp_path / "m.jsonl"
    write_manifest(records, path)
    return path


def test_convert_round_trips_through_lhotse_and_nemo(manifest: Path, tmp_path: Path, capsys) -> None:
    cuts, nemo, back = tmp_path / "cuts.jsonl.gz", tmp_path / "nemo.json", tmp_path / "back.jsonl"
    assert main(["convert", str(manifest), str(cuts), "--to", "lhotse", "--skip-unconvertible"]) == 0
    assert "skipped 1 record(s) the target format cannot hold: b" in capsys.readouterr().err
    assert main(["convert", str(cuts), str(nemo), "--from", "lhotse", "--to", "nemo"]) == 0
    assert main(["convert", str(nemo), str(back), "--from", "nemo"]) == 0
    (original, _), (result,) = read_manifest(manifest), read_manifest(back)
    assert (result.id, result.text, result.domain, result.duration) == ("a", "Hello there.", "chat", 1.0)
    assert [(w.word, w.start, w.end) for w in result.words] == [(w.word, w.start, w.end) for w in original.words]


def test_convert_text_only_to_lhotse_fails_with_hint(manifest: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cuts.jsonl"
    assert main(["convert", str(manifest), str(out), "--to", "lhotse"]) == 2
    assert "record 'b' is text-only; a lhotse cut needs a recording" in capsys.readouterr().err
    assert not out.exists()  # no partial output left behind


def test_convert_attaches_ctm_and_reports_mismatched_ids(manifest: Path, tmp_path: Path, capsys) -> None:
    ctm = tmp_path / "w.ctm"
    ctm.write_text("a 1 0.00 0.50 HELLO\na 1 0.50 0.40 THERE\nzzz 1 0.0 0.1 X\n")
    out = tmp_path / "aligned.jsonl"
    assert main(["convert", str(manifest), str(out), "--attach-alignments", "ctm", str(ctm)]) == 0
    err = capsys.readouterr().err
    assert "1 record(s) in the manifest had no alignment (kept unchanged): b" in err
    assert "1 alignment(s) matched no manifest id (not used): zzz" in err
    a, b = read_manifest(out)
    assert [w.word for w in a.words] == ["HELLO", "THERE"] and b.words is None and b.text == "text only line"


def test_convert_textgrid_export_then_attach(manifest: Path, tmp_path: Path) -> None:
    grids = tmp_path / "grids"
    assert main(["convert", str(manifest), str(grids), "--to", "textgrid", "--skip-unconvertible"]) == 0
    assert sorted(p.name for p in grids.iterdir()) == ["a.TextGrid"]
    stripped = tmp_path / "stripped.jsonl"
    write_manifest([Utterance(id=r.id, text=r.text, audio=r.audio) for r in read_manifest(manifest)], stripped)
    out = tmp_path / "out.jsonl"
    assert main(["convert", str(stripped), str(out), "--attach-alignments", "textgrid", str(grids)]) == 0
    a, _ = read_manifest(out)
    expected = [("Hello", 0.1, 0.4), ("there.", 0.5, 0.9)]
    assert [(w.word, round(w.start, 3), round(w.end, 3)) for w in a.words] == expected


def test_convert_errors_name_file_and_line(tmp_path: Path, capsys) -> None:
    ctm = tmp_path / "bad.ctm"
    ctm.write_text("a 1 0.0 0.5 ok\na 1 zero 0.5 bad\n")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"id": "a", "text": "ok"}\n')
    assert main(["convert", str(manifest), str(tmp_path / "o.jsonl"), "--attach-alignments", "ctm", str(ctm)]) == 2
    assert f"{ctm}:2: start must be a number" in capsys.readouterr().err
    assert main(["convert", str(manifest), str(tmp_path / "o.jsonl"), "--attach-alignments", "rttm", "x"]) == 2
    assert "FORMAT must be one of ctm, textgrid" in capsys.readouterr().err

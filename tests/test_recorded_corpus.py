"""`speechbraid corpus real`: recorded speech with transcripts from installed Debian package files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from speechbraid.cli.main import main
from speechbraid.corpora.recorded import RECORDED_SOURCES, build_recorded_corpus, read_transcription
from speechbraid.data.audio import audio_info, load_audio, write_wav
from speechbraid.data.manifest import read_manifest
from speechbraid.data.validate import validate_manifest
from speechbraid.errors import InputError


def _tone(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


@pytest.fixture()
def fake_roots(tmp_path: Path) -> dict[str, Path]:
    """The two packages' file layouts, with tones for speech."""
    ps = tmp_path / "pocketsphinx"
    (ps / "librivox").mkdir(parents=True)
    (ps / "cards").mkdir()
    (ps / "librivox" / "fileids").write_text("book_64kb-0870\n")
    (ps / "librivox" / "transcription").write_text("<s> he was not an ill disposed young man </s> (book_64kb-0870)\n")
    write_wav(ps / "librivox" / "book_64kb-0870.wav", _tone(1.0, 16000), 16000)
    (ps / "cards" / "cards.fileids").write_text("001\n002\n")
    (ps / "cards" / "cards.transcription").write_text("<s> ten of clubs  </s> (001)\nfive five (002)\n")
    for name in ("001", "002"):
        write_wav(ps / "cards" / f"{name}.wav", _tone(0.5, 16000), 16000)
    (ps / "goforward.gram").write_text("#JSGF V1.0;\ngrammar g;\npublic <move> = go forward ten meters;\n"
                                       "public <move2> = go <direction>;\n")
    (np.clip(_tone(0.25, 16000), -1, 1) * 32767).astype("<i2").tofile(ps / "goforward.raw")
    alsa = tmp_path / "alsa"
    alsa.mkdir()
    for name in ("Front_Center", "Noise"):
        write_wav(alsa / f"{name}.wav", _tone(0.6, 48000), 48000)
    return {"pocketsphinx-testdata": ps, "alsa-utils": alsa}


def test_recorded_manifest_from_package_files(fake_roots: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "real"
    records = build_recorded_corpus(out, roots=fake_roots)
    manifest = list(read_manifest(out / "manifest.jsonl"))
    assert [r.id for r in manifest] == [r.id for r in records] == [
        "pocketsphinx-testdata-librivox-0870", "pocketsphinx-testdata-cards-001", "pocketsphinx-testdata-cards-002",
        "pocketsphinx-testdata-goforward", "alsa-utils-front-center",  # Noise.wav is not speech
    ]
    assert [r.text for r in manifest] == [
        "he was not an ill disposed young man", "ten of clubs", "five five",
        "go forward ten meters",  # the grammar's first public rule
        "Front Center",  # the file name
    ]
    for record in manifest:
        package = "alsa-utils" if record.id.startswith("alsa") else "pocketsphinx-testdata"
        assert record.source == f"recorded:{package}"
        assert record.extra["license"] and Path(record.extra["original"]).is_file()
        rate, seconds = audio_info(record.audio)
        assert rate == record.sample_rate == 16000 and seconds == pytest.approx(record.duration, abs=1e-3)
    alsa = manifest[-1]
    assert alsa.duration == pytest.approx(0.6, abs=1e-3) and "GPL-2" in alsa.extra["license"]  # 48 kHz -> 16 kHz
    raw, _ = load_audio(manifest[3].audio)
    assert np.abs(raw - _tone(0.25, 16000)).max() < 1e-3  # headerless PCM read as 16-bit little-endian
    assert validate_manifest(out / "manifest.jsonl").ok


def test_missing_package_is_one_line_naming_it(fake_roots: dict[str, Path], tmp_path: Path, capsys,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    roots = {**fake_roots, "alsa-utils": tmp_path / "absent"}
    with pytest.raises(InputError, match="needs the Debian package alsa-utils: apt-get install alsa-utils"):
        build_recorded_corpus(tmp_path / "o", roots=roots)
    monkeypatch.setitem(RECORDED_SOURCES, "alsa-utils",
                        RECORDED_SOURCES["alsa-utils"].__class__("alsa-utils", tmp_path / "absent",
                                                                 RECORDED_SOURCES["alsa-utils"].read))
    assert main(["corpus", "real", "--out", str(tmp_path / "o"), "--source", "alsa-utils"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "apt-get install alsa-utils" in err


def test_bad_transcription_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "t.transcription"
    path.write_text("<s> ten of clubs </s> (001)\nno id here\n")
    with pytest.raises(InputError, match=r"t\.transcription:2: not a sphinx transcription line"):
        read_transcription(path)


@pytest.mark.skipif(not all(s.root.is_dir() for s in RECORDED_SOURCES.values()),
                    reason="needs the Debian packages pocketsphinx-testdata and alsa-utils (scripts/setup.sh)")
def test_installed_packages_give_nineteen_valid_utterances(tmp_path: Path) -> None:
    records = build_recorded_corpus(tmp_path / "real")
    assert len(records) == 19 and sum(r.duration for r in records) > 45
    assert {r.source for r in records} == {"recorded:pocketsphinx-testdata", "recorded:alsa-utils"}
    assert validate_manifest(tmp_path / "real" / "manifest.jsonl").ok

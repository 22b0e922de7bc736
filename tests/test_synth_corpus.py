"""The corpus runner and ``speechbraid synth``: WAVs + manifest, resume, crash safety, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf

from speechbraid.cli.main import main
from speechbraid.data.manifest import read_manifest
from speechbraid.data.records import Utterance
from speechbraid.errors import ConfigError, InputError
from speechbraid.synth import runner, synthesize_corpus

LINES = [
    "Take [aspirin](drug) twice a day.",
    "",
    "Stop [ibuprofen](drug) now, then call Dr. Smith.",
    "It is in the house.",
]


@pytest.fixture()
def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "meds.txt"
    path.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    return path


def _run(text_file: Path, out: Path, *extra: str) -> int:
    return main(["synth", str(text_file), "--out", str(out), "--quiet", "--seed", "3", *extra])


def test_text_file_to_aligned_wavs_resume_and_reproduce(text_file: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "a"
    assert _run(text_file, out, "--jobs", "1", "--rate", "150", "200", "--speed", "0.9", "1.1") == 0
    summary = capsys.readouterr().out
    assert "utterances: 3 (3 synthesised" in summary and "blank lines skipped: 1 (lines 2)" in summary
    records = list(read_manifest(out / "manifest.jsonl"))
    assert [r.id for r in records] == ["meds-000001", "meds-000003", "meds-000004"]
    for r in records:
        info = sf.info(r.audio)
        assert info.samplerate == 16000 and info.subtype == "PCM_16"
        assert r.duration == pytest.approx(info.frames / 16000, abs=1e-3)
        assert [w.word for w in r.words] == r.text.split()
        assert all(a.end <= b.start for a, b in zip(r.words, r.words[1:], strict=False))
        assert r.words[-1].end <= r.duration
        assert r.source == "synth:espeak" and r.speaker.startswith("espeak:")
        assert r.extra["synth"]["speed"] in (0.9, 1.1)
        assert all(r.text[e.start : e.end] == e.text for e in r.entities)
    assert [e.text for r in records for e in r.entities] == ["aspirin", "ibuprofen"]
    first = (out / "manifest.jsonl").read_bytes()

    assert _run(text_file, out, "--jobs", "1", "--rate", "150", "200", "--speed", "0.9", "1.1") == 0
    assert "(0 synthesised, 3 already done)" in capsys.readouterr().out
    assert (out / "manifest.jsonl").read_bytes() == first

    # a fresh directory, in-process or with two worker processes: the same settings per utterance;
    # espeak keeps state from earlier utterances in the process (see espeak_engine), so times may move
    # by tens of milliseconds
    for name, jobs in (("b", "1"), ("j2", "2")):
        assert _run(text_file, tmp_path / name, "--jobs", jobs, "--rate", "150", "200", "--speed", "0.9", "1.1") == 0
        again = list(read_manifest(tmp_path / name / "manifest.jsonl"))
        for a, b in zip(records, again, strict=True):
            assert (a.id, a.text, a.speaker, a.extra, a.entities) == (b.id, b.text, b.speaker, b.extra, b.entities)
            assert a.duration == pytest.approx(b.duration, abs=0.1)
            for wa, wb in zip(a.words, b.words, strict=True):
                assert wa.word == wb.word and wa.start == pytest.approx(wb.start, abs=0.1)
    # another seed draws other voices
    assert _run(text_file, tmp_path / "c", "--jobs", "1", "--seed", "4") == 0
    assert (tmp_path / "c" / "manifest.jsonl").read_bytes() != first


def test_crash_mid_run_keeps_finished_work_and_rerun_completes(
    text_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    out = tmp_path / "out"
    real_write = runner.write_wav
    calls = []

    def crash_on_second(path, samples, rate):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as if killed while writing the second WAV
        real_write(path, samples, rate)

    monkeypatch.setattr(runner, "write_wav", crash_on_second)
    assert _run(text_file, out, "--jobs", "1") == 130  # the CLI reports the interrupt
    assert sorted(p.name for p in (out / "wavs").iterdir()) == ["meds-000001.wav"]
    assert sorted(p.name for p in (out / "state").iterdir()) == ["meds-000001.json"]
    assert not (out / "manifest.jsonl").exists()

    monkeypatch.setattr(runner, "write_wav", real_write)
    assert _run(text_file, out, "--jobs", "1") == 0
    assert "(2 synthesised, 1 already done)" in capsys.readouterr().out
    assert len(list(read_manifest(out / "manifest.jsonl"))) == 3


def test_bad_input_names_the_record_and_line(tmp_path: Path) -> None:
    manifest = tmp_path / "in.jsonl"
    rows = [{"id": "ok", "text": "Fine."}, {"id": "dots", "text": "... --"}, {"id": "empty", "text": "  "}]
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    from speechbraid.data.manifest import iter_manifest

    with pytest.raises(InputError, match=r"in\.jsonl:3: record 'empty': empty text"):
        synthesize_corpus(iter_manifest(manifest), tmp_path / "o", jobs=1, progress=False)
    rows.pop()
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"in\.jsonl:2: record 'dots': cannot synthesise"):
        synthesize_corpus(iter_manifest(manifest), tmp_path / "o", jobs=1, progress=False)
    with pytest.raises(InputError, match="duplicate record id 'a'"):
        synthesize_corpus([Utterance("a", "One."), Utterance("a", "Two.")], tmp_path / "o", progress=False)
    assert main(["synth", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "o")]) == 2


def test_piper_corpus_is_reproducible(tmp_path: Path) -> None:
    records = [Utterance("p1", "Take aspirin, twice a day.", domain="medical")]
    first = synthesize_corpus(records, tmp_path / "a", "piper", rate_range=(150, 200), progress=False)
    second = synthesize_corpus(records, tmp_path / "b", "piper", rate_range=(150, 200), progress=False)
    assert first[0].words == second[0].words and first[0].duration == second[0].duration
    assert first[0].domain == "medical" and first[0].source == "synth:piper"
    assert [w.word for w in first[0].words] == records[0].text.split()


def test_list_voices(capsys) -> None:
    assert main(["synth", "--list-voices"]) == 0
    voices = capsys.readouterr().out.split()
    assert "en-gb-scotland" in voices and "en-us+f3" in voices


def test_engine_for_routes_records_and_names_unknown_ids(tmp_path: Path) -> None:
    records = [Utterance("e", "Rest well."), Utterance("p", "Rest now.")]
    with pytest.raises(ConfigError, match="not among the records, e.g. 'x'"):
        synthesize_corpus(records, tmp_path / "o", engine_for={"x": "piper"}, progress=False)
    with pytest.raises(ConfigError, match="engine 'piper' has no pitch setting"):
        synthesize_corpus(records, tmp_path / "o", engine_for={"p": "piper"}, pitch_range=(40, 60), progress=False)
    out = synthesize_corpus(records, tmp_path / "o", engine_for={"p": "piper"}, jobs=1, progress=False)
    assert [(r.source, r.speaker.split(":")[0]) for r in out] == [("synth:espeak", "espeak"), ("synth:piper", "piper")]

"""Manifest validation: one test per defect (code, line number, file named), skip policy, report, CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from speechbraid.cli.main import main
from speechbraid.data.audio import write_wav
from speechbraid.data.manifest import iter_manifest
from speechbraid.data.validate import (
    Problem,
    _SeenIds,
    comparison_tokens,
    validate_manifest,
    validate_record,
)
from speechbraid.errors import ConfigError, InputError

WORDS = [
    {"word": "Take", "start": 0.10, "end": 0.30},
    {"word": "aspirin,", "start": 0.35, "end": 0.70},
    {"word": "twice.", "start": 0.75, "end": 0.95},
]
TEXT = "Take aspirin, twice."


def tone(path: Path, seconds: float = 1.0, rate: int = 16000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    write_wav(path, 0.3 * np.sin(2 * np.pi * 440.0 * t), rate)
    return path


def good(utt_id: str = "u1", **changes: Any) -> dict[str, Any]:
    record = {
        "id": utt_id,
        "text": TEXT,
        "audio": "a.wav",
        "sample_rate": 16000,
        "duration": 1.0,
        "words": [dict(w) for w in WORDS],
        "entities": [{"text": "aspirin", "type": "drug", "start": 5, "end": 12}],
    }
    record.update(changes)
    return record


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    tone(tmp_path / "a.wav")
    return tmp_path


def write_lines(path: Path, lines: list[dict[str, Any] | str]) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for line in lines:
            handle.write((line if isinstance(line, str) else json.dumps(line)) + "\n")
    return path


def only_problem(corpus: Path, bad: dict[str, Any] | str, code: str) -> Problem:
    """Write a clean line then ``bad`` on line 2; the bad line must yield exactly one problem, ``code``."""
    manifest = write_lines(corpus / "m.jsonl", [good("ok"), bad])
    report = validate_manifest(manifest)
    assert [p.code for p in report.problems] == [code], report.format()
    problem = report.problems[0]
    assert problem.line == 2
    assert problem.severity == "error"
    assert problem.format().startswith(f"{manifest}:2: ")
    assert report.records_ok == 1 and report.records_bad == 1 and not report.ok
    return problem


def test_clean_manifest_has_no_problems(corpus: Path) -> None:
    manifest = write_lines(corpus / "m.jsonl", [good("a"), good("b"), {"id": "t", "text": "text only"}])
    report = validate_manifest(manifest)
    assert report.ok and report.problems == [] and report.records_ok == 3 and report.records_total == 3


def test_unparseable_line(corpus: Path) -> None:
    problem = only_problem(corpus, "{not json", "invalid_record")
    assert problem.utterance_id is None


def test_missing_required_field(corpus: Path) -> None:
    problem = only_problem(corpus, {"id": "x", "audio": "a.wav"}, "invalid_record")
    assert "missing required field 'text'" in problem.message


def test_missing_audio(corpus: Path) -> None:
    problem = only_problem(corpus, good("x", audio="nowhere.wav"), "missing_audio")
    assert "nowhere.wav" in problem.message and problem.utterance_id == "x"


def test_unreadable_audio(corpus: Path) -> None:
    (corpus / "broken.wav").write_bytes(b"this is not audio" * 8)
    problem = only_problem(corpus, good("x", audio="broken.wav"), "unreadable_audio")
    assert "broken.wav" in problem.message


def test_declared_sample_rate_differs_from_header(corpus: Path) -> None:
    problem = only_problem(corpus, good("x", sample_rate=8000), "sample_rate_mismatch")
    assert "8000" in problem.message and "16000" in problem.message and "a.wav" in problem.message


def test_header_sample_rate_differs_from_expected(corpus: Path) -> None:
    tone(corpus / "b.wav", rate=22050)
    problem = only_problem(corpus, good("x", audio="b.wav", sample_rate=22050), "unexpected_sample_rate")
    assert "22050" in problem.message and "b.wav" in problem.message
    # expected_sample_rate=None accepts any rate
    assert validate_manifest(corpus / "m.jsonl", expected_sample_rate=None).ok


def test_duration_mismatch_and_tolerance(corpus: Path) -> None:
    problem = only_problem(corpus, good("x", duration=1.2), "duration_mismatch")
    assert "1.200" in problem.message and "a.wav" in problem.message
    # within the tolerance is fine
    manifest = write_lines(corpus / "m2.jsonl", [good("x", duration=1.04)])
    assert validate_manifest(manifest).ok
    assert not validate_manifest(manifest, duration_tolerance=0.01).ok


def test_word_ends_after_audio(corpus: Path) -> None:
    words = [dict(w) for w in WORDS]
    words[2].update(start=0.9, end=1.2)
    problem = only_problem(corpus, good("x", words=words), "alignment_out_of_range")
    assert "words[2]" in problem.message and "1.200" in problem.message


def test_word_end_within_tolerance_is_accepted(corpus: Path) -> None:
    words = [dict(w) for w in WORDS]
    words[2].update(start=0.9, end=1.04)
    assert validate_manifest(write_lines(corpus / "m.jsonl", [good("x", words=words)])).ok


def test_word_starts_before_zero(corpus: Path) -> None:
    words = [dict(w) for w in WORDS]
    words[0].update(start=-0.1)
    problem = only_problem(corpus, good("x", words=words), "alignment_out_of_range")
    assert "words[0]" in problem.message


def test_word_start_after_end(corpus: Path) -> None:
    words = [dict(w) for w in WORDS]
    words[1].update(start=0.50, end=0.40)
    problem = only_problem(corpus, good("x", words=words), "word_start_after_end")
    assert "words[1] 'aspirin,'" in problem.message


def test_zero_length_spoken_word(corpus: Path) -> None:
    """Regression: espeak alignments that collapsed to the end of the audio passed validation."""
    words = [dict(w) for w in WORDS]
    words[-1].update(start=words[-1]["end"])
    problem = only_problem(corpus, good("x", words=words), "zero_length_word")
    assert f"words[{len(WORDS) - 1}]" in problem.message


def test_overlapping_words(corpus: Path) -> None:
    words = [dict(w) for w in WORDS]
    words[1].update(start=0.25)  # before words[0] ends at 0.30
    problem = only_problem(corpus, good("x", words=words), "overlapping_words")
    assert "words[1]" in problem.message and "words[0]" in problem.message


def test_touching_words_do_not_overlap(corpus: Path) -> None:
    words = [dict(w) for w in WORDS]
    words[1].update(start=0.30)  # exactly where words[0] ends
    assert validate_manifest(write_lines(corpus / "m.jsonl", [good("x", words=words)])).ok


def test_non_monotonic_words(corpus: Path) -> None:
    words = [dict(w) for w in WORDS]
    words[2].update(start=0.05, end=0.08)
    problem = only_problem(corpus, good("x", words=words), "non_monotonic_words")
    assert "words[2]" in problem.message


def test_alignment_words_differ_from_text(corpus: Path) -> None:
    words = [dict(w) for w in WORDS]
    words[1]["word"] = "ibuprofen"
    problem = only_problem(corpus, good("x", words=words), "alignment_text_mismatch")
    assert "word 1" in problem.message and "'ibuprofen'" in problem.message and "'aspirin'" in problem.message


def test_alignment_missing_last_word(corpus: Path) -> None:
    problem = only_problem(corpus, good("x", words=[dict(w) for w in WORDS[:2]]), "alignment_text_mismatch")
    assert "word 2" in problem.message and "'twice'" in problem.message and "2 words, text has 3" in problem.message


def test_alignment_comparison_ignores_case_and_punctuation(corpus: Path) -> None:
    words = [{"word": w["word"].strip(",.").upper(), "start": w["start"], "end": w["end"]} for w in WORDS]
    assert validate_manifest(write_lines(corpus / "m.jsonl", [good("x", words=words)])).ok
    assert comparison_tokens("Don't — stop, NOW!") == ["dont", "stop", "now"]


def test_entity_text_mismatch(corpus: Path) -> None:
    entity = {"text": "aspirin", "type": "drug", "start": 4, "end": 11}
    problem = only_problem(corpus, good("x", entities=[entity]), "entity_text_mismatch")
    assert "text[4:11] is ' aspiri'" in problem.message


def test_entity_out_of_range(corpus: Path) -> None:
    entity = {"text": "twice.", "type": "x", "start": 14, "end": 40}
    problem = only_problem(corpus, good("x", entities=[entity]), "entity_out_of_range")
    assert "[14, 40)" in problem.message and f"length {len(TEXT)}" in problem.message


def test_overlapping_entities_is_a_warning(corpus: Path) -> None:
    entities = [
        {"text": "aspirin", "type": "drug", "start": 5, "end": 12},
        {"text": "aspirin, twice", "type": "dose", "start": 5, "end": 19},
    ]
    manifest = write_lines(corpus / "m.jsonl", [good("x", entities=entities)])
    report = validate_manifest(manifest)
    assert [(p.code, p.severity, p.line) for p in report.problems] == [("overlapping_entities", "warning", 1)]
    assert report.ok and report.records_ok == 1  # warnings do not make a record bad


def test_empty_text(corpus: Path) -> None:
    problem = only_problem(corpus, {"id": "x", "text": "  \t"}, "empty_text")
    assert problem.utterance_id == "x"


def test_duplicate_id_names_first_line(corpus: Path) -> None:
    problem = only_problem(corpus, good("ok"), "duplicate_id")
    assert "line 1" in problem.message


def test_missing_duration_is_a_warning(corpus: Path) -> None:
    record = good("x")
    del record["duration"]
    report = validate_manifest(write_lines(corpus / "m.jsonl", [record]))
    assert [(p.code, p.severity) for p in report.problems] == [("missing_duration", "warning")]
    assert report.ok


def test_no_audio_check_trusts_declared_values(corpus: Path) -> None:
    manifest = write_lines(corpus / "m.jsonl", [good("x", audio="nowhere.wav"), good("y", sample_rate=8000)])
    report = validate_manifest(manifest, check_audio=False)
    assert [(p.code, p.line) for p in report.problems] == [("unexpected_sample_rate", 2)]


def test_validate_record_directly(corpus: Path) -> None:
    manifest = write_lines(corpus / "m.jsonl", [good("x", duration=3.0)])
    (item,) = list(iter_manifest(manifest))
    assert [p.code for p in validate_record(item)] == ["duration_mismatch"]
    assert validate_record(item, check_audio=False) == []


def test_skip_policy_writes_exactly_the_clean_records(corpus: Path) -> None:
    lines: list[dict[str, Any] | str] = [
        good("a"),
        good("b", audio="nowhere.wav"),
        "{broken",
        good("c", words=[dict(w) for w in WORDS[:2]]),
        {"id": "t", "text": "text only", "extra_field": 7},
        good("a"),
        good("d"),
    ]
    manifest = write_lines(corpus / "m.jsonl", lines)
    out = corpus / "clean" / "clean.jsonl"
    rejects = corpus / "rejects.jsonl"
    report = validate_manifest(manifest, policy="skip", output=out, rejects=rejects)
    kept = [item.record for item in iter_manifest(out)]
    assert [r.id for r in kept] == ["a", "t", "d"]
    assert report.records_written == 3 and report.records_ok == 3 and report.records_bad == 4
    # the kept records survive unchanged (audio re-pointed relative to the new manifest's directory)
    assert Path(kept[0].audio).resolve() == (corpus / "a.wav").resolve()
    assert kept[1].extra == {"extra_field": 7}
    assert kept[0].words is not None and len(kept[0].words) == 3 and kept[0].entities[0].text == "aspirin"
    # every skipped line is reported with its reasons
    skipped = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [(s["line"], [p["code"] for p in s["problems"]]) for s in skipped] == [
        (2, ["missing_audio"]),
        (3, ["invalid_record"]),
        (4, ["alignment_text_mismatch"]),
        (6, ["duplicate_id"]),
    ]
    assert "skipped" in report.format()


def test_problem_list_is_capped_but_counts_are_complete(corpus: Path) -> None:
    manifest = write_lines(corpus / "m.jsonl", [good(f"u{i}", duration=2.0) for i in range(7)])
    report = validate_manifest(manifest, max_problems=2)
    assert len(report.problems) == 2 and report.problem_total == 7 and report.counts["duration_mismatch"] == 7
    assert "5 more problems not listed" in report.format()
    assert len(validate_manifest(manifest, max_problems=None).problems) == 7


def test_output_needs_skip_policy_and_manifest_must_exist(corpus: Path) -> None:
    manifest = write_lines(corpus / "m.jsonl", [good()])
    with pytest.raises(ConfigError):
        validate_manifest(manifest, output=corpus / "out.jsonl")
    with pytest.raises(InputError, match="missing.jsonl"):
        validate_manifest(corpus / "missing.jsonl")


def test_cli_fail_policy_report_and_exit_code(corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = write_lines(corpus / "m.jsonl", [good("a"), good("b", duration=5.0)])
    assert main(["validate", str(manifest)]) == 1
    out = capsys.readouterr().out
    assert f"{manifest}:2: [b] duration_mismatch: " in out
    assert "FAILED" in out
    assert main(["validate", str(manifest), "--json", "--max-report", "0"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["counts"] == {"duration_mismatch": 1} and data["problems"] == [] and data["problems_not_listed"] == 1


def test_cli_skip_policy(corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = write_lines(corpus / "m.jsonl", [good("a"), good("b", duration=5.0)])
    out = corpus / "clean.jsonl"
    assert main(["validate", str(manifest), "--policy", "skip", "--output", str(out)]) == 0
    assert [item.record.id for item in iter_manifest(out)] == ["a"]
    assert "1 skipped" in capsys.readouterr().out


def test_id_table_finds_duplicates_across_merges() -> None:
    seen = _SeenIds(batch=3)  # merges into the sorted arrays every 3 new ids
    ids = [f"utt{i}" for i in range(10)]
    assert [seen.first_line(utt, line) for line, utt in enumerate(ids, start=1)] == list(range(1, 11))
    assert seen.first_line("utt0", 11) == 1  # merged long ago
    assert seen.first_line("utt9", 12) == 10  # still in the recent buffer
    assert seen.first_line("new", 13) == 13

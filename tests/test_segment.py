"""Segmenter on hand-made alignments: gap edge cases, punctuation, length limits, stats, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from speechbraid.cli.main import main
from speechbraid.data.records import WordAlignment
from speechbraid.data.segment import Segment, ends_clause, segment_length_stats, segment_words
from speechbraid.errors import ConfigError


def words_at(spec: list[tuple[str, float, float]]) -> list[WordAlignment]:
    return [WordAlignment(w, s, e) for w, s, e in spec]


def texts(segments: list[Segment]) -> list[str]:
    return [s.text for s in segments]


# "Take aspirin, twice a day. Then rest." with a 0.3 s pause after "day." only
SENTENCE = words_at([
    ("Take", 0.00, 0.20), ("aspirin,", 0.25, 0.60), ("twice", 0.65, 0.90), ("a", 0.95, 1.00),
    ("day.", 1.05, 1.30), ("Then", 1.60, 1.80), ("rest.", 1.85, 2.10),
])


def test_empty_alignment_gives_no_segments() -> None:
    assert segment_words([]) == []
    assert segment_words([], by="silence+punct") == []


def test_single_word() -> None:
    (seg,) = segment_words(words_at([("Hello.", 0.5, 0.9)]), by="silence+punct")
    assert (seg.text, seg.start, seg.end, len(seg.words)) == ("Hello.", 0.5, 0.9, 1)


def test_silence_breaks_only_at_long_gaps() -> None:
    segments = segment_words(SENTENCE, gap=0.2)
    assert texts(segments) == ["Take aspirin, twice a day.", "Then rest."]
    assert (segments[0].start, segments[0].end) == (0.00, 1.30)
    assert (segments[1].start, segments[1].end) == (1.60, 2.10)
    assert segments[0].words == tuple(SENTENCE[:5])


def test_gap_exactly_at_threshold_breaks_and_just_below_does_not() -> None:
    # 0.5 - 0.3 is 0.19999999999999998 in floating point: still "a gap of 0.2"
    at = words_at([("a", 0.0, 0.3), ("b", 0.5, 0.6)])
    assert texts(segment_words(at, gap=0.2)) == ["a", "b"]
    below = words_at([("a", 0.0, 0.3), ("b", 0.4999, 0.6)])
    assert texts(segment_words(below, gap=0.2)) == ["a b"]


def test_zero_gap_breaks_between_every_pair_and_overlaps_never_break() -> None:
    touching = words_at([("a", 0.0, 0.3), ("b", 0.3, 0.6), ("c", 0.55, 0.8)])
    assert texts(segment_words(touching, gap=0.0)) == ["a", "b c"]  # b/c overlap: negative gap


def test_silence_plus_punct_also_breaks_after_clause_punctuation() -> None:
    segments = segment_words(SENTENCE, by="silence+punct", gap=0.2)
    assert texts(segments) == ["Take aspirin,", "twice a day.", "Then rest."]


def test_punctuation_followed_by_closing_quote() -> None:
    spec = words_at([("He", 0.0, 0.1), ('said "stop."', 0.15, 0.5), ("Then", 0.55, 0.7), ("(left)", 0.75, 1.0)])
    assert texts(segment_words(spec, by="silence+punct")) == ['He said "stop."', "Then (left)"]
    assert ends_clause("well;") and ends_clause("why?)") and not ends_clause("e.g") and not ends_clause('"')


def test_max_duration_splits_at_largest_internal_gap() -> None:
    # all gaps below the 0.2 s threshold; the largest (0.15 s) is after "c"
    spec = words_at([
        ("a", 0.0, 1.0), ("b", 1.05, 2.0), ("c", 2.1, 3.0), ("d", 3.15, 4.0), ("e", 4.05, 5.0),
    ])
    assert texts(segment_words(spec, gap=0.2, max_duration=None)) == ["a b c d e"]
    segments = segment_words(spec, gap=0.2, max_duration=3.5)
    assert texts(segments) == ["a b c", "d e"]
    assert all(s.duration <= 3.5 for s in segments)


def test_max_duration_recurses_and_keeps_time_order() -> None:
    spec = words_at([(f"w{i}", i * 1.0, i * 1.0 + 0.9) for i in range(8)])  # equal 0.1 s gaps
    segments = segment_words(spec, gap=0.2, max_duration=2.0)
    assert all(s.duration <= 2.0 for s in segments)
    assert [w for s in segments for w in s.words] == spec  # nothing lost, nothing reordered
    # equal gaps: the cut goes nearest the middle, so parts are balanced (2 words each)
    assert [len(s.words) for s in segments] == [2, 2, 2, 2]


def test_single_word_longer_than_max_duration_stays_whole() -> None:
    spec = words_at([("looong", 0.0, 12.0), ("x", 12.5, 12.8)])
    assert texts(segment_words(spec, max_duration=10.0)) == ["looong", "x"]


def test_max_words() -> None:
    spec = words_at([(f"w{i}", i * 0.3, i * 0.3 + 0.25) for i in range(8)])
    segments = segment_words(spec, max_words=2)
    # equal gaps: each cut goes nearest the middle, so the parts stay balanced
    assert [len(s.words) for s in segments] == [2, 2, 2, 2]
    assert [len(s.words) for s in segment_words(spec[:6], max_words=3)] == [3, 3]
    assert [w for s in segments for w in s.words] == spec


def test_rejects_bad_options_and_unordered_words() -> None:
    with pytest.raises(ConfigError):
        segment_words(SENTENCE, by="words")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        segment_words(SENTENCE, gap=-1)
    with pytest.raises(ConfigError):
        segment_words(SENTENCE, max_words=0)
    with pytest.raises(ValueError, match=r"words\[1\]"):
        segment_words(words_at([("b", 1.0, 1.2), ("a", 0.0, 0.2)]))


def test_length_stats() -> None:
    per_utt = [segment_words(SENTENCE, by=mode) for mode in ("silence", "silence+punct")]
    stats = segment_length_stats(per_utt)
    assert stats["utterances"] == 2 and stats["count"] == 5 and stats["segments_per_utterance"] == 2.5
    words = stats["words"]
    # lengths in words: [5, 2] and [2, 3, 2]
    assert words["mean"] == pytest.approx(14 / 5)
    assert words["std"] == pytest.approx(float((sum((x - 2.8) ** 2 for x in [5, 2, 2, 3, 2]) / 5) ** 0.5))
    assert words["cv"] == pytest.approx(words["std"] / words["mean"])
    assert words["p50"] == 2.0 and words["min"] == 2.0 and words["max"] == 5.0
    assert sum(words["histogram"]["counts"]) == 5 and words["histogram"]["counts"][1] == 3  # bin [2, 3)
    assert stats["seconds"]["max"] == pytest.approx(1.30)
    empty = segment_length_stats([])
    assert empty["count"] == 0 and empty["words"]["mean"] is None


def test_punctuation_gives_more_balanced_lengths() -> None:
    """The METHODS claim on a toy case: clause breaks cut one long run into similar-sized pieces."""
    spec = words_at([
        ("one", 0.0, 0.2), ("two,", 0.25, 0.4), ("three", 0.45, 0.6), ("four.", 0.65, 0.8),
        ("five", 1.2, 1.4),
    ])
    cv = {mode: segment_length_stats([segment_words(spec, by=mode)])["words"]["cv"]
          for mode in ("silence", "silence+punct")}
    assert cv["silence+punct"] < cv["silence"]


def test_cli_segment(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    aligned = {"id": "u1", "text": "Take aspirin, twice a day. Then rest.",
               "words": [w.to_dict() for w in SENTENCE]}
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join([
        json.dumps(aligned),
        json.dumps({"id": "u2", "text": "no alignment here"}),
        json.dumps({"id": "u3", "text": "b a", "words": [{"word": "b", "start": 1, "end": 2},
                                                        {"word": "a", "start": 0, "end": 1}]}),
    ]) + "\n")
    assert main(["segment", str(manifest), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["modes"]["silence"]["count"] == 2 and result["modes"]["silence+punct"]["count"] == 3
    assert result["not_segmented"]["no_alignment"] == {"count": 1, "first": f"{manifest}:2"}
    assert result["not_segmented"]["bad_alignment"]["first"].startswith(f"{manifest}:3: ")

    out = tmp_path / "seg.jsonl"
    assert main(["segment", str(manifest), "--by", "silence+punct", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "by silence+punct: 3 segments" in printed and f"{manifest}:2" in printed
    (line,) = [json.loads(x) for x in out.read_text().splitlines()]
    assert line["id"] == "u1" and [s["text"] for s in line["segments"]] == [
        "Take aspirin,", "twice a day.", "Then rest."]

    assert main(["segment", str(manifest), "--output", str(out)]) == 2  # both modes cannot share one file

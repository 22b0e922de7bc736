import json

import pytest

from speechbraid.data import (
    EntitySpan,
    Utterance,
    WordAlignment,
    iter_manifest,
    read_manifest,
    write_manifest,
)
from speechbraid.data.markup import parse_markup, to_markup
from speechbraid.errors import InputError, ManifestError


def _utt(i: int, audio: str | None = "wavs/a.wav") -> Utterance:
    text, entities = parse_markup(f"Take [aspirin](drug) {i} times.")
    return Utterance(
        id=f"u{i}", text=text, audio=audio, sample_rate=16000 if audio else None, duration=1.5 if audio else None,
        words=[WordAlignment("Take", 0.1, 0.3), WordAlignment("aspirin", 0.35, 0.8)], entities=entities,
        domain="medical", speaker="en-us+m1", source="synth:espeak", extra={"custom": {"k": 1}},
    )


def test_markup_round_trip_and_offsets():
    text, entities = parse_markup("Pay [Visa Gold](card_name) on [May first](date). (not markup)")
    assert text == "Pay Visa Gold on May first. (not markup)"
    assert [(e.text, e.type) for e in entities] == [("Visa Gold", "card_name"), ("May first", "date")]
    assert all(text[e.start : e.end] == e.text for e in entities)
    assert to_markup(text, entities) == "Pay [Visa Gold](card_name) on [May first](date). (not markup)"


@pytest.mark.parametrize("line, column", [("Take [aspirin(drug) daily.", 6), ("Say [x]() now.", 5),
                                          ("Pay [Visa](card) and [more", 22), ("a ] b", 3)])
def test_broken_markup_is_an_error_naming_the_column(line, column):
    # regression: broken markup used to be kept (and spoken) as literal text, losing the entity silently
    with pytest.raises(ValueError, match=rf"broken entity markup at column {column}\b"):
        parse_markup(line)


def test_manifest_round_trip_keeps_every_field(tmp_path):
    records = [_utt(1), _utt(2, audio=None)]
    records[0].audio = str(tmp_path / "wavs" / "a.wav")
    path = tmp_path / "m.jsonl"
    assert write_manifest(records, path) == 2
    stored = [json.loads(line) for line in path.read_text().splitlines()]
    assert stored[0]["audio"] == "wavs/a.wav"  # stored relative to the manifest
    back = list(read_manifest(path))
    assert back[0].audio == str(tmp_path / "wavs" / "a.wav")  # resolved on read
    assert back[0].words == records[0].words and back[0].entities == records[0].entities
    assert back[0].extra == {"custom": {"k": 1}}
    assert back[1].is_text_only and back[1].words == records[1].words


def test_manifest_errors_name_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"id": "a", "text": "x"})
    path.write_text("\n".join([good, "{not json", json.dumps({"text": "no id"}),
                               json.dumps({"id": "b", "text": "t", "words": [{"word": "t", "start": 0.1}]})]))
    with pytest.raises(ManifestError, match=r"bad.jsonl:2: invalid record"):
        list(iter_manifest(path))
    errors: list[ManifestError] = []
    ok = list(iter_manifest(path, errors=errors))
    assert [item.line for item in ok] == [1]
    assert [e.line for e in errors] == [2, 3, 4]
    assert "missing required field 'id'" in str(errors[1])
    assert "words[0]: missing required field 'end'" in str(errors[2])
    with pytest.raises(InputError, match="manifest not found"):
        list(iter_manifest(tmp_path / "missing.jsonl"))


def test_entity_field_types_are_checked():
    with pytest.raises(ValueError, match=r"entities\[0\]: field 'start' must be int"):
        Utterance.from_dict({"id": "a", "text": "x", "entities": [{"text": "x", "type": "d", "start": "0", "end": 1}]})
    assert Utterance.from_dict({"id": "a", "text": "x", "entities": [EntitySpan("x", "d", 0, 1).to_dict()]}).entities


def test_audio_outside_the_manifest_dir_is_stored_absolute(tmp_path, monkeypatch):
    """Regression: a cwd-relative audio path outside the manifest's folder was written as is and broke."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "audio").mkdir()
    record = Utterance(id="a", text="x", audio="audio/a.wav", sample_rate=16000, duration=1.0)
    path = tmp_path / "out" / "m.jsonl"
    write_manifest([record], path)
    stored = json.loads(path.read_text())["audio"]
    assert stored == str(tmp_path / "audio" / "a.wav")
    assert next(read_manifest(path)).audio == str(tmp_path / "audio" / "a.wav")

"""Default corpora: cleaning rules, entity spans, held-out entities, determinism, the tiny build."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from speechbraid.cli.main import main
from speechbraid.corpora import CorpusSummary, build_default_corpus, check_held_out, find_leaks, piper_ids
from speechbraid.corpora.banking import BANKING_FRAMES, banking_fillers, brand_stems, institution_stems
from speechbraid.corpora.clean import clean_sentence, dedupe, split_sentences
from speechbraid.corpora.medical import MEDICAL_FRAMES, drug_names, medical_fillers
from speechbraid.corpora.splits import HELD_OUT_TYPES
from speechbraid.corpora.templates import fill
from speechbraid.data.manifest import read_manifest
from speechbraid.data.validate import validate_manifest


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("the pilot reported two kills during the mission", "The pilot reported two kills during the mission."),
        ("He paid 25% of the 300 dollars -- all of it.",
         "He paid twenty-five percent of the three hundred dollars, all of it."),
        ('"Well," she said, "I don\'t know."', "Well, she said, I don't know."),
        ("Is it raining outside right now?", "Is it raining outside right now?"),
        ("See http://example.com for the details now.", None),
        ("NASA launched the rocket yesterday morning.", None),
        ("I met Mr. Smith at the bank today.", None),
        ("In 1990 we went away to Paris.", None),
        ("It is the 3rd time I said this.", None),
        ("It cost $5 to get in there.", None),
        ("Caf\u00e9 owners love the morning rush.", None),
        ("Use <b>bold</b> text for the headings.", None),
        ("Too short.", None),
        (" ".join(["word"] * 26), None),
    ],
)
def test_clean_sentence_rules(raw: str, expected: str | None) -> None:
    assert clean_sentence(raw) == expected


def test_split_sentences_removes_attribution_and_keeps_abbreviations_whole() -> None:
    text = "I met Mr. Smith at the bank. How are you today? Fine!\n  -- Mark Twain"
    assert split_sentences(text) == ["I met Mr. Smith at the bank.", "How are you today?", "Fine!"]


def test_dedupe_ignores_case_and_punctuation() -> None:
    assert list(dedupe(["The cat sat down.", "the cat sat down!", "A dog ran off."])) == [
        "The cat sat down.", "A dog ran off."]


def test_generated_entity_spans_match_text() -> None:
    rng = random.Random(0)
    med = medical_fillers(drug_names()[:50])
    bank = banking_fillers(institution_stems()[:10], brand_stems()[:10])
    types = set()
    for frames, fillers in ((MEDICAL_FRAMES, med), (BANKING_FRAMES, bank)):
        for frame in frames:
            filled = fill(frame, fillers, rng)
            assert filled.text[0].isupper() and filled.text[-1] in ".?!"
            assert not any(ch.isdigit() for ch in filled.text)
            for e in filled.entities:
                assert filled.text[e.start : e.end] == e.text
                types.add(e.type)
    assert {"drug", "dosage", "condition", "institution", "product", "card_name", "amount", "date",
            "account_type"} <= types


def test_find_leaks_matches_whole_words_case_insensitively() -> None:
    texts = [("a:1", "Take Aspirin daily."), ("a:2", "aspirinate is not it."), ("a:3", "nothing here")]
    leaks = find_leaks(["aspirin"], texts)
    assert [(leak.entity, leak.where) for leak in leaks] == [("Aspirin", "a:1")]


@pytest.fixture(scope="module")
def tiny_text(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny")
    build_default_corpus(out, size="tiny", seed=3, synth=False, progress=False)
    return out


def test_tiny_build_holds_out_dev_and_test_entities(tiny_text: Path) -> None:
    assert check_held_out(tiny_text) == []
    test = list(read_manifest(tiny_text / "text" / "test.jsonl"))
    assert {r.domain for r in test} == {"general", "medical", "banking"}
    assert any(e.type == "drug" for r in test for e in r.entities)
    for name in ("train", "dev", "test", "domain"):
        for record in read_manifest(tiny_text / "text" / f"{name}.jsonl"):
            assert record.audio is None
            for e in record.entities:
                assert record.text[e.start : e.end] == e.text
    # The domain text carries names of the test pool (the adaptation vocabulary the speech pairs lack);
    # check_held_out above already showed it holds no dev entity.
    def names(split: str) -> set[str]:
        return {e.text for r in read_manifest(tiny_text / "text" / f"{split}.jsonl") for e in r.entities
                if e.type in HELD_OUT_TYPES}

    assert names("domain") - names("train")
    # The check really looks: a test drug planted in the speech transcripts or the LM text, or a dev drug
    # planted in the domain text, is reported.
    drug = next(e.text for r in test for e in r.entities if e.type == "drug")
    dev_drug = next(e.text for r in read_manifest(tiny_text / "text" / "dev.jsonl") for e in r.entities
                    if e.type == "drug")
    for file, name in (("train.txt", drug), ("general_lm.txt", drug), ("domain.txt", dev_drug)):
        planted = tiny_text.parent / f"planted-{file}"
        (planted / "text").mkdir(parents=True)
        for path in (tiny_text / "text").iterdir():
            (planted / "text" / path.name).write_text(path.read_text())
        with (planted / "text" / file).open("a") as handle:
            handle.write(f"Take {name} twice daily.\n")
        assert [leak.entity for leak in check_held_out(planted)] == [name]


def test_general_lm_text_disjoint_from_speech_sentences(tiny_text: Path) -> None:
    lm = set((tiny_text / "text" / "general_lm.txt").read_text().splitlines())
    speech = {line for s in ("train", "dev", "test")
              for line in (tiny_text / "text" / f"{s}.txt").read_text().splitlines()}
    domain = set((tiny_text / "text" / "domain.txt").read_text().splitlines())
    assert len(lm) == 200 and not lm & speech and not domain & speech


def test_same_seed_same_files_other_seed_differs(tiny_text: Path, tmp_path: Path) -> None:
    build_default_corpus(tmp_path / "a", size="tiny", seed=3, synth=False, progress=False)
    build_default_corpus(tmp_path / "b", size="tiny", seed=4, synth=False, progress=False)
    for name in ("train.jsonl", "test.jsonl", "domain.jsonl", "general_lm.txt"):
        assert (tmp_path / "a" / "text" / name).read_bytes() == (tiny_text / "text" / name).read_bytes()
    assert (tmp_path / "b" / "text" / "test.jsonl").read_bytes() != (tiny_text / "text" / "test.jsonl").read_bytes()


def test_rebuild_with_other_parameters_is_refused(tiny_text: Path) -> None:
    from speechbraid.corpora.build import CORPUS_FORMAT
    from speechbraid.errors import ConfigError

    with pytest.raises(ConfigError, match="size=tiny seed=3"):
        build_default_corpus(tiny_text, size="tiny", seed=9, synth=False, progress=False)
    # a corpus written by an older format (no "format" in its marker) is refused too, not silently reused
    old = tiny_text.parent / "old-format"
    (old / "text").mkdir(parents=True)
    (old / "text" / "done.json").write_text('{"size": "tiny", "seed": 3}\n')
    with pytest.raises(ConfigError, match=f"older format .format=1; this version builds format={CORPUS_FORMAT}"):
        build_default_corpus(old, size="tiny", seed=3, synth=False, progress=False)
    # another Piper share would add speech of a second mix to finished splits: refused as well
    with pytest.raises(ConfigError, match="piper_share=0.25; .* piper_share=0.5"):
        build_default_corpus(tiny_text, size="tiny", seed=3, synth=False, piper_share=0.5, progress=False)
    with pytest.raises(ConfigError, match="between 0 and 1"):
        build_default_corpus(tiny_text, size="tiny", seed=3, synth=False, piper_share=1.5, progress=False)


def test_piper_ids_take_a_seeded_share_of_each_domain() -> None:
    from speechbraid.data.records import Utterance

    records = [Utterance(f"{d}-{i}", "x", domain=d) for d in ("a", "b") for i in range(10)] + [Utterance("c-0", "x")]
    chosen = piper_ids(records, 0.25, seed=1)
    assert sorted(c[0] for c in chosen) == ["a", "a", "a", "b", "b", "b"]  # 2.5 rounds up to 3; 0.25 down to 0
    assert chosen == piper_ids(records, 0.25, seed=1) and chosen != piper_ids(records, 0.25, seed=2)
    assert piper_ids(records, 0.0, seed=1) == [] and len(piper_ids(records, 1.0, seed=1)) == len(records)


def test_tiny_build_end_to_end_with_synthesis_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("speechbraid.synth.runner")
    out = tmp_path / "corpus"
    assert main(["corpus", "build", "--out", str(out), "--size", "tiny", "--jobs", "1"]) == 0
    summary = CorpusSummary.load(out / "summary.json")
    speech = {(r.corpus, r.domain): r for r in summary.rows if r.corpus.startswith("speech:")}
    assert speech[("speech:test", "medical")].sentences == 3
    assert all(r.audio_hours and r.audio_hours > 0 for r in speech.values())
    records = list(read_manifest(out / "speech" / "train" / "manifest.jsonl"))
    assert len(records) == 3 * (8 + 2) and all(Path(r.audio).is_file() and r.words for r in records)
    # a quarter of each domain is spoken by Piper, the rest by espeak-ng; speaker and source name the engine
    piper = [r for r in records if r.source == "synth:piper"]
    assert len(piper) == 3 * 3 and {r.domain for r in piper} == {"general", "medical", "banking"}
    assert all(r.speaker.startswith("piper:en_US-joe-medium") for r in piper)
    assert all(r.source == "synth:espeak" and r.speaker.startswith("espeak:") for r in records if r not in piper)
    assert {r.id for r in piper} == set(piper_ids(list(read_manifest(out / "text" / "train.jsonl")), 0.25, seed=0))
    for split in ("train", "dev", "test"):
        assert validate_manifest(out / "speech" / split / "manifest.jsonl").ok  # Piper word times included
    assert speech[("speech:train", "banking")].voices == {"espeak": 7, "piper": 3}
    assert check_held_out(out) == []
    capsys.readouterr()
    assert main(["corpus", "stats", str(out)]) == 0
    assert "speech:dev" in capsys.readouterr().out


def test_more_training_speech_never_changes_dev_test_or_the_text_corpora(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from speechbraid.corpora import build

    def corpora(more: int) -> dict:
        monkeypatch.setitem(build.SIZES, "tiny", replace(build.SIZES["tiny"], more_train=more))
        return build.make_text_corpora(size="tiny", seed=5)

    few, many = corpora(0), corpora(6)
    for name in ("dev", "test", "domain", "general_lm"):
        assert [(r.id, r.text) for r in few[name]] == [(r.id, r.text) for r in many[name]], name
    first = {(r.id, r.text) for r in few["train"]}
    assert first <= {(r.id, r.text) for r in many["train"]}
    added = [r for r in many["train"] if (r.id, r.text) not in first]
    assert sorted(r.domain for r in added) == sorted(["general", "medical", "banking"] * 6)
    assert len({r.text for r in many["train"]}) == len(many["train"])  # no sentence twice
    def names(records: list) -> set[str]:
        return {e.text.lower() for r in records for e in r.entities if e.type in HELD_OUT_TYPES}

    assert names(added) and not names(added) & names(many["dev"] + many["test"])  # training entities only

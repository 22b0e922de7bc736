"""WER/TER against jiwer, the EER definition on hand-worked examples, hypothesis files and ``speechbraid score``."""

from __future__ import annotations

import json
import random

import jiwer
import pytest

from speechbraid.cli.main import main
from speechbraid.data.manifest import write_manifest
from speechbraid.data.markup import parse_markup
from speechbraid.data.records import Utterance, voice_family
from speechbraid.errors import InputError
from speechbraid.evaluation import (
    count_occurrences,
    entity_error_rate,
    evaluate,
    format_report,
    normalize_for_wer,
    read_hypotheses,
    recognised_entities,
    ter,
    tokens_for_ter,
    wer,
)


def utt(utt_id: str, markup: str, domain: str | None = None) -> Utterance:
    text, entities = parse_markup(markup)
    return Utterance(id=utt_id, text=text, entities=entities, domain=domain)


# --- normalisation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Take ASPIRIN, twice a day.", "take aspirin twice a day"),
        ("Don’t  stop\tthe x-ray!", "don't stop the x-ray"),  # typographic apostrophe, whitespace runs
        ("'Quoted' students' - well--then", "quoted students well then"),  # edge apostrophes/hyphens go
        ("U.S. dose: 2.5 mg or 1,000 units", "u s dose 2.5 mg or 1,000 units"),
        ("5% at AT&T", "5% at at&t"),  # marks read aloud are kept
        ("ＦＵＬＬ width ﬁne Straße", "full width fine strasse"),  # NFKC + casefold
        ("...", ""),
    ],
)
def test_normalize_for_wer(raw: str, expected: str) -> None:
    assert normalize_for_wer(raw) == expected


def test_ter_tokens_keep_case_and_attached_punctuation() -> None:
    assert tokens_for_ter("  Take aspirin,  twice a day. ") == ["Take", "aspirin,", "twice", "a", "day."]
    result = ter(["Take it every day."], ["take it every day"])
    assert (result.total.substitutions, result.total.ref_words) == (2, 4)
    assert wer(["Take it every day."], ["take it every day"]).rate == 0.0


# --- WER/TER equal jiwer -----------------------------------------------------------------------

_VOCAB = ["Aspirin", "aspirin", "take", "Take", "day.", "day", "the", "x-ray", "don't", "Visa,", "pay", "2.5"]


def _random_corpus(seed: int, n: int = 40) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    refs, hyps = [], []
    for _ in range(n):
        ref = [rng.choice(_VOCAB) for _ in range(rng.randint(1, 9))]
        hyp = [w if rng.random() < 0.7 else rng.choice(_VOCAB) for w in ref if rng.random() < 0.9]
        hyp += [rng.choice(_VOCAB) for _ in range(rng.randint(0, 2))]
        refs.append(" ".join(ref))
        hyps.append(" ".join(hyp))
    return refs, hyps


@pytest.mark.parametrize("seed", [0, 1])
def test_wer_and_ter_equal_jiwer(seed: int) -> None:
    refs, hyps = _random_corpus(seed)
    w, t = wer(refs, hyps), ter(refs, hyps)
    expected_wer = jiwer.wer([normalize_for_wer(r) for r in refs], [normalize_for_wer(h) for h in hyps])
    expected_ter = jiwer.process_words(refs, hyps)  # raw text, jiwer's own whitespace tokenisation
    assert w.rate == pytest.approx(expected_wer)
    assert t.rate == pytest.approx(expected_ter.wer)
    assert (t.total.substitutions, t.total.deletions, t.total.insertions, t.total.hits) == (
        expected_ter.substitutions, expected_ter.deletions, expected_ter.insertions, expected_ter.hits,
    )
    assert t.rate > w.rate > 0  # case and punctuation differences only count in TER
    # per-utterance counts add up to the corpus totals and match jiwer utterance by utterance
    assert sum(t.utterances[1:], t.utterances[0]) == t.total
    for i in (0, 7, 23):
        assert t.utterances[i].rate == pytest.approx(jiwer.wer(refs[i], hyps[i]))


def test_evaluate_per_domain_equals_jiwer_on_the_subset() -> None:
    refs, hyps = _random_corpus(3, n=30)
    records = [Utterance(id=str(i), text=r, domain="a" if i % 3 else "b") for i, r in enumerate(refs)]
    result = evaluate(records, hyps)
    for domain in ("a", "b"):
        idx = [i for i, r in enumerate(records) if r.domain == domain]
        sub_refs, sub_hyps = [refs[i] for i in idx], [hyps[i] for i in idx]
        assert result["by_domain"][domain]["ter"] == pytest.approx(jiwer.wer(sub_refs, sub_hyps))
        norm = jiwer.wer([normalize_for_wer(refs[i]) for i in idx], [normalize_for_wer(hyps[i]) for i in idx])
        assert result["by_domain"][domain]["wer"] == pytest.approx(norm)
        assert result["by_domain"][domain]["utterances"] == len(idx)
    assert result["overall"]["ter"] == pytest.approx(jiwer.wer(refs, hyps))


@pytest.mark.parametrize(
    ("source", "family"),
    [("synth:espeak", "espeak"), ("synth:piper", "piper"), ("recorded:pocketsphinx-testdata", "recorded"),
     (None, "recorded"), ("my own corpus", "recorded"), ("synth:", "recorded")],
)
def test_voice_family_from_source(source: str | None, family: str) -> None:
    assert voice_family(source) == family


def test_evaluate_per_voice_family_by_hand() -> None:
    records = [
        Utterance("e1", "Take aspirin daily.", domain="medical", source="synth:espeak",
                  entities=parse_markup("Take [aspirin](drug) daily.")[1]),
        Utterance("e2", "Rest well.", domain="general", source="synth:espeak"),
        Utterance("p1", "Take ibuprofen now.", domain="medical", source="synth:piper",
                  entities=parse_markup("Take [ibuprofen](drug) now.")[1]),
        Utterance("r1", "ten of clubs", domain="general", source="recorded:pocketsphinx-testdata"),
        Utterance("r2", "he was not an ill disposed young man", source=None),
    ]
    hyps = ["take aspirin daily", "rest well", "take a brufen now", "ten of clubs",
            "he was not an illness those young man"]
    result = evaluate(records, hyps)
    families = result["by_voice_family"]
    assert list(families) == ["espeak", "piper", "recorded"]
    assert {k: v["utterances"] for k, v in families.items()} == {"espeak": 2, "piper": 1, "recorded": 2}
    assert families["espeak"]["wer"] == 0.0 and families["espeak"]["eer"] == 0.0
    assert families["piper"]["wer"] == pytest.approx(2 / 3)  # ibuprofen -> "a brufen": 1 sub + 1 ins
    assert families["piper"]["eer"] == 1.0
    assert families["recorded"]["wer"] == pytest.approx(2 / 11)  # "ill disposed" -> "illness those": 2 sub
    assert families["recorded"]["eer"] is None  # no entities to recall
    assert result["overall"]["wer"] == pytest.approx(4 / 19)
    table = format_report(result)
    assert "by voice family:" in table and "piper" in table and "66.67" in table
    # one family only: no section that would repeat the overall row
    single = evaluate(records[:2], hyps[:2])
    assert list(single["by_voice_family"]) == ["espeak"] and "by voice family" not in format_report(single)
    # results saved before families existed still format
    del single["by_voice_family"]
    assert "overall" in format_report(single)


def test_empty_references_and_hypotheses() -> None:
    result = wer(["...", "a b"], ["x", ""])
    assert result.utterances[0].insertions == 1 and result.utterances[0].rate is None
    assert result.utterances[1].deletions == 2
    assert result.rate == pytest.approx(3 / 2)
    assert wer([], []).rate is None
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        wer(["a", "b"], ["a"])


# --- entity error rate: the definition, by hand ------------------------------------------------


@pytest.mark.parametrize(
    ("markup", "hypothesis", "expected"),
    [
        ("Take [aspirin](drug) now.", "take aspirin now", [True]),  # exact: hit, case elsewhere irrelevant
        ("Take [aspirin](drug) now.", "take Aspirin now", [False]),  # case error
        ("Take [aspirin](drug) now.", "take asprin now", [False]),  # spelling variant
        ("Take [aspirin](drug) now.", "take aspirin, now", [True]),  # adjacent punctuation does not matter
        ("Take [aspirin](drug) now.", "(aspirin)", [True]),
        ("Take [aspirin](drug) now.", "take aspirins now", [False]),  # not a whole word
        ("Take [aspirin](drug) now.", "take paracetamol now", [False]),  # entity absent
        ("[aspirin](drug) or [aspirin](drug)?", "aspirin or ibuprofen", [True, False]),  # multiplicity
        ("[aspirin](drug) or [aspirin](drug)?", "aspirin or aspirin", [True, True]),
        ("Fly to [New York](city).", "fly to New York.", [True]),  # multi-word entity
        ("Fly to [New York](city).", "fly to New  York", [True]),  # any whitespace run inside
        ("Fly to [New York](city).", "fly to new york", [False]),
        ("Fly to [New York](city).", "fly to NewYork", [False]),
        ("Fly to [New York](city).", "fly to New", [False]),
    ],
)
def test_entity_recognition_definition(markup: str, hypothesis: str, expected: list[bool]) -> None:
    _, entities = parse_markup(markup)
    assert recognised_entities(entities, hypothesis) == expected


def test_count_occurrences_is_non_overlapping_and_bounded() -> None:
    assert count_occurrences("New York", "New York New York, new york") == 2
    assert count_occurrences("aa", "aaa aa") == 1
    assert count_occurrences("C++", "I like C++.") == 1
    with pytest.raises(ValueError, match="empty text"):
        count_occurrences(" ", "anything")


def test_entity_error_rate_counts_types_domains_and_missed() -> None:
    records = [
        utt("m1", "Give [aspirin](drug) and [Warfarin](drug) to [Dr Smith](person).", "medical"),
        utt("m2", "[aspirin](drug), then [aspirin](drug) again.", "medical"),
        utt("b1", "Pay with [Visa](org) in [Paris](city).", "banking"),
        utt("g1", "No entities here."),
    ]
    hyps = [
        "give aspirin and warfarin to Dr Smith",  # Warfarin: case error -> missed
        "aspirin then aspirin again",  # both found
        "pay with visa in Paris.",  # Visa: case error -> missed
        "no entities here",
    ]
    report = entity_error_rate(records, hyps)
    assert (report.overall.total, report.overall.recognised) == (7, 5)
    assert report.eer == pytest.approx(2 / 7)
    assert {k: (v.total, v.missed) for k, v in report.by_type.items()} == {
        "drug": (4, 1), "person": (1, 0), "org": (1, 1), "city": (1, 0),
    }
    assert report.by_domain["medical"].eer == pytest.approx(1 / 5)
    assert report.by_domain["banking"].eer == pytest.approx(1 / 2)
    assert "(none)" not in report.by_domain  # no entities there: nothing to recall
    missed = [(m.utterance_id, m.text, m.type) for m in report.missed]
    assert missed == [("m1", "Warfarin", "drug"), ("b1", "Visa", "org")]
    # WER normalises those case errors away; EER does not
    result = evaluate(records, hyps)
    assert result["overall"]["wer"] == 0.0
    assert result["overall"]["eer"] == pytest.approx(2 / 7)
    assert result["by_domain"]["(none)"]["eer"] is None
    assert json.loads(json.dumps(result)) == result
    table = format_report(result)
    assert "28.57" in table and "Warfarin" in table and "banking" in table


# --- hypothesis files --------------------------------------------------------------------------


def test_read_hypotheses_formats(tmp_path) -> None:
    jsonl = tmp_path / "h.jsonl"
    jsonl.write_text('{"id": "a", "text": "Hello.", "score": 1}\n\n{"id": "b", "text": ""}\n', encoding="utf-8")
    hyps = read_hypotheses(jsonl)
    assert {k: (h.text, h.line) for k, h in hyps.items()} == {"a": ("Hello.", 1), "b": ("", 3)}
    tsv = tmp_path / "h.tsv"
    tsv.write_text("a\tHello  there.\nb kaldi style line\nc\n", encoding="utf-8")
    assert {k: h.text for k, h in read_hypotheses(tsv).items()} == {
        "a": "Hello  there.", "b": "kaldi style line", "c": "",
    }


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        ('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n', 2, "duplicate hypothesis id 'a'"),
        ('{"id": "a", "text": "x"}\n{"id": "b"\n', 2, "invalid JSON"),
        ('{"id": "a", "text": null}\n', 1, "'text' must be a string"),
        ("a\tx\n\tno id\n", 2, "empty utterance id"),
    ],
)
def test_read_hypotheses_errors_name_file_and_line(tmp_path, content: str, line: int, message: str) -> None:
    path = tmp_path / "h.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=message) as info:
        read_hypotheses(path)
    assert (info.value.path, info.value.line) == (str(path), line)


# --- CLI ---------------------------------------------------------------------------------------


@pytest.fixture
def reference(tmp_path):
    records = [
        utt("u1", "Take [aspirin](drug) twice a day.", "medical"),
        utt("u2", "Pay with [Visa](org).", "banking"),
        utt("u3", "Hello there."),
    ]
    path = tmp_path / "ref.jsonl"
    write_manifest(records, path)
    return path


def test_score_cli_reports_missing_ids_and_fails_without_allow_missing(tmp_path, reference, capsys) -> None:
    hyp = tmp_path / "hyp.tsv"
    hyp.write_text("u1\ttake aspirin twice a day\nu2\tpay with visa\nu9\tstray\n", encoding="utf-8")
    assert main(["score", "--ref", str(reference), "--hyp", str(hyp)]) == 2
    err = capsys.readouterr().err
    assert "1 reference utterance(s) have no hypothesis" in err and f"{reference}:3 [u3]" in err
    assert f"{hyp}:3 [u9]" in err

    assert main(["score", "--ref", str(reference), "--hyp", str(hyp), "--allow-missing", "--json"]) == 0
    captured = capsys.readouterr()
    assert "scored as empty" in captured.err and "left out" in captured.err
    result = json.loads(captured.out)
    overall = result["overall"]
    # u3 ("Hello there.") counts as two deletions; u1/u2 are WER-correct
    assert overall["wer_counts"]["deletions"] == 2 and overall["wer"] == pytest.approx(2 / 10)
    # TER: Take/take, day./day, Pay/pay, Visa./visa + the two deletions
    assert overall["ter_counts"]["errors"] == 6
    assert overall["eer"] == pytest.approx(1 / 2)
    assert result["by_entity_type"]["org"]["missed"] == 1
    assert result["missing_hypotheses"]["count"] == 1 and result["extra_hypotheses"]["count"] == 1


def test_score_cli_text_report(tmp_path, reference, capsys) -> None:
    hyp = tmp_path / "hyp.jsonl"
    lines = [{"id": "u3", "text": "Hello there."}, {"id": "u1", "text": "Take aspirin twice a day."},
             {"id": "u2", "text": "Pay with Visa."}]
    hyp.write_text("".join(json.dumps(o) + "\n" for o in lines), encoding="utf-8")
    assert main(["score", "--ref", str(reference), "--hyp", str(hyp)]) == 0
    out = capsys.readouterr().out
    overall = next(line for line in out.splitlines() if line.startswith("overall"))
    assert overall.split() == ["overall", "3", "10", "0.00", "0.00", "2", "0.00"]
    assert "medical" in out and "drug" in out and "missed entities" not in out


def test_score_cli_reports_voice_families_from_the_reference_sources(tmp_path, capsys) -> None:
    # regression: the reference records were rebuilt without their source, so every family read "recorded"
    records = [Utterance("e", "Rest well.", source="synth:espeak"), Utterance("p", "Rest now.", source="synth:piper")]
    write_manifest(records, tmp_path / "ref.jsonl")
    (tmp_path / "hyp.tsv").write_text("e\trest well\np\trest\n", encoding="utf-8")
    assert main(["score", "--ref", str(tmp_path / "ref.jsonl"), "--hyp", str(tmp_path / "hyp.tsv"), "--json"]) == 0
    families = json.loads(capsys.readouterr().out)["by_voice_family"]
    assert {k: v["wer"] for k, v in families.items()} == {"espeak": 0.0, "piper": 0.5}

"""Pieces of the JSTIP study that need no training."""

from speechbraid.data import Utterance, read_manifest, write_manifest
from speechbraid.experiments.jstip import _scored_on, _spread, format_markdown, summarize


def test_test_subset_keeps_every_domain(tmp_path):
    """Regression: the subset was the first n records, and the domain-ordered test split lost banking."""
    records = [Utterance(id=f"{d}{i}", text="x", domain=d) for d in ("general", "medical", "banking") for i in range(4)]
    write_manifest(records, tmp_path / "test.jsonl")
    subset = list(read_manifest(_spread(tmp_path / "test.jsonl", 6, tmp_path / "subset.jsonl")))
    assert len(subset) == 6 and {r.domain for r in subset} == {"general", "medical", "banking"}


def test_summary_gives_mean_and_spread_over_seeds():
    runs = {"asr-only": [{"wer": 0.5, "eer": 0.8}, {"wer": 0.7, "eer": None}]}
    table = summarize(runs)
    assert table["asr-only"]["wer"]["mean"] == 0.6 and round(table["asr-only"]["wer"]["std"], 4) == 0.1414
    assert table["asr-only"]["eer"] == {"mean": 0.8, "std": 0.0} and table["asr-only"]["gap"] is None
    assert "| asr-only | 2 | 60.0 ± 14.1 |" in format_markdown(table, ["asr-only"])


def test_a_row_scored_on_other_utterances_is_scored_again(tmp_path):
    """Regression: a study seeded with a demo's shared/ reused its CTC row, scored on the demo's 150 test
    utterances instead of the study's 90."""
    test = tmp_path / "test.jsonl"
    write_manifest([Utterance(id=i, text="x", audio=f"{i}.wav", duration=1.0) for i in ("a", "b")]
                   + [Utterance(id="text-only", text="x")], test)
    out = tmp_path / "ctc_eval"
    assert not _scored_on(out, test)
    out.mkdir()
    (out / "test_eval.json").write_text("{}")
    for scored, expected in ((["a", "b", "c"], False), (["b", "a"], True)):
        (out / "test_hyps.jsonl").write_text("".join(f'{{"id": "{i}", "text": "x"}}\n' for i in scored))
        assert _scored_on(out, test) is expected

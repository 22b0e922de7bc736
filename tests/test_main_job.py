"""The main job and the JSTIP study end to end at tiny size: every step runs, results are saved, re-runs resume."""

import json

from speechbraid.cli.main import main
from speechbraid.experiments.jstip import CTC_LM_ROWS, CTC_ROW
from speechbraid.experiments.main_job import run_main_job


def test_main_job_tiny_runs_end_to_end_and_resumes(tmp_path, capsys, home):
    out, corpus = tmp_path / "run", tmp_path / "corpus"
    first = run_main_job(out, corpus, plan="tiny", progress=False)
    # the default recipe's rows, the warm-up's CTC bridge alone and with the n-gram LMs, and whisper-base on the same
    # utterances
    lm_rows = {row for row, _ in CTC_LM_ROWS.values()}
    assert set(first["table"]) == {"asr-only", "asr +il", CTC_ROW, "whisper-base (reference)", *lm_rows}
    assert [row["stage"] for row in map(json.loads, (out / "shared" / "train_log.jsonl").open())] == ["ctc"] * 2 + [
        "llm"]
    printed = capsys.readouterr().out
    assert "ASR-only speech LLM (LLM decoding) on the held-out test set" in printed
    assert "its CTC bridge beam-searched with the n-gram LM" in printed
    assert {p.name for p in (out / "lm").glob("*.arpa.gz")} == {"transcripts.arpa.gz", "domain.arpa.gz"}
    assert "whisper-base on the same utterances" in printed
    saved = json.loads((out / "results.json").read_text())
    assert saved["table"] == first["table"]
    report = json.loads((out / "rows" / "asr-only" / "seed0" / "test_eval.json").read_text())
    assert set(report["by_domain"]) == {"general", "medical", "banking"} and report["n"] > 0
    assert "| asr +il | 1 |" in (out / "table.md").read_text()
    # every row is also decoded jointly with its CTC bridge (llm-ctc); the rows scored alone are not
    assert all(first["table"][row]["wer_joint"] is not None for row in ("asr-only", "asr +il"))
    assert first["table"][CTC_ROW]["wer_joint"] is None
    joint = json.loads((out / "rows" / "asr-only" / "seed0" / "joint" / "test_eval.json").read_text())
    assert joint["n"] == report["n"] and "WER joint %" in (out / "table.md").read_text()
    assert (out / "table.png").stat().st_size > 0
    assert (out / "reference" / "test_hyps.jsonl").is_file()
    # a re-run finds every step done: the stage-2 logs keep their steps, nothing is retrained; a run scored before
    # joint decoding existed gets its joint scores (here read back from its joint/ directory)
    logs = {p: p.read_text() for p in out.rglob("train_log.jsonl")}
    metrics_file = out / "rows" / "asr-only" / "seed0" / "metrics.json"
    metrics = json.loads(metrics_file.read_text())
    metrics_file.write_text(json.dumps({k: v for k, v in metrics.items() if not k.endswith("_joint")}))
    again = run_main_job(out, corpus, plan="tiny", progress=False)
    assert again["table"] == first["table"]
    assert json.loads(metrics_file.read_text()) == metrics
    assert {p: p.read_text() for p in out.rglob("train_log.jsonl")} == logs


def test_jstip_study_tiny_with_questions_and_tts_rows(tmp_path):
    out = tmp_path / "study"
    code = main(["experiment", "jstip", "log_every=1", "--preset", "tiny", "--out", str(out),
                 "--corpus", str(tmp_path / "corpus")])
    assert code == 0
    for run in ("shared", "rows/asr-only/seed0", "rows/asr+tts-pairs_+il/seed1"):  # overrides reach every run
        assert "log_every: 1\n" in (out / run / "config.yaml").read_text()
    result = json.loads((out / "results.json").read_text())
    assert set(result["table"]) == {"asr-only", "asr +il", "asr+tts-pairs +il"}
    row = result["table"]["asr+tts-pairs +il"]
    assert row["seeds"] == 2 and row["s2t"] is not None and row["sqa"] is not None
    assert (out / "tts" / "manifest.jsonl").is_file()
    # a run scored with an older question protocol is re-scored on resume, its training and ASR scores kept
    run = out / "rows" / "asr+tts-pairs_+il" / "seed0"
    old = json.loads((run / "metrics.json").read_text())
    assert old["questions_protocol"] == "mc-cloze, sqa-non-empty"
    (run / "metrics.json").write_text(json.dumps({**old, "questions_protocol": None, "t2t": 0.123}))
    kept = {p: p.stat().st_mtime_ns for p in (run / "test_eval.json", run / "train_log.jsonl")}
    assert main(["experiment", "jstip", "log_every=1", "--preset", "tiny", "--out", str(out),
                 "--corpus", str(tmp_path / "corpus")]) == 0
    assert json.loads((run / "metrics.json").read_text()) == old
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())
    assert main(["experiment", "jstip", "--preset", "tiny", "--rows", "nope", "--out", str(out)]) == 2


def test_jstip_study_refuses_an_unknown_override_before_any_work(tmp_path, capsys):
    assert main(["experiment", "jstip", "model.nope=1", "--preset", "tiny", "--out", str(tmp_path / "study")]) == 2
    assert "nope" in capsys.readouterr().err and not (tmp_path / "study").exists()

"""The main job end to end at tiny size: every step runs, results are saved, a re-run resumes."""

import json

from speechbraid.experiments.main_job import run_main_job


def test_main_job_tiny_runs_end_to_end_and_resumes(tmp_path):
    out, corpus = tmp_path / "run", tmp_path / "corpus"
    first = run_main_job(out, corpus, plan="tiny", progress=False)
    saved = json.loads((out / "results.json").read_text())
    assert saved["test"]["n"] == first["test"]["n"] > 0
    assert set(saved["test"]["by_domain"]) == {"general", "medical", "banking"}
    assert (out / "asr" / "model" / "speechbraid.json").is_file() and (out / "lm" / "config.json").is_file()
    assert (out / "test_hyps.jsonl").is_file()
    # a re-run finds every step done: same LM metrics, no retraining (the run log keeps its 4 steps)
    again = run_main_job(out, corpus, plan="tiny", progress=False)
    assert again["lm"] == first["lm"]
    assert len((out / "asr" / "train_log.jsonl").read_text().splitlines()) == 4

"""Validation while training (issue 12 item 4): dev loss / WER / EER every N steps, best and last-K checkpoints."""

import json

import pytest
import torch

from speechbraid.config import load_config
from speechbraid.errors import ConfigError, InputError
from speechbraid.inference.transcribe import audio_item, load_transcriber
from speechbraid.metrics.asr import entity_error_rate, wer
from speechbraid.training.checkpoint import BEST, read_marker, save_checkpoint
from speechbraid.training.runlog import read_train_log
from speechbraid.training.trainer import TrainConfig, Trainer, train
from speechbraid.training.validation import DEV_LOG, ValidationConfig, Validator
from test_trainer import tiny_config


@pytest.fixture(autouse=True)
def _threads(one_torch_thread):
    pass


@pytest.fixture(scope="module")
def dev_manifest(noise_corpus, tmp_path_factory):
    """The noise corpus as a dev set, its drug / money words marked as entities (for EER)."""
    out = tmp_path_factory.mktemp("dev") / "dev.jsonl"
    lines = []
    for line in noise_corpus.read_text().splitlines():
        record = json.loads(line)
        record["audio"] = str(noise_corpus.parent / record["audio"])
        for word, kind in (("aspirin", "drug"), ("fifty dollars", "money"), ("Ibuprofen", "drug")):
            start = record["text"].find(word)
            if start >= 0:
                record["entities"] = [{"text": word, "type": kind, "start": start, "end": start + len(word)}]
        lines.append(json.dumps(record))
    out.write_text("\n".join(lines) + "\n")
    return out


def dev_log(run):
    return [json.loads(line) for line in (run / DEV_LOG).read_text().splitlines()]


def checkpoints(run):
    return sorted(p.name for p in (run / "checkpoints").iterdir() if p.is_dir())


def with_validation(config, dev, **options):
    config.validation = ValidationConfig(dev=str(dev), **options)
    return config


def test_validation_runs_every_n_steps_and_at_the_end_and_never_changes_training(tmp_path, tiny_llm_dir,
                                                                                  noise_corpus, dev_manifest):
    plain = tiny_config(tiny_llm_dir, noise_corpus, steps=(2, 3))
    train(plain, tmp_path / "plain", progress=False)
    config = with_validation(tiny_config(tiny_llm_dir, noise_corpus, steps=(2, 3)), dev_manifest, every=2,
                             max_records=3)
    config.ckpt_every = 100  # validation steps are checkpointed all the same (the best must be a checkpoint)
    config.keep_last = 5
    config.tensorboard = True
    train(config, tmp_path / "run", progress=False)

    rows = dev_log(tmp_path / "run")
    assert [row["step"] for row in rows] == [2, 4, 5]  # every 2 steps, and the last step
    assert all(set(row) == {"step", "dev_loss", "records", "seconds"} for row in rows)
    assert all(row["records"] == 3 and 0 < row["dev_loss"] < 20 for row in rows)
    assert checkpoints(tmp_path / "run") == ["step-00000002", "step-00000004", "step-00000005"]
    # forked RNG, eval mode restored, no data drawn: the train log is the run without validation's
    assert [r["loss"] for r in read_train_log(tmp_path / "run")] == [r["loss"] for r in read_train_log(tmp_path
                                                                                                        / "plain")]
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    lowest = min(rows, key=lambda row: row["dev_loss"])
    assert (best["step"], best["metric"], best["value"]) == (lowest["step"], "dev_loss", lowest["dev_loss"])
    assert read_marker(tmp_path / "run" / "checkpoints", BEST) == f"step-{lowest['step']:08d}"

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    assert [(e.step, pytest.approx(e.value)) for e in events.Scalars("dev/loss")] == \
        [(row["step"], row["dev_loss"]) for row in rows]


def test_dev_wer_and_eer_are_the_saved_models_transcripts_scored(tmp_path, tiny_llm_dir, noise_corpus, dev_manifest,
                                                                 monkeypatch):
    from speechbraid.inference.transcribe import SpeechLLMTranscriber

    decoded = []
    original = SpeechLLMTranscriber.transcribe
    monkeypatch.setattr(SpeechLLMTranscriber, "transcribe",
                        lambda self, *a, **k: (lambda run: decoded.append(run.texts) or run)(original(self, *a, **k)))
    config = with_validation(tiny_config(tiny_llm_dir, noise_corpus, steps=(1, 1)), dev_manifest, every=2,
                             metrics=["loss", "wer", "eer"], best_metric="dev_wer", max_records=4, batch_size=3)
    train(config, tmp_path / "run", progress=False)
    (row,) = dev_log(tmp_path / "run")
    assert set(row) == {"step", "dev_loss", "dev_wer", "dev_eer", "records", "seconds"} and row["step"] == 2
    assert json.loads((tmp_path / "run" / "best.json").read_text())["metric"] == "dev_wer"

    # the final model (step 2), saved and transcribed on its own, gives the very transcripts validation scored (in
    # batches of the same size: the transcriber caps new tokens by the longest audio of each batch)
    from speechbraid.data.manifest import read_manifest

    records = list(read_manifest(dev_manifest))[:4]
    assert sum(bool(r.entities) for r in records) == 2
    transcriber = load_transcriber(tmp_path / "run" / "model", device="cpu")
    texts = transcriber.transcribe([audio_item(r.audio, r.id) for r in records], batch_size=3, progress=False).texts
    assert decoded[0] == texts and any(texts)
    assert row["dev_wer"] == pytest.approx(wer([r.text for r in records], texts).rate)
    assert row["dev_eer"] == pytest.approx(entity_error_rate(records, texts).eer)

    # dev loss: the saved model's asr-layout loss over all dev target tokens in one batch (validation used batches
    # of 3: a token-weighted mean does not depend on the batching)
    from speechbraid.batching.collate import collate, flatten_braid
    from speechbraid.layouts.registry import get_layout
    from speechbraid.layouts.tokenizer import HFTextTokenizer

    model, tokenizer = transcriber.model, HFTextTokenizer(transcriber.hf_tokenizer)
    flats = [flatten_braid(get_layout("asr").build(r, tokenizer), model.vocab, model.frame_rate) for r in records]
    with torch.no_grad():
        loss, _ = model.eval()(collate([[f] for f in flats], config.model.feature_config.extract_file))
    assert row["dev_loss"] == pytest.approx(float(loss), rel=1e-5)


def test_dev_scores_follow_the_transcripts_and_eer_alone_decodes_only_records_with_entities(
        tiny_llm_dir, noise_corpus, dev_manifest, monkeypatch):
    from speechbraid.data.manifest import read_manifest
    from speechbraid.inference.transcribe import SpeechLLMTranscriber, TranscriptionRun

    records = {r.id: r for r in read_manifest(dev_manifest)}
    asked = []

    def transcribe(self, items, **options):  # the reference, but the first record's transcript lost
        asked.append([item.id for item in items])
        return TranscriptionRun(["" if k == 0 else records[item.id].text for k, item in enumerate(items)], 1.0, 1.0)

    monkeypatch.setattr(SpeechLLMTranscriber, "transcribe", transcribe)
    config = with_validation(tiny_config(tiny_llm_dir, noise_corpus), dev_manifest, metrics=["wer", "eer"])
    measured = Trainer(config, "/nonexistent-run-dir").validator.measure()
    words = [len(r.text.split()) for r in records.values()]
    assert measured["dev_wer"] == pytest.approx(words[0] / sum(words))
    assert measured["dev_eer"] == pytest.approx(1 / 3)  # u0 (aspirin) lost; u3 and u4 recognised
    config = with_validation(tiny_config(tiny_llm_dir, noise_corpus), dev_manifest, metrics=["eer"])
    assert set(Trainer(config, "/nonexistent-run-dir").validator.measure()) == {"dev_loss", "dev_eer"}
    assert asked[-1] == ["u0", "u3", "u4"]


def scripted_losses(monkeypatch, offsets):
    """Shift the measured dev loss by a per-step offset, so which validation is best is known in advance."""
    original = Validator.run

    def run(self, step, *args, **kwargs):
        measure = self.measure
        self.measure = lambda: (lambda m: m | {"dev_loss": m["dev_loss"] + offsets[step]})(measure())
        try:
            return original(self, step, *args, **kwargs)
        finally:
            self.measure = measure

    monkeypatch.setattr(Validator, "run", run)


def test_keep_last_prunes_old_checkpoints_but_never_the_best_or_the_resumed_one(tmp_path, tiny_llm_dir,
                                                                               noise_corpus, dev_manifest, monkeypatch):
    scripted_losses(monkeypatch, {2: 0.0, 4: 100.0, 5: 200.0})  # the validation after step 2 is the best
    config = with_validation(tiny_config(tiny_llm_dir, noise_corpus, steps=(2, 3)), dev_manifest, every=2,
                             max_records=2)
    config.keep_last = 2
    train(config, tmp_path / "full", progress=False)
    assert checkpoints(tmp_path / "full") == ["step-00000002", "step-00000004", "step-00000005"]
    config.keep_last = 1
    train(config, tmp_path / "one", progress=False)
    assert checkpoints(tmp_path / "one") == ["step-00000002", "step-00000005"]
    assert read_marker(tmp_path / "one" / "checkpoints", BEST) == "step-00000002"

    # interrupted after step 3, resumed: step 3 (resumed from) survives this run's pruning, step 2 as the best
    train(config, tmp_path / "cut", progress=False, stop_after=3)
    assert checkpoints(tmp_path / "cut") == ["step-00000002", "step-00000003"]
    train(config, tmp_path / "cut", progress=False, resume=True)
    assert checkpoints(tmp_path / "cut") == ["step-00000002", "step-00000003", "step-00000005"]


def test_save_checkpoint_spares_the_best_and_protected_names(tmp_path):
    root = tmp_path / "checkpoints"
    model = torch.nn.Linear(2, 2)
    for step in (1, 2):
        save_checkpoint(root, step, model, {"step": step}, keep=1)
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["step-00000002"]
    (root / BEST).write_text("step-00000002\n")
    for step in (3, 4, 5):
        save_checkpoint(root, step, model, {"step": step}, keep=2, protect=["step-00000003"])
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["step-00000002", "step-00000003",
                                                                     "step-00000004", "step-00000005"]
    save_checkpoint(root, 6, model, {"step": 6}, keep=2)
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["step-00000002", "step-00000005",
                                                                     "step-00000006"]


def test_interrupted_and_resumed_run_has_the_same_dev_log_and_best(tmp_path, tiny_llm_dir, noise_corpus,
                                                                   dev_manifest, monkeypatch):
    # best after step 2; a resumed run that forgot it would take step 4 (the first it validates itself)
    scripted_losses(monkeypatch, {2: 0.0, 4: 100.0, 5: 200.0})
    config = with_validation(tiny_config(tiny_llm_dir, noise_corpus, steps=(2, 3)), dev_manifest, every=2,
                             max_records=2)
    config.keep_last = 2  # checkpoint 3 outlives checkpoint 4, so the kill below can be staged
    train(config, tmp_path / "full", progress=False)
    train(config, tmp_path / "cut", progress=False, stop_after=4)  # its dev log has step 4 ...
    with (tmp_path / "cut" / DEV_LOG).open("a") as log:  # ... and a line a kill after checkpoint 3 would leave
        log.write(json.dumps({"step": 5, "dev_loss": 0.0, "records": 2, "seconds": 0.0}) + "\n")
    latest = tmp_path / "cut" / "checkpoints" / "latest"
    import shutil

    shutil.rmtree(tmp_path / "cut" / "checkpoints" / "step-00000004")  # killed before checkpoint 4 was complete
    latest.write_text("step-00000003\n")
    train(config, tmp_path / "cut", progress=False, resume=True)

    def steady(run):  # seconds is wall time
        return [{k: v for k, v in row.items() if k != "seconds"} for row in dev_log(run)]

    full, cut = steady(tmp_path / "full"), steady(tmp_path / "cut")
    assert [row["step"] for row in cut] == [2, 4, 5]
    assert [row["dev_loss"] for row in cut] == pytest.approx([row["dev_loss"] for row in full], abs=1e-6)
    best_full = json.loads((tmp_path / "full" / "best.json").read_text())
    best_cut = json.loads((tmp_path / "cut" / "best.json").read_text())
    assert best_full["step"] == best_cut["step"] == 2
    assert best_cut["value"] == pytest.approx(best_full["value"], abs=1e-6)
    assert read_marker(tmp_path / "cut" / "checkpoints", BEST) == "step-00000002"


def test_bad_dev_input_fails_before_any_step(tmp_path, tiny_llm_dir, noise_corpus, dev_manifest):
    def trainer(dev, **options):
        return Trainer(with_validation(tiny_config(tiny_llm_dir, noise_corpus), dev, **options), tmp_path / "run")

    with pytest.raises(InputError, match="missing.jsonl: manifest not found"):
        trainer(tmp_path / "missing.jsonl")
    lines = dev_manifest.read_text().splitlines()
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join(lines[:2] + ['{"id": "x", "text": '] + lines[2:]) + "\n")
    with pytest.raises(InputError, match=r"broken.jsonl:3: invalid record"):
        trainer(broken)
    no_audio = tmp_path / "no_audio.jsonl"
    no_audio.write_text("\n".join(lines[:3] + [json.dumps({"id": "t1", "text": "only text"})]) + "\n")
    with pytest.raises(InputError, match=r"no_audio.jsonl:4: \[t1\] no audio"):
        trainer(no_audio)
    gone = tmp_path / "gone.jsonl"
    gone.write_text(json.dumps(json.loads(lines[0]) | {"audio": str(tmp_path / "nope.wav")}) + "\n")
    with pytest.raises(InputError, match=r"gone.jsonl:1: audio file not found"):
        trainer(gone)
    with pytest.raises(InputError, match="lists eer but none of the"):
        trainer(noise_corpus, metrics=["eer"])
    assert not (tmp_path / "run").exists()  # nothing trained, nothing written


def test_validation_config_errors_list_the_choices(tmp_path):
    with pytest.raises(ConfigError, match="unknown metric 'dev_cer'; choose one of dev_loss, dev_wer, dev_eer"):
        ValidationConfig(dev="d.jsonl", best_metric="dev_cer")
    with pytest.raises(ConfigError, match="best_metric dev_wer is not measured: add wer"):
        ValidationConfig(dev="d.jsonl", best_metric="dev_wer")
    with pytest.raises(ConfigError, match="validation.every must be >= 1"):
        ValidationConfig(dev="d.jsonl", every=0)
    # from YAML (what `speechbraid train` reads): the same checks, plus the file and key
    cfg = tmp_path / "c.yaml"
    cfg.write_text("validation: {dev: d.jsonl, every: 50, metrics: [loss, wer], best_metric: dev_wer}\n"
                   "keep_last: 3\n")
    config = load_config(TrainConfig, cfg)
    assert (config.validation.every, config.validation.best_metric, config.keep_last) == (50, "dev_wer", 3)
    with pytest.raises(ConfigError, match=r"validation.best_metric must be one of dev_loss, dev_wer, dev_eer"):
        load_config(TrainConfig, cfg, ["validation.best_metric=wer"])
    with pytest.raises(ConfigError, match=r"validation.metrics\[1\] must be one of loss, wer, eer"):
        load_config(TrainConfig, cfg, ["validation.metrics=[loss, cer]"])


DDP_SCRIPT = """
import sys, torch.distributed as dist
sys.path.insert(0, {tests!r})
from test_trainer import tiny_config
from speechbraid.training.trainer import Trainer
from speechbraid.training.validation import ValidationConfig
config = tiny_config({llm!r}, {manifest!r}, steps=(1, 2))
config.validation = ValidationConfig(dev={dev!r}, every=2, max_records=2)
Trainer(config, {out!r}).fit(progress=False)
dist.destroy_process_group()
"""


def test_under_ddp_the_main_rank_validates_and_the_others_wait(tmp_path, tiny_llm_dir, noise_corpus, dev_manifest):
    import os
    import subprocess
    import sys

    out = tmp_path / "ddp"
    script = tmp_path / "run_ddp.py"
    script.write_text(DDP_SCRIPT.format(tests=os.path.dirname(__file__), llm=str(tiny_llm_dir),
                                        manifest=str(noise_corpus), dev=str(dev_manifest), out=str(out)))
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": src}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                             "--master-port", "29521", str(script)], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [row["step"] for row in dev_log(out)] == [2, 3]  # one line per validation, not one per rank
    assert json.loads((out / "best.json").read_text())["step"] in (2, 3)


def test_the_best_is_the_lowest_metric_then_the_lowest_dev_loss_and_nan_never_wins(tmp_path, tiny_llm_dir,
                                                                                   noise_corpus, dev_manifest):
    config = with_validation(tiny_config(tiny_llm_dir, noise_corpus), dev_manifest, metrics=["wer"],
                             best_metric="dev_wer")
    validator = Trainer(config, tmp_path / "run").validator
    (tmp_path / "run").mkdir()
    nan = float("nan")
    scripted = iter([(nan, nan), (3.0, 1.0), (2.0, 1.0), (1.0, 1.2), (2.0, 1.0), (2.5, 0.9)])
    validator.measure = lambda: dict(zip(("dev_loss", "dev_wer"), next(scripted), strict=True))
    bests = []
    for step in range(1, 7):
        validator.run(step)
        bests.append(validator.best["step"])
    assert bests == [1, 2, 3, 3, 3, 6]
    assert json.loads((tmp_path / "run" / "best.json").read_text())["value"] == 0.9

"""CTC aligner training (runs, resumes exactly), manifest alignment with rejects, and the CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from speechbraid.align.model import AlignerConfig, CTCAligner, load_aligner, save_aligner
from speechbraid.align.run import align_manifest, align_record
from speechbraid.align.train import train_ctc_aligner
from speechbraid.cli.main import main
from speechbraid.data.audio import write_wav
from speechbraid.data.manifest import read_manifest
from speechbraid.models.encoders import ConformerConfig

TINY = replace(ConformerConfig(), d_model=16, n_layers=1, n_heads=2, ff_mult=2, conv_kernel=3)


def _train(manifest, out, steps, **kw):
    return train_ctc_aligner([manifest], out, steps, batch_size=2, encoder=TINY, checkpoint_every=2,
                             progress=False, **kw)


def test_training_runs_and_resumes_exactly(noise_corpus, tmp_path, monkeypatch):
    metrics = _train(noise_corpus, tmp_path / "full", 4)
    assert metrics["examples"] == 6 and metrics["frame_ms"] == 20
    log = [json.loads(line) for line in (tmp_path / "full" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4] and all(np.isfinite(r["loss"]) for r in log)

    from speechbraid.training.loop import TrainingLoop

    real_save = TrainingLoop.save

    def save_then_crash(self, step):
        real_save(self, step)
        if step == 2:
            raise KeyboardInterrupt  # killed right after the step-2 checkpoint

    monkeypatch.setattr(TrainingLoop, "save", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        _train(noise_corpus, tmp_path / "split", 4)
    monkeypatch.setattr(TrainingLoop, "save", real_save)
    _train(noise_corpus, tmp_path / "split", 4, resume=True)
    full = load_file(str(tmp_path / "full" / "model.safetensors"))
    split = load_file(str(tmp_path / "split" / "model.safetensors"))
    assert full.keys() == split.keys()
    for name in full:
        torch.testing.assert_close(split[name], full[name], rtol=0, atol=0, msg=name)
    steps = [json.loads(line)["step"] for line in (tmp_path / "split" / "train_log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    model = load_aligner(tmp_path / "full")
    assert model.config.encoder == TINY and model.config.frame_seconds == pytest.approx(0.02)


def test_resume_with_other_settings_is_refused(noise_corpus, tmp_path):
    from speechbraid.errors import ConfigError

    _train(noise_corpus, tmp_path / "run", 2)
    with pytest.raises(ConfigError, match="other settings"):
        _train(noise_corpus, tmp_path / "run", 4, resume=True, lr=1e-4)


def test_encoder_output_length_matches_the_frames_produced():
    for layers in (1, 2, 3):
        model = CTCAligner(AlignerConfig(encoder=TINY, subsample_layers=layers)).eval()
        feats = torch.randn(2, 101, 80)
        log_probs, lengths = model(feats, torch.tensor([101, 57]))
        assert log_probs.shape[1] == lengths[0] == AlignerConfig(subsample_layers=layers).output_frames(101)
        assert int(lengths[1]) == AlignerConfig(subsample_layers=layers).output_frames(57)


@pytest.fixture(autouse=True)
def one_thread():
    """Torch on one thread: on a shared 2-core machine two threads make these tiny models ~10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_aligner(tmp_path):
    torch.manual_seed(0)
    out = tmp_path / "aligner"
    save_aligner(CTCAligner(AlignerConfig(encoder=TINY)), out)
    return out


def _manifest_with_bad_lines(noise_corpus, tmp_path):
    records = [json.loads(line) for line in noise_corpus.read_text().splitlines()]
    for r in records:
        r["audio"] = str(noise_corpus.parent / r["audio"])
        del r["words"]  # data without alignments, as the command is for
    write_wav(tmp_path / "short.wav", np.zeros(8000, dtype=np.float32), 16000)
    records += [
        {"id": "text-only", "text": "no audio here"},
        {"id": "empty", "text": "  ", "audio": str(tmp_path / "short.wav"), "sample_rate": 16000, "duration": 0.5},
        {"id": "too-long", "text": "word " * 40, "audio": str(tmp_path / "short.wav"), "sample_rate": 16000,
         "duration": 0.5},
    ]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + "{not json\n", encoding="utf-8")
    return path, records


def test_align_run_excludes_low_confidence_and_failed_utterances(noise_corpus, tiny_aligner, tmp_path):
    manifest, records = _manifest_with_bad_lines(noise_corpus, tmp_path)
    model = load_aligner(tiny_aligner)
    confidences = {r.id: align_record(model, r)[1] for r in list(read_manifest(noise_corpus))}
    lowest = min(confidences, key=confidences.get)
    threshold = (confidences[lowest] + sorted(confidences.values())[1]) / 2  # only the lowest falls below

    report = align_manifest(manifest, tiny_aligner, tmp_path / "out.jsonl", min_confidence=threshold,
                            min_word_score=0.0, rejects=tmp_path / "rejects.jsonl", progress=False)
    out = list(read_manifest(tmp_path / "out.jsonl"))
    assert report.aligned == 5 and sorted(r.id for r in out) == sorted(set(confidences) - {lowest})
    for record in out:
        assert [w.word for w in record.words] == record.text.split()
        assert all(w.score is not None and 0 < w.score <= 1 for w in record.words)
        assert all(a.end <= b.start + 1e-9 for a, b in zip(record.words, record.words[1:], strict=False))
        assert record.words[-1].end <= record.duration
    lowest_line = 1 + [r["id"] for r in records].index(lowest)
    where = {r.id: r.where for r in report.rejected}
    assert where == {lowest: f"{manifest}:{lowest_line}", "text-only": f"{manifest}:7", "empty": f"{manifest}:8",
                     "too-long": f"{manifest}:9", None: f"{manifest}:10"}
    reasons = {r.id: r.reason for r in report.rejected}
    assert "below the minimum" in reasons[lowest] and "text-only" in reasons["text-only"]
    assert "empty text" in reasons["empty"] and "frames" in reasons["too-long"]
    assert "invalid record" in reasons[None]
    rejects = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rejects] == [r.id for r in report.rejected if r.id is not None]
    assert all(r["align_error"].startswith(str(manifest)) for r in rejects)


def test_a_badly_scoring_word_rejects_its_utterance(noise_corpus, tiny_aligner, tmp_path):
    model = load_aligner(tiny_aligner)
    worst = {r.id: min(w.score for w in align_record(model, r)[0]) for r in read_manifest(noise_corpus)}
    threshold = sorted(worst.values())[2]  # the three utterances with the lowest-scoring words fall below
    report = align_manifest(noise_corpus, tiny_aligner, tmp_path / "out.jsonl", min_confidence=0.0,
                            min_word_score=threshold + 1e-9, progress=False)
    assert report.aligned == 3
    assert sorted(r.id for r in report.rejected) == sorted(sorted(worst, key=worst.get)[:3])
    assert all("below the minimum word score" in r.reason for r in report.rejected)


def test_cli_align_run_and_score(noise_corpus, tiny_aligner, tmp_path, capsys, monkeypatch):
    out = tmp_path / "aligned.jsonl"
    monkeypatch.chdir(noise_corpus.parent.parent)  # a manifest path relative to the working directory
    relative = f"{noise_corpus.parent.name}/{noise_corpus.name}"
    assert main(["align", "run", "--model", str(tiny_aligner), "--manifest", relative, "--out", str(out),
                 "--min-confidence", "0", "--min-word-score", "0", "--quiet", "--threads", "1"]) == 0
    assert "aligned 6 utterance(s)" in capsys.readouterr().err
    assert all(Path(r.audio).is_file() for r in read_manifest(out)), "audio paths must survive the move"
    assert main(["align", "score", "--manifest", str(out), "--reference", str(noise_corpus), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["utterances"] == 6 and stats["words"] == sum(len(r.text.split()) for r in read_manifest(noise_corpus))
    wide = tmp_path / "wide.jsonl"
    assert main(["align", "run", "--model", str(tiny_aligner), "--manifest", str(noise_corpus), "--out", str(wide),
                 "--min-confidence", "0", "--min-word-score", "0", "--quiet", "--into-blanks"]) == 0
    for tight, loose in zip(read_manifest(out), read_manifest(wide), strict=True):
        assert tight.words[0].start == loose.words[0].start and tight.words[-1].end == loose.words[-1].end
        assert all(b.start <= a.start and a.end <= b.end for a, b in zip(tight.words, loose.words, strict=True))
        assert any(a != b for a, b in zip(tight.words, loose.words, strict=True))


def test_cli_train(noise_corpus, tmp_path, capsys):
    out = tmp_path / "model"
    args = ["align", "train", "--manifest", str(noise_corpus), "--out", str(out), "--steps", "2", "--batch-size", "3",
            "--d-model", "16", "--layers", "1", "--subsample", "2", "--quiet"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["frame_ms"] == 40
    assert load_aligner(out).config.frame_seconds == pytest.approx(0.04)
    first_two = (out / "train_log.jsonl").read_text().splitlines()
    assert main(args[:6] + ["--steps", "3"] + args[8:]) == 0  # resumes from step 2: steps 1-2 are not re-run
    log = (out / "train_log.jsonl").read_text().splitlines()
    assert log[:2] == first_two and json.loads(log[2])["step"] == 3 and len(log) == 3


def test_cli_errors(noise_corpus, tiny_aligner, tmp_path, capsys):
    assert main(["align", "run", "--model", str(tmp_path), "--manifest", str(noise_corpus),
                 "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "aligner.json missing" in capsys.readouterr().err
    assert main(["align", "run", "--model", str(tiny_aligner), "--manifest", str(tmp_path / "nope.jsonl"),
                 "--out", str(tmp_path / "o.jsonl"), "--quiet"]) == 2
    assert "manifest not found" in capsys.readouterr().err
    assert main(["align", "run", "--model", str(tiny_aligner), "--manifest", str(noise_corpus),
                 "--out", str(tmp_path / "o.jsonl"), "--min-confidence", "2"]) == 2
    assert "min_confidence" in capsys.readouterr().err
    unaligned = tmp_path / "unaligned.jsonl"
    unaligned.write_text(json.dumps({"id": "u", "text": "hi"}) + "\n")
    assert main(["align", "score", "--manifest", str(unaligned), "--reference", str(noise_corpus)]) == 2
    assert f"{unaligned}:1: record 'u' has no word alignment" in capsys.readouterr().err
    assert main(["align", "train", "--manifest", str(noise_corpus), "--out", str(tmp_path / "m"), "--steps", "0"]) == 2
    assert "steps and batch_size must be positive" in capsys.readouterr().err

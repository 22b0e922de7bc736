"""Transcription and evaluation with a tiny trained speech LLM: inputs, batching order, beam, CLI, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speechbraid.cli.main import main
from speechbraid.data.audio import audio_info
from speechbraid.errors import CheckpointError, ConfigError, InputError
from speechbraid.inference.transcribe import (
    SPEECH_LLM_FILE,
    collect_inputs,
    evaluate_model,
    load_transcriber,
)
from speechbraid.models.build import CONFIG_FILE, ModelConfig
from speechbraid.models.encoders import ConformerConfig
from speechbraid.training.data import SourceConfig
from speechbraid.training.trainer import DataConfig, StageConfig, TrainConfig, train

MAX_NEW = 10


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_llm_dir, noise_corpus) -> Path:
    """A tiny speech LLM after a few ASR steps: enough that it stops at EOS and its outputs depend on the audio."""
    config = TrainConfig(
        model=ModelConfig(llm=str(tiny_llm_dir), conformer=ConformerConfig(d_model=16, n_layers=1, n_heads=2)),
        data=DataConfig(train=[SourceConfig(str(noise_corpus), "asr", weight=1.0)], max_len=96, rows=2),
        stages=[StageConfig("full", 40, 3e-3)], ckpt_every=1000, tensorboard=False, device="cpu",
    )
    out = tmp_path_factory.mktemp("speech_llm")
    train(config, out, progress=False)
    return out / "model"


@pytest.fixture(scope="module")
def transcriber(model_dir):
    return load_transcriber(model_dir, device="cpu")


@pytest.fixture
def mixed_manifest(tmp_path, noise_corpus) -> Path:
    """Two utterances with audio around a text-only record."""
    records = [json.loads(line) for line in noise_corpus.read_text().splitlines()]
    lines = [
        {**records[0], "audio": str(noise_corpus.parent / records[0]["audio"])},
        {"id": "text-only", "text": "No audio here."},
        {**records[1], "audio": str(noise_corpus.parent / records[1]["audio"])},
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def test_collect_inputs_reads_files_and_manifests_and_reports_text_only(tmp_path, noise_corpus, mixed_manifest):
    sf.write(tmp_path / "clip.flac", np.zeros(4000, dtype=np.float32), 8000)  # any soundfile format and rate
    skipped: list[str] = []
    items = collect_inputs([tmp_path / "clip.flac", mixed_manifest], skipped)
    assert [i.id for i in items] == ["clip", "u0", "u1"]
    assert items[0].duration == pytest.approx(0.5)
    assert items[1].duration == pytest.approx(audio_info(noise_corpus.parent / "u0.wav")[1])
    assert items[2].where == f"{mixed_manifest}:3"
    assert skipped == [f"{mixed_manifest}:2 [text-only]"]
    with pytest.warns(UserWarning, match=r"skipped 1 text-only record\(s\) .*mixed.jsonl:2 \[text-only\]"):
        collect_inputs([mixed_manifest])


def test_bad_inputs_name_the_file_and_line(tmp_path, noise_corpus):
    with pytest.raises(InputError, match=r"missing.wav: audio file not found"):
        collect_inputs([tmp_path / "missing.wav"])
    (tmp_path / "junk.wav").write_bytes(b"not audio at all")
    with pytest.raises(InputError, match=r"junk.wav: unreadable audio"):
        collect_inputs([tmp_path / "junk.wav"])
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "a", "text": "x", "audio": str(noise_corpus.parent / "u0.wav")}) + "\n"
                        + json.dumps({"id": "b", "text": "y", "audio": "gone.wav"}) + "\n")
    with pytest.raises(InputError, match=r"m.jsonl:2: audio file not found: .*gone.wav"):
        collect_inputs([manifest])
    with pytest.raises(InputError, match=r"is a directory; pass audio files"):
        collect_inputs([tmp_path])
    with pytest.raises(InputError, match=r"utterance id 'u0' appears twice"):
        collect_inputs([noise_corpus.parent / "u0.wav", noise_corpus])


def test_batched_results_equal_one_by_one_in_input_order(transcriber, noise_corpus):
    items = collect_inputs([noise_corpus])
    run = transcriber.transcribe(items, batch_size=4, max_new_tokens=MAX_NEW, progress=False)
    alone = [transcriber.transcribe([item], batch_size=1, max_new_tokens=MAX_NEW, progress=False).texts[0]
             for item in items]
    assert run.texts == alone
    backwards = transcriber.transcribe(items[::-1], batch_size=3, max_new_tokens=MAX_NEW, progress=False)
    assert backwards.texts == alone[::-1]
    assert run.audio_seconds == pytest.approx(sum(i.duration for i in items))
    assert run.wall_seconds > 0 and run.rtf == pytest.approx(run.wall_seconds / run.audio_seconds)


def test_decoding_precision_is_chosen_and_checked(model_dir, noise_corpus, monkeypatch):
    import speechbraid.device as device

    item = collect_inputs([noise_corpus])[:1]
    fp32 = load_transcriber(model_dir, device="cpu", precision="fp32")
    assert fp32.amp is None and load_transcriber(model_dir, device="cpu", precision="bf16").amp is torch.bfloat16
    monkeypatch.setattr(device, "native_bf16", lambda dev: False)  # auto follows the hardware
    assert load_transcriber(model_dir, device="cpu").amp is None
    assert load_transcriber(model_dir, device="cpu").transcribe(item, max_new_tokens=MAX_NEW, progress=False).texts \
        == fp32.transcribe(item, max_new_tokens=MAX_NEW, progress=False).texts
    monkeypatch.setattr(device, "native_bf16", lambda dev: True)
    assert load_transcriber(model_dir, device="cpu").amp is torch.bfloat16
    with pytest.raises(ConfigError, match="unknown precision 'fp8'"):
        load_transcriber(model_dir, device="cpu", precision="fp8")


def test_batches_are_sorted_by_duration_and_texts_return_to_input_order(transcriber, noise_corpus, monkeypatch):
    """A decoder that answers each prompt with its utterance id shows where every transcript lands."""
    from speechbraid.inference import decode

    batches: list[list[float]] = []

    def echo_ids(model, prompts, features, config, scorers=None):
        batches.append([p.duration for p in prompts])
        return [decode.GenerationResult(tuple(transcriber.tokenizer.encode(p.id)), 0.0, 0.0, 1, "stop")
                for p in prompts]

    monkeypatch.setattr(decode, "generate", echo_ids)
    items = collect_inputs([noise_corpus])
    shuffled = [items[i] for i in (3, 0, 5, 1, 4, 2)]
    assert len({i.duration for i in items}) > 2  # the durations differ, so sorting reorders
    run = transcriber.transcribe(shuffled, batch_size=2, progress=False)
    assert run.texts == [item.id for item in shuffled]
    flat = [d for batch in batches for d in batch]
    assert [len(b) for b in batches] == [2, 2, 2] and flat == sorted(i.duration for i in items)


def test_beam_search_and_context_run_and_batch_consistently(transcriber, noise_corpus):
    items = collect_inputs([noise_corpus])[:3]
    beam = transcriber.transcribe(items, batch_size=3, beam_size=3, max_new_tokens=MAX_NEW, progress=False)
    alone = [transcriber.transcribe([i], beam_size=3, max_new_tokens=MAX_NEW, progress=False).texts[0] for i in items]
    assert beam.texts == alone and all(isinstance(t, str) for t in beam.texts)
    with_context = transcriber.transcribe(items, context="Medical notes.", max_new_tokens=MAX_NEW, progress=False)
    assert len(with_context.texts) == 3
    with pytest.raises(ConfigError, match="beam size must be >= 1"):
        transcriber.transcribe(items, beam_size=0)


def test_transcribe_cli_tsv_and_json_accepted_by_score(model_dir, noise_corpus, tmp_path, capsys):
    assert main(["transcribe", "--model", str(model_dir), str(noise_corpus.parent / "u2.wav"),
                 str(noise_corpus.parent / "u0.wav"), "--max-new-tokens", str(MAX_NEW), "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(noise_corpus.parent / n) for n in ("u2.wav", "u0.wav")]
    assert "RTF" in err and "transcribe" in err

    hyps = tmp_path / "hyps.jsonl"
    assert main(["transcribe", "--model", str(model_dir), str(noise_corpus), "--json", "--out", str(hyps),
                 "--beam", "2", "--batch-size", "4", "--max-new-tokens", str(MAX_NEW)]) == 0
    records = [json.loads(line) for line in hyps.read_text().splitlines()]
    assert [r["id"] for r in records] == [f"u{i}" for i in range(6)]
    assert all(set(r) == {"id", "audio", "text"} for r in records)
    capsys.readouterr()
    assert main(["score", "--ref", str(noise_corpus), "--hyp", str(hyps), "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["overall"]["utterances"] == 6 and scored["missing_hypotheses"]["count"] == 0


def test_evaluate_matches_score_on_its_own_hypotheses(model_dir, transcriber, mixed_manifest, tmp_path, capsys):
    hyps = tmp_path / "hyps.jsonl"
    assert main(["evaluate", "--model", str(model_dir), "--manifest", str(mixed_manifest), "--json",
                 "--out", str(hyps), "--max-new-tokens", str(MAX_NEW)]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert result["n"] == 2 and result["skipped_text_only"] == 1 and "skipped 1 text-only" in err
    assert result["model"] == str(model_dir) and result["manifest"] == str(mixed_manifest) and result["rtf"] > 0
    # scoring the written hypotheses with `speechbraid score` against the records with audio gives the same numbers
    with_audio = tmp_path / "with_audio.jsonl"
    with_audio.write_text("".join(line + "\n" for line in mixed_manifest.read_text().splitlines() if '"audio"' in line))
    assert main(["score", "--ref", str(with_audio), "--hyp", str(hyps), "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    for key in ("wer", "ter", "eer", "wer_counts", "ter_counts"):
        assert result["overall"][key] == scored["overall"][key]
    # the API with an already loaded model, and the text report
    api = evaluate_model(transcriber, mixed_manifest, max_new_tokens=MAX_NEW, progress=False, skipped=[])
    assert api["overall"] == result["overall"]
    assert main(["evaluate", "--model", str(model_dir), "--manifest", str(mixed_manifest),
                 "--max-new-tokens", str(MAX_NEW)]) == 0
    report = capsys.readouterr().out
    assert "WER %" in report and "EER %" in report and "RTF" in report


def test_model_kind_errors(tmp_path, tiny_llm_dir):
    assert SPEECH_LLM_FILE == CONFIG_FILE  # the marker load_transcriber looks for is the file save_speech_llm writes
    with pytest.raises(CheckpointError, match=r"found a Hugging Face config.json with model_type 'llama'"):
        load_transcriber(tiny_llm_dir)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match=r"expected speechbraid.json .* or a Hugging Face Whisper checkpoint"):
        load_transcriber(tmp_path)


@pytest.mark.parametrize("case", ["missing-file", "junk-audio", "unknown-model", "not-a-model", "bad-device"])
def test_cli_errors_exit_2_without_traceback(case, tmp_path, monkeypatch, noise_corpus, model_dir, capsys):
    monkeypatch.setenv("SPEECHBRAID_HOME", str(tmp_path / "home"))
    wav, model, extra = str(noise_corpus.parent / "u0.wav"), str(model_dir), []
    expected = {
        "missing-file": "nope.wav: audio file not found",
        "junk-audio": "junk.wav: unreadable audio",
        "unknown-model": "unknown model 'no-such-model'",
        "not-a-model": "not a model speechbraid can transcribe with",
        "bad-device": "invalid device 'warp-drive'",
    }[case]
    if case == "missing-file":
        wav = str(tmp_path / "nope.wav")
    elif case == "junk-audio":
        (tmp_path / "junk.wav").write_bytes(b"RIFF garbage")
        wav = str(tmp_path / "junk.wav")
    elif case == "unknown-model":
        model = "no-such-model"
    elif case == "not-a-model":
        model = str(tmp_path)
    else:
        extra = ["--device", "warp-drive"]
    assert main(["transcribe", "--model", model, wav, *extra]) == 2
    err = capsys.readouterr().err
    assert "speechbraid transcribe: error:" in err and expected in err and "Traceback" not in err


def test_interrupted_transcription_resumes_from_partial_file(model_dir, transcriber, noise_corpus, tmp_path,
                                                             monkeypatch, capsys):
    from speechbraid.inference import decode

    items = collect_inputs([noise_corpus])
    expected = transcriber.transcribe(items, batch_size=2, max_new_tokens=MAX_NEW, progress=False).texts
    out = tmp_path / "hyps.jsonl"
    command = ["transcribe", "--model", str(model_dir), str(noise_corpus), "--json", "--out", str(out),
               "--batch-size", "2", "--max-new-tokens", str(MAX_NEW)]
    real_generate, calls = decode.generate, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(decode, "generate", interrupted)
    assert main(command) == 130
    partial = tmp_path / "hyps.jsonl.partial"
    assert not out.exists() and len(partial.read_text().splitlines()) == 2
    # a crash mid-write leaves a cut-off line; a saved transcript is reused, not recomputed
    saved = [json.loads(line) for line in partial.read_text().splitlines()]
    saved[0]["text"] = "SAVED"
    partial.write_text("".join(json.dumps(x) + "\n" for x in saved) + '{"id": "u')
    monkeypatch.setattr(decode, "generate", real_generate)
    capsys.readouterr()
    assert main(command) == 0
    assert "resumed: 2 of 6" in capsys.readouterr().err
    texts = {r["id"]: r["text"] for r in map(json.loads, out.read_text().splitlines())}
    assert texts.pop(saved[0]["id"]) == "SAVED"
    assert all(texts[item.id] == text for item, text in zip(items, expected, strict=True) if item.id in texts)
    assert not partial.exists()

    partial.write_text(json.dumps({"id": "other", "audio": "x.wav", "text": ""}) + "\n")
    assert main(command) == 2
    assert "hyps.jsonl.partial:1: saved transcript of 'other'" in capsys.readouterr().err

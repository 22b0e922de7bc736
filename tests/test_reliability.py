"""Regression tests for issue #10's defects, in process (tests/test_reliability_cli.py runs them as a user does)."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from speechbraid.data.audio import audio_info, load_audio, write_wav
from speechbraid.data.manifest import iter_manifest
from speechbraid.data.records import WordAlignment
from speechbraid.data.validate import validate_manifest
from speechbraid.errors import CheckpointError, ConfigError, InputError, ManifestError
from speechbraid.inference.longform import plan_segments, stitch
from speechbraid.metrics.asr import read_hypotheses
from speechbraid.synth.base import SynthesisError, SynthResult, check_words_cover_speech
from speechbraid.training.checkpoint import latest_checkpoint, prepare_run_dir, save_checkpoint

RATE = 16000


def _bursts(seconds: float, bursts: list[tuple[float, float]], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    samples = np.zeros(int(seconds * RATE), dtype=np.float32)
    for a, b in bursts:
        samples[int(a * RATE):int(b * RATE)] = 0.3 * rng.standard_normal(int(b * RATE) - int(a * RATE))
    return samples


@pytest.fixture
def clip(tmp_path) -> Path:
    write_wav(tmp_path / "clip.wav", _bursts(1.0, [(0.1, 0.9)]), RATE)
    return tmp_path / "clip.wav"


def _record(utt_id: str, text: str = "take aspirin", **extra) -> dict:
    return {"id": utt_id, "text": text, "audio": "clip.wav", "sample_rate": RATE, "duration": 1.0, **extra}


# --- non-UTF-8 bytes ---------------------------------------------------------------------------------------------


def _latin1_manifest(tmp_path: Path) -> Path:
    path = tmp_path / "m.jsonl"
    path.write_bytes(json.dumps(_record("a")).encode() + b"\n" + b'{"id": "b", "text": "caf\xe9"}\n'
                     + json.dumps(_record("c", text="")).encode() + b"\n")
    return path


def test_non_utf8_manifest_line_names_file_line_and_byte(tmp_path, clip):
    path = _latin1_manifest(tmp_path)
    with pytest.raises(ManifestError, match=r"m.jsonl:2: not valid UTF-8: byte 0xe9 at byte 25 of the line"):
        list(iter_manifest(path))
    errors: list[ManifestError] = []
    assert [item.record.id for item in iter_manifest(path, errors)] == ["a", "c"]  # one bad line costs one line
    assert [e.line for e in errors] == [2]


def test_validate_skip_reports_the_bad_byte_and_every_other_defect(tmp_path, clip):
    path = _latin1_manifest(tmp_path)
    report = validate_manifest(path, policy="skip", output=tmp_path / "clean.jsonl")
    assert sorted((p.line, p.code) for p in report.problems) == [(2, "invalid_record"), (3, "empty_text")]
    assert report.records_written == 1
    assert [json.loads(line)["id"] for line in (tmp_path / "clean.jsonl").read_text().splitlines()] == ["a"]


def test_non_utf8_hypothesis_file_names_file_and_line(tmp_path):
    path = tmp_path / "hyp.tsv"
    path.write_bytes(b"a\tok\nb\tcaf\xe9\n")
    with pytest.raises(InputError, match=r"hyp.tsv:2: not valid UTF-8: byte 0xe9"):
        read_hypotheses(path)


# --- empty manifest, truncated WAV -------------------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"\n  \n"])
def test_empty_manifest_is_an_error_not_ok(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    with pytest.raises(InputError, match="empty.jsonl: the manifest is empty"):
        validate_manifest(path, policy="skip", output=tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()


def test_wav_shorter_than_its_header_is_an_error(tmp_path, clip):
    assert audio_info(clip) == (RATE, 1.0)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(clip.read_bytes()[:16044])  # header (44 bytes) + 0.5 s of PCM-16
    with pytest.raises(InputError, match=r"cut.wav: truncated audio: the WAV header declares 1.000 s but the file "
                                         r"holds only 0.500 s"):
        audio_info(cut)
    with pytest.raises(InputError, match="truncated audio"):
        load_audio(cut)
    (tmp_path / "m.jsonl").write_text(json.dumps(_record("a", audio="cut.wav")) + "\n")
    report = validate_manifest(tmp_path / "m.jsonl")
    assert [p.code for p in report.problems] == ["unreadable_audio"] and "truncated audio" in report.problems[0].message


# --- squeezed word times -----------------------------------------------------------------------------------------


def test_validate_flags_word_times_far_before_the_speech_ends(tmp_path):
    write_wav(tmp_path / "speech.wav", _bursts(5.0, [(0.1, 4.8)]), RATE)
    write_wav(tmp_path / "pause.wav", _bursts(5.0, [(0.1, 1.4)]), RATE)  # a long silence after the words: fine
    words = [{"word": "take", "start": 0.1, "end": 0.6}, {"word": "aspirin", "start": 0.6, "end": 1.4}]
    lines = [_record("squeezed", audio="speech.wav", duration=5.0, words=words),
             _record("pause", audio="pause.wav", duration=5.0, words=words)]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    report = validate_manifest(tmp_path / "m.jsonl")
    assert [(p.utterance_id, p.code) for p in report.problems] == [("squeezed", "speech_after_last_word")]


def test_synthesis_whose_word_times_stop_before_the_speech_is_refused():
    samples = _bursts(6.0, [(0.1, 5.8)])
    squeezed = SynthResult(samples, RATE, [WordAlignment("Принимайте", 0.0, 0.4), WordAlignment("аспирин", 0.4, 1.0)])
    with pytest.raises(SynthesisError, match="unsupported language/script for word alignment"):
        check_words_cover_speech(squeezed, "Принимайте аспирин")
    check_words_cover_speech(SynthResult(samples, RATE, [WordAlignment("a", 0.0, 5.8)]), "a")


# --- run directories ---------------------------------------------------------------------------------------------


def test_checkpoint_pruning_keeps_the_new_checkpoint_beside_an_older_runs_later_one(tmp_path):
    root = tmp_path / "checkpoints"
    model = torch.nn.Linear(2, 2)
    save_checkpoint(root, 500, model, {"step": 500})  # an earlier run that went further
    save_checkpoint(root, 2, model, {"step": 2})  # the new run: used to be deleted by name-order pruning
    assert latest_checkpoint(root) == root / "step-00000002"
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["step-00000002"]
    save_checkpoint(root, 3, model, {"step": 3}, keep=2)
    save_checkpoint(root, 4, model, {"step": 4}, keep=2)
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["step-00000003", "step-00000004"]


def test_run_directory_is_never_replaced_without_being_told(tmp_path):
    run = tmp_path / "run"
    prepare_run_dir(run, resume=False, overwrite=False)  # absent: fine
    run.mkdir()
    prepare_run_dir(run, resume=False, overwrite=False)  # empty: fine
    (run / "config.yaml").write_text("seed: 0\n")
    with pytest.raises(InputError, match=r"run: run directory is not empty; pass --resume .* or --overwrite"):
        prepare_run_dir(run, resume=False, overwrite=False)
    prepare_run_dir(run, resume=True, overwrite=False)
    assert (run / "config.yaml").exists()
    with pytest.raises(ConfigError, match="pass one of them"):
        prepare_run_dir(run, resume=True, overwrite=True)
    prepare_run_dir(run, resume=False, overwrite=True)
    assert not run.exists()
    other = tmp_path / "notes"
    other.mkdir()
    (other / "a.txt").write_text("keep")
    with pytest.raises(InputError, match="not a training run"):
        prepare_run_dir(other, resume=False, overwrite=True)
    assert (other / "a.txt").read_text() == "keep"


# --- damaged LLM weights -----------------------------------------------------------------------------------------


def test_damaged_llm_weights_are_a_checkpoint_error_naming_the_file(tmp_path, tiny_llm_dir):
    from speechbraid.models.build import ModelConfig, build_speech_llm

    llm = tmp_path / "llm"
    shutil.copytree(tiny_llm_dir, llm)
    weights = llm / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"llm/model.safetensors: cannot load the causal LM: .*header"):
        build_speech_llm(ModelConfig(llm=str(llm)))
    weights.unlink()
    (llm / "pytorch_model.bin").write_bytes(pickle.dumps({"not": "tensors"}))
    with pytest.raises(CheckpointError, match=r"pytorch_model.bin: cannot load the causal LM: the weights are a "
                                              r"pickle") as caught:
        build_speech_llm(ModelConfig(llm=str(llm)))
    assert "weights_only" not in str(caught.value)  # the loader's advice to run the pickle's code is not passed on


# --- long-form transcription -------------------------------------------------------------------------------------


def test_plan_segments_cuts_long_audio_in_pauses():
    bursts = [(t, t + 2.2) for t in np.arange(0.3, 69.0, 2.7)]  # 2.2 s "sentences", 0.5 s pauses
    samples = _bursts(70.0, bursts)
    pieces = plan_segments(samples, RATE, 20.0)
    assert pieces[0][0] == 0 and pieces[-1][1] == len(samples)
    assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:], strict=False))  # contiguous, in order
    assert all(0 < b - a <= 20.0 * RATE for a, b in pieces)
    for cut in (b for _, b in pieces[:-1]):
        assert not any(a * RATE < cut < b * RATE for a, b in bursts), cut / RATE  # never inside a "sentence"
    assert plan_segments(samples[: 5 * RATE], RATE, 20.0) == [(0, 5 * RATE)]
    noise = _bursts(45.0, [(0.0, 45.0)])  # no pause at all: still pieces the model accepts
    assert all(b - a <= 20.0 * RATE for a, b in plan_segments(noise, RATE, 20.0))
    assert stitch(["take aspirin", " ", "twice daily "]) == "take aspirin twice daily"


@pytest.fixture(scope="module")
def whisper_encoder_transcriber(tmp_path_factory, tiny_llm_dir):
    from speechbraid.inference.transcribe import load_transcriber
    from test_reliability_cli import make_whisper_speech_llm

    model = make_whisper_speech_llm(tmp_path_factory.mktemp("whisper_slm"), tiny_llm_dir)
    return load_transcriber(model, device="cpu")


def test_audio_longer_than_the_encoder_takes_is_cut_transcribed_and_stitched(tmp_path, whisper_encoder_transcriber,
                                                                             one_torch_thread):
    from speechbraid.inference.transcribe import collect_inputs

    write_wav(tmp_path / "long.wav", _bursts(70.0, [(t, t + 2.5) for t in np.arange(0.5, 69.0, 3.0)]), RATE)
    write_wav(tmp_path / "short.wav", _bursts(2.0, [(0.2, 1.8)]), RATE)
    items = collect_inputs([tmp_path / "long.wav", tmp_path / "short.wav"])
    finished: dict[int, str] = {}

    def on_batch(indices, texts):
        finished.update(zip(indices, texts, strict=True))

    run = whisper_encoder_transcriber.transcribe(items, max_new_tokens=2, progress=False, on_batch=on_batch)
    long_pieces = run.segments[0]
    assert len(long_pieces) == 3 and long_pieces[0][0] == 0.0 and long_pieces[-1][1] == pytest.approx(70.0)
    assert all(end - start <= 30.0 for start, end, _ in long_pieces)
    assert run.texts[0] == stitch([text for _, _, text in long_pieces])
    assert finished == {0: run.texts[0], 1: run.texts[1]}  # one final transcript per input, not per piece
    assert run.audio_seconds == pytest.approx(72.0)


def test_speech_llm_context_limit_is_checked(whisper_encoder_transcriber):
    transcriber = whisper_encoder_transcriber
    assert transcriber.max_segment_seconds(None, None) == 30.0  # the encoder's limit (the LLM would take 30.6 s)
    with pytest.raises(ConfigError, match=r"takes 512 positions; 500 new tokens .* leave room for 0.\d s of speech"):
        transcriber.max_segment_seconds(500, None)


def test_clip_shorter_than_a_word_is_not_transcribed(tmp_path, whisper_encoder_transcriber):
    from speechbraid.inference.transcribe import collect_inputs

    write_wav(tmp_path / "blip.wav", _bursts(0.05, [(0.0, 0.05)]), RATE)
    run = whisper_encoder_transcriber.transcribe(collect_inputs([tmp_path / "blip.wav"]), progress=False)
    assert run.texts == [""]
    assert len(run.warnings) == 1 and "blip.wav: 0.050 s of audio is shorter than the 0.1 s minimum" in run.warnings[0]

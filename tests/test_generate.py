"""Generation metrics on hand-made generations, ``speechbraid generate`` on a tiny trained model (WAV length,
streaming), generate-and-score with a fake judge, and the structure of ``bench decode``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from speechbraid.cli.main import main
from speechbraid.data.audio import audio_info, load_audio, write_wav
from speechbraid.data.questions import SpokenQA, SQAQuestion, write_spoken_qa
from speechbraid.evaluation.generation import generate_and_score, generation_prompt, score_generations
from speechbraid.inference.patterns import generate_response
from speechbraid.inference.settings import PatternDecodeConfig
from speechbraid.layouts.tokenizer import HFTextTokenizer
from speechbraid.models.build import load_speech_llm
from speechbraid.patterns import get_pattern
from speechbraid.units.vocoder import UnitToMel, UnitVocoder, VocoderConfig

N_UNITS = 12
QUESTIONS = [SQAQuestion("q0", "antonym", "What is the opposite of hot?", ("cold",)),
             SQAQuestion("q1", "arithmetic", "What is ten plus four?", ("fourteen", "14")),
             SQAQuestion("q2", "calendar", "What day comes after Monday?", ("Tuesday",))]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class ScriptedJudge:
    """Returns prepared transcripts in call order (what a judge would hear in the generated WAVs)."""

    def __init__(self, texts):
        self.texts, self.paths = list(texts), []

    def transcribe(self, wav_paths, batch_size=8, on_batch=None):
        self.paths += [str(p) for p in wav_paths]
        return self.texts[: len(wav_paths)]


def test_score_generations_by_hand():
    texts = ["The opposite of hot is cold.", "Ten plus four is fourteen.", "The day after Monday is Sunday."]
    heard = ["the opposite of hot is gold", "10 plus 4 is 14.", "The day after Monday is Sunday."]
    scores = score_generations(QUESTIONS, texts, heard)
    assert scores["text_correct"] == [True, True, False]
    assert scores["speech_correct"] == [False, True, False]  # "14" is an accepted alias
    assert scores["text_accuracy"] == pytest.approx(2 / 3) and scores["speech_accuracy"] == pytest.approx(1 / 3)
    # alignment: the transcript against the MODEL's own text (not the reference answer): 1 error in 17 words
    assert scores["alignment_ref_words"] == 17 and scores["alignment_wer"] == pytest.approx(1 / 17)
    with pytest.raises(ValueError, match="as many"):
        score_generations(QUESTIONS, texts[:2], heard)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory, tiny_llm_dir):
    """A tiny ESI model (no speech head) and a parallel one, each trained a few steps on two QA pairs whose
    answers have noise audio and made-up units; and a tiny untrained vocoder."""
    from speechbraid.config import load_config
    from speechbraid.configs import resolve_config
    from speechbraid.training.trainer import TrainConfig, train

    root = tmp_path_factory.mktemp("gen")
    rng = np.random.default_rng(0)
    pairs, lines = [], []
    for i, q in enumerate(QUESTIONS[:2]):
        for role in ("q", "a"):
            write_wav(root / f"{q.id}-{role}.wav", 0.1 * rng.standard_normal(16000).astype(np.float32), 16000)
            lines.append({"id": f"{q.id}-{role}", "text": q.question, "audio": f"{q.id}-{role}.wav", "duration": 1.0})
        pairs.append(SpokenQA(q.id, q.kind, "train", q.question, q.answers, f"It is {q.answers[0]}.",
                              str(root / f"{q.id}-q.wav"), 1.0, str(root / f"{q.id}-a.wav"), 1.0,
                              tuple(int(u) for u in rng.integers(0, N_UNITS, 25 + 5 * i))))
    qa = write_spoken_qa(pairs, root / "qa.jsonl")
    (root / "asr.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    models = {}
    for name in ("esi", "parallel"):
        overrides = [f"model.llm={tiny_llm_dir}", f"model.num_units={N_UNITS}",
                     f"model.speech_head={'true' if name == 'parallel' else 'false'}",
                     f"data.train=[{{manifest: '{root / 'asr.jsonl'}', layout: asr}}, "
                     f"{{manifest: '{qa}', layout: gen-{name}}}]",
                     "stages=[{name: full, steps: 3, lr: 1.0e-3}]", "tensorboard=false", "data.rows=2",
                     "model.conformer={d_model: 32, n_layers: 1, n_heads: 2}"]
        config = load_config(TrainConfig, resolve_config("asr_conformer"), overrides)
        train(config, root / name, progress=False)
        models[name] = root / name / "model"
    torch.manual_seed(0)
    vocoder_dir = UnitVocoder(UnitToMel(VocoderConfig(n_units=N_UNITS, d_model=16)), gl_iters=4).save(root / "voc")
    return models, vocoder_dir, qa, root


@pytest.mark.parametrize("name", ["esi", "parallel"])
def test_generate_cli_writes_the_response_speech(tiny_models, tmp_path, capsys, name):
    models, vocoder, _, root = tiny_models
    model, tokenizer, config = load_speech_llm(models[name])
    prompt = generation_prompt(SQAQuestion("prompt", "text", "What is the opposite of hot?", ("",)), "text",
                               HFTextTokenizer(tokenizer))
    expected = generate_response(model, [prompt], get_pattern(name), None, PatternDecodeConfig(max_steps=40))[0]
    assert expected.units  # the check below is about real audio

    wavs = {}
    for stream in (False, True):
        out = tmp_path / f"{name}-{stream}.wav"
        argv = ["generate", "--model", str(models[name]), "--vocoder", str(vocoder), "--pattern", name,
                "What is the opposite of hot?", "--out", str(out), "--max-steps", "40"]
        assert main(argv + (["--stream"] if stream else [])) == 0
        captured = capsys.readouterr()
        assert f"{len(expected.units)} units" in captured.err
        assert audio_info(out)[1] == pytest.approx(len(expected.units) / 25, abs=1e-3)  # 25 units per second
        wavs[stream] = load_audio(out)[0]
    assert len(wavs[True]) == len(wavs[False])
    # a spoken question (its audio through the encoder) works too; a second prompt is refused
    out = tmp_path / "spoken.wav"
    assert main(["generate", "--model", str(models[name]), "--vocoder", str(vocoder), "--pattern", name,
                 "--wav", str(root / "q0-q.wav"), "--out", str(out), "--max-steps", "20"]) == 0
    assert out.is_file()
    assert main(["generate", "--model", str(models[name]), "--vocoder", str(vocoder), "text",
                 "--wav", str(root / "q0-q.wav"), "--out", str(out)]) == 2


def test_parallel_pattern_needs_a_speech_head(tiny_models, tmp_path, capsys):
    models, vocoder, _, _ = tiny_models
    code = main(["generate", "--model", str(models["esi"]), "--vocoder", str(vocoder), "--pattern", "parallel",
                 "hi", "--out", str(tmp_path / "x.wav")])
    assert code == 2 and "speech head" in capsys.readouterr().err


def test_generate_and_score_with_fake_judge(tiny_models, tmp_path):
    models, vocoder_dir, _, _ = tiny_models
    model, tokenizer, _ = load_speech_llm(models["esi"])
    judge = ScriptedJudge(["the opposite of hot is cold", "ten plus four is fourteen"])
    result = generate_and_score(model, tokenizer, QUESTIONS[:2], get_pattern("esi"), UnitVocoder.load(vocoder_dir),
                                judge, tmp_path, config=PatternDecodeConfig(max_steps=30), batch_size=1)
    assert result["speech_accuracy"] == 1.0  # scored on what the judge heard
    assert [item["transcript"] for item in result["items"]] == judge.texts
    for item in result["items"]:
        assert audio_info(item["wav"])[1] == pytest.approx(item["units"] / 25 if item["units"] else 0.1, abs=1e-3)
        assert item["first_audio_s"] is None or item["first_audio_s"] > 0
    assert result["decode_wall_s"] > 0 and result["steps_mean"] > 0 and judge.paths == [i["wav"] for i in
                                                                                         result["items"]]


def test_bench_decode_structure(tiny_models, capsys):
    models, _, qa, _ = tiny_models
    from speechbraid.benchmarks.decode import bench_decode, format_decode

    result = bench_decode(models["esi"], ("interleaved", "esi", "parallel"), qa=qa, prompts=2, max_steps=16,
                          kv_steps=6, batch_sizes=(1, 2))
    assert result["skipped_patterns"] == ["parallel"]  # the ESI model has no speech head
    assert [r["pattern"] for r in result["patterns"]] == ["interleaved", "esi"]
    for row in result["patterns"]:
        assert row["responses"] == 2 and row["wall_s"] > 0 and row["steps_mean"] <= 16
    tf = result["teacher_forced"]
    assert set(tf["steps_mean"]) == {"interleaved", "esi", "parallel"}
    assert tf["ratios"]["esi/interleaved"] < 1 and set(tf["ratios"]) == {"esi/interleaved", "parallel/interleaved"}
    assert all(r["same_tokens"] and r["speedup"] > 0 for r in result["kv_cache"])
    assert [(r["pattern"], r["batch"]) for r in result["batched"]] == [
        ("interleaved", 1), ("interleaved", 2), ("esi", 1), ("esi", 2)]
    assert "Teacher-forced" in format_decode(result)
    assert main(["bench", "decode", "--model", str(models["parallel"]), "--qa", str(qa), "--max-steps", "8",
                 "--kv-steps", "5", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["skipped_patterns"] == [] and len(printed["patterns"]) == 3
    assert {r["max_steps"] for r in printed["kv_cache"]} == {5}


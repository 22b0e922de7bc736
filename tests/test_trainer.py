"""The speech-LLM trainer on tiny real models: stages, mixing, exact resume, save/load, DDP."""

import os
import subprocess
import sys

import pytest
import torch
import yaml

from speechbraid.braid.vocab import SPECIAL_TOKENS
from speechbraid.config import load_config
from speechbraid.data.manifest import read_manifest
from speechbraid.data.normalize import normalize_for_wer
from speechbraid.data.records import Utterance
from speechbraid.errors import CheckpointError, ConfigError
from speechbraid.inference.transcribe import GUIDES, audio_item, load_transcriber
from speechbraid.models.build import ModelConfig, build_speech_llm, load_causal_lm, load_speech_llm, set_trainable
from speechbraid.models.encoders import ConformerConfig
from speechbraid.training.data import SourceConfig
from speechbraid.training.runlog import read_train_log
from speechbraid.training.trainer import DataConfig, StageConfig, TrainConfig, Trainer, train


def tiny_config(llm_dir, manifest, steps=(2, 3)) -> TrainConfig:
    return TrainConfig(
        model=ModelConfig(llm=str(llm_dir), conformer=ConformerConfig(d_model=16, n_layers=1, n_heads=2)),
        data=DataConfig(train=[SourceConfig(str(manifest), "asr", weight=1.0),
                               SourceConfig(str(manifest), "word-il", weight=1.0),
                               SourceConfig(str(manifest), "text", weight=0.5)],
                        max_len=96, rows=2),
        stages=[StageConfig("adapter", steps[0], 1e-3, [r"^adapter\."]), StageConfig("full", steps[1], 1e-3)],
        ckpt_every=1, tensorboard=False, device="cpu",
    )


@pytest.mark.parametrize("bucket_window", [0, 5])  # 5: duration bucketing, resumed mid-window
def test_interrupted_and_resumed_run_matches_uninterrupted(tmp_path, tiny_llm_dir, noise_corpus, bucket_window):
    config = tiny_config(tiny_llm_dir, noise_corpus)
    config.data.bucket_window = bucket_window
    train(config, tmp_path / "full", progress=False)
    reference = [row["loss"] for row in read_train_log(tmp_path / "full")]
    assert len(reference) == 5

    # interrupted inside stage 2 (after step 3), then resumed
    train(config, tmp_path / "cut", progress=False, stop_after=3)
    assert len(read_train_log(tmp_path / "cut")) == 3
    assert not (tmp_path / "cut" / "model").exists()
    train(config, tmp_path / "cut", progress=False, resume=True)
    resumed = [row["loss"] for row in read_train_log(tmp_path / "cut")]
    assert resumed == pytest.approx(reference, abs=1e-6)

    model, tokenizer, model_config = load_speech_llm(tmp_path / "full" / "model")
    assert model_config.conformer.d_model == 16
    assert model.vocab.special_id("<|asr|>") == len(tokenizer) - len(SPECIAL_TOKENS)


def test_stage_one_trains_only_the_adapter(tmp_path, tiny_llm_dir, noise_corpus):
    trainer = Trainer(tiny_config(tiny_llm_dir, noise_corpus, steps=(2, 1)), tmp_path / "run")
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.fit(progress=False, stop_after=2)
    changed = {k for k, v in trainer.model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith("adapter.") for k in changed)
    log = read_train_log(tmp_path / "run")
    assert all(0 < row["fill"] <= 1 for row in log)


def test_regex_freezing_and_config_errors(tmp_path, tiny_llm_dir):
    model, _ = build_speech_llm(ModelConfig(llm=str(tiny_llm_dir), conformer=ConformerConfig(d_model=16, n_layers=1,
                                                                                             n_heads=2)))
    n = set_trainable(model, [r"^adapter\.", r"layers\.0\.self_attn"])
    assert n == sum(p.numel() for name, p in model.named_parameters()
                    if name.startswith("adapter.") or "layers.0.self_attn" in name)
    with pytest.raises(ConfigError, match="no parameter matches"):
        set_trainable(model, ["^nothing$"])
    with pytest.raises(ConfigError, match="unknown option 'data.maxlen'"):
        load_config(TrainConfig, None, ["data.maxlen=5"])
    with pytest.raises(ConfigError, match=r"model.adapter_masking: frame masking time_prob must be in \[0, 1\)"):
        load_config(TrainConfig, None, ["model.adapter_masking={time_prob: 1.5}"])
    masked = load_config(TrainConfig, None, ["model.adapter_masking={time_prob: 0.05}"]).model.adapter_masking
    assert (masked.time_prob, masked.time_span, masked.channel_prob) == (0.05, 10, 0.0)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("stages:\n  - {name: a, steps: 1, lr: 0.1, trainble: ['x']}\n")
    with pytest.raises(ConfigError, match=r"c.yaml: unknown option 'stages\[0\].trainble'"):
        load_config(TrainConfig, cfg)


def test_corrupt_checkpoint_gives_clear_error(tmp_path, tiny_llm_dir, noise_corpus):
    config = tiny_config(tiny_llm_dir, noise_corpus, steps=(1, 1))
    train(config, tmp_path / "run", progress=False, stop_after=1)
    ckpt_dir = next((tmp_path / "run" / "checkpoints").glob("step-*"))
    (ckpt_dir / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="model.safetensors: cannot load model weights"):
        train(config, tmp_path / "run", progress=False, resume=True)


DDP_SCRIPT = """
import sys, torch, torch.distributed as dist
sys.path.insert(0, {tests!r})
from test_trainer import tiny_config
from speechbraid.training.trainer import Trainer
trainer = Trainer(tiny_config({llm!r}, {manifest!r}, steps=(1, 2)), {out!r})
trainer.fit(progress=False)
flat = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
torch.save(flat, {out!r} + f"/params-rank{{dist.get_rank()}}.pt")
dist.destroy_process_group()
"""


def test_ddp_with_two_gloo_processes_keeps_ranks_in_sync(tmp_path, tiny_llm_dir, noise_corpus):
    out = tmp_path / "ddp"
    out.mkdir()
    script = tmp_path / "run_ddp.py"
    script.write_text(DDP_SCRIPT.format(tests=os.path.dirname(__file__), llm=str(tiny_llm_dir),
                                        manifest=str(noise_corpus), out=str(out)))
    # the checkout under test, not whatever an editable install points at (as pyproject's pytest pythonpath)
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": src}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                             "--standalone", str(script)], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (torch.load(out / f"params-rank{r}.pt") for r in (0, 1))
    assert torch.equal(rank0, rank1)  # gradients were averaged: both ranks took identical steps
    model, _, _ = load_speech_llm(out / "model")
    assert torch.equal(torch.cat([p.detach().flatten() for p in model.parameters()]), rank0)
    assert len(read_train_log(out)) == 3


def test_init_from_starts_a_run_from_saved_weights(tmp_path, tiny_llm_dir, noise_corpus):
    first = tiny_config(tiny_llm_dir, noise_corpus, steps=(1, 1))
    train(first, tmp_path / "stage1", progress=False)
    saved, _, _ = load_speech_llm(tmp_path / "stage1" / "model")
    second = tiny_config(tiny_llm_dir, noise_corpus, steps=(1, 1))
    second.init_from = str(tmp_path / "stage1" / "model")
    trainer = Trainer(second, tmp_path / "stage2")
    for name, tensor in saved.state_dict().items():
        assert torch.equal(trainer.model.state_dict()[name], tensor), name
    other = tiny_config(tiny_llm_dir, noise_corpus)
    other.model.conformer = ConformerConfig(d_model=32, n_layers=1, n_heads=2)
    other.init_from = second.init_from
    with pytest.raises(ConfigError, match="model config differs"):
        Trainer(other, tmp_path / "bad")


def test_lora_trains_adapters_and_saves_a_merged_plain_hf_llm(tmp_path, tiny_llm_dir, noise_corpus):
    from transformers import AutoModelForCausalLM

    from speechbraid.models.build import LoraSettings

    config = tiny_config(tiny_llm_dir, noise_corpus, steps=(1, 2))
    config.model.lora = LoraSettings(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"])
    config.stages[1].trainable = [r"^adapter\.", r"^encoder\.", "lora_"]
    train(config, tmp_path / "run", progress=False)
    original = AutoModelForCausalLM.from_pretrained(tiny_llm_dir).state_dict()
    model, _, saved_config = load_speech_llm(tmp_path / "run" / "model")
    saved = model.llm.state_dict()
    assert saved_config.lora is None and not any("lora_" in k for k in saved)
    # frozen base weights are untouched; LoRA targets carry the merged low-rank update
    assert all(torch.equal(saved[k], original[k]) for k in saved if ".mlp." in k or "k_proj" in k)
    assert all(not torch.equal(saved[k], original[k]) for k in saved if "q_proj.weight" in k)


def test_gradient_accumulation_draws_one_batch_per_micro_step(tmp_path, tiny_llm_dir, noise_corpus):
    config = tiny_config(tiny_llm_dir, noise_corpus, steps=(1, 1))
    config.grad_accum = 3
    trainer = Trainer(config, tmp_path / "run")
    drawn = []
    original = trainer.batcher.materialize
    trainer.batcher.materialize = lambda plan: drawn.append(1) or original(plan)
    trainer.fit(progress=False)
    assert len(drawn) == 6  # 2 steps x 3 micro-batches
    log = read_train_log(tmp_path / "run")
    assert all(row["target_tokens"] > 0 for row in log)


def test_encoder_cache_gives_the_encoders_own_outputs_while_frozen(tiny_llm_dir, noise_corpus):
    from speechbraid.batching import collate
    from speechbraid.models.build import set_trainable
    from speechbraid.training.trainer import FeatureCache

    trainer = Trainer(tiny_config(tiny_llm_dir, noise_corpus), "/nonexistent-run-dir")
    model = trainer.model.eval()
    set_trainable(model, [r"^adapter\."])
    batch = collate(trainer.batcher.next_batch(), FeatureCache(model_feature_config(trainer)))
    fresh = model.encode_speech(batch)
    model.encoder_cache = {}
    first = model.encode_speech(batch)  # fills the cache
    assert set(model.encoder_cache) == set(batch.audio)
    again = model.encode_speech(batch)  # served from the cache
    assert torch.allclose(first, fresh, atol=1e-6) and torch.allclose(again, fresh, atol=1e-6)


def test_runs_from_the_same_frozen_encoder_share_one_disk_store_and_training_it_detaches(tiny_llm_dir, noise_corpus):
    from speechbraid.batching import collate
    from speechbraid.models.build import set_trainable
    from speechbraid.models.encoder_store import EncoderOutputStore
    from speechbraid.training.trainer import FeatureCache

    first = Trainer(tiny_config(tiny_llm_dir, noise_corpus), "/nonexistent-run-dir")
    second = Trainer(tiny_config(tiny_llm_dir, noise_corpus), "/nonexistent-run-dir")  # same seed: same weights
    assert isinstance(first.model.encoder_cache, EncoderOutputStore)
    assert first.model.encoder_cache.directory == second.model.encoder_cache.directory
    other = tiny_config(tiny_llm_dir, noise_corpus)
    other.seed = 1
    assert Trainer(other, "/nonexistent-run-dir").model.encoder_cache.directory != first.model.encoder_cache.directory

    model = first.model.eval()
    set_trainable(model, [r"^adapter\."])
    batch = collate(first.batcher.next_batch(), FeatureCache(model_feature_config(first)))
    encoded = model.encode_speech(batch)
    shared = second.model.encoder_cache
    assert all(path in shared for path in batch.audio)  # written by the first run, read by the second
    second.model.eval()
    assert torch.allclose(second.model.encode_speech(batch), encoded, atol=1e-6)
    set_trainable(model, [".*"])  # the encoder now trains: the store no longer describes its weights
    model.encode_speech(batch)
    assert isinstance(model.encoder_cache, dict) and not model.encoder_cache
    assert all(path in shared for path in batch.audio)  # the store is left intact


def model_feature_config(trainer):
    return trainer.config.model.feature_config


def test_resume_with_other_settings_is_refused(tmp_path, tiny_llm_dir, noise_corpus):
    config = tiny_config(tiny_llm_dir, noise_corpus, steps=(1, 1))
    train(config, tmp_path / "run", progress=False, stop_after=1)
    changed = tiny_config(tiny_llm_dir, noise_corpus, steps=(1, 5))
    with pytest.raises(ConfigError, match="cannot resume with other settings .*stages"):
        train(changed, tmp_path / "run", progress=False, resume=True)
    train(config, tmp_path / "run", progress=False, resume=True)  # the same settings resume
    assert len(read_train_log(tmp_path / "run")) == 2


def test_run_saved_before_an_option_existed_resumes(tmp_path, tiny_llm_dir, noise_corpus):
    """A run whose config.yaml predates a new option (here model.adapter_layers) resumes when the option keeps its
    default: it reads as the default, not as a changed setting (bug: the demo refused to resume a session-5 run)."""
    config = tiny_config(tiny_llm_dir, noise_corpus, steps=(1, 1))
    train(config, tmp_path / "run", progress=False, stop_after=1)
    saved = tmp_path / "run" / "config.yaml"
    old = yaml.safe_load(saved.read_text(encoding="utf-8"))
    del old["model"]["adapter_layers"]
    saved.write_text(yaml.safe_dump(old), encoding="utf-8")
    train(config, tmp_path / "run", progress=False, resume=True)
    assert len(read_train_log(tmp_path / "run")) == 2


def ctc_config(llm_dir, manifest, steps=(2, 3)) -> TrainConfig:
    from speechbraid.models.build import CTCSettings, LoraSettings

    config = tiny_config(llm_dir, manifest, steps)
    config.model.ctc = CTCSettings(vocab_from=[str(manifest)])
    config.model.lora = LoraSettings(r=2, alpha=4, dropout=0.0)
    config.data.train = [SourceConfig(str(manifest), "asr")]
    config.stages = [StageConfig("ctc", steps[0], 1e-3, [r"^adapter\.", r"^ctc\."], objective="ctc"),
                     StageConfig("llm", steps[1], 1e-3, ["lora_"])]
    return config


def test_ctc_bridge_recipe_trains_resumes_exactly_and_reloads(tmp_path, tiny_llm_dir, noise_corpus):
    config = ctc_config(tiny_llm_dir, noise_corpus)
    train(config, tmp_path / "full", progress=False)
    log = read_train_log(tmp_path / "full")
    assert [row["stage"] for row in log] == ["ctc"] * 2 + ["llm"] * 3
    assert all(row["loss"] > 0 for row in log)
    train(config, tmp_path / "cut", progress=False, stop_after=3)  # interrupted inside the LLM stage
    train(config, tmp_path / "cut", progress=False, resume=True)
    assert [r["loss"] for r in read_train_log(tmp_path / "cut")] == pytest.approx([r["loss"] for r in log], abs=1e-6)

    model, tokenizer, saved = load_speech_llm(tmp_path / "full" / "model")
    assert saved.ctc is not None and model.compress and model.speech_input == "ctc"
    vocabulary = {t for r in read_manifest(noise_corpus) for t in tokenizer.encode(r.text, add_special_tokens=False)}
    assert set(model.ctc.token_ids.tolist()) == vocabulary
    audio = [str(r.audio) for r in read_manifest(noise_corpus)][:2]
    select = model.frame_selector(config.model.feature_config.extract_file)
    assert all(list(select(a)) == sorted(set(select(a))) for a in audio)  # kept frames: increasing, no repeats
    run = load_transcriber(tmp_path / "full" / "model").transcribe([audio_item(a) for a in audio], progress=False,
                                                                   max_new_tokens=4)
    assert len(run.texts) == 2


def test_ctc_plans_that_cannot_work_are_refused_before_training(tiny_llm_dir, noise_corpus):
    config = ctc_config(tiny_llm_dir, noise_corpus)
    config.data.train.append(SourceConfig(str(noise_corpus), "word-il"))
    with pytest.raises(ConfigError, match="ctc trains on asr sources only"):
        Trainer(config, "/nonexistent-run-dir")
    config = ctc_config(tiny_llm_dir, noise_corpus)
    config.stages[1].trainable = ["lora_", r"^adapter\."]  # compression needs a frozen speech side
    with pytest.raises(ConfigError, match="freeze the encoder, adapter and bridge"):
        Trainer(config, "/nonexistent-run-dir")
    config = ctc_config(tiny_llm_dir, noise_corpus)
    config.data.bucket_window = 8  # windows are planned with the kept frames of their time
    with pytest.raises(ConfigError, match="data.bucket_window with model.ctc.compress"):
        Trainer(config, "/nonexistent-run-dir")


def test_data_workers_train_on_the_same_batches_and_a_run_resumes_exactly_with_any_number(tmp_path, tiny_llm_dir,
                                                                                          noise_corpus):
    config = tiny_config(tiny_llm_dir, noise_corpus, steps=(2, 2))
    config.grad_accum = 2
    losses = {}
    for workers in (0, 1, 2):
        config.data.workers = workers
        train(config, tmp_path / f"w{workers}", progress=False)
        losses[workers] = [row["loss"] for row in read_train_log(tmp_path / f"w{workers}")]
    assert len(losses[0]) == 4
    assert losses[1] == losses[0] and losses[2] == losses[0]  # the same batches: bit for bit
    # stopped inside stage 2 with 2 workers (their batches built ahead are dropped), resumed with 1
    config.data.workers = 2
    train(config, tmp_path / "cut", progress=False, stop_after=3)
    config.data.workers = 1
    train(config, tmp_path / "cut", progress=False, resume=True)
    assert [row["loss"] for row in read_train_log(tmp_path / "cut")] == pytest.approx(losses[0], abs=1e-6)


def test_data_workers_with_ctc_compression_are_refused(tiny_llm_dir, noise_corpus):
    config = ctc_config(tiny_llm_dir, noise_corpus)
    config.data.workers = 2
    with pytest.raises(ConfigError, match=r"data.workers > 0 with model.ctc.compress is not supported .* set "
                                          r"data.workers=0, or model.ctc.compress=false"):
        Trainer(config, "/nonexistent-run-dir")
    config.data.workers = -1
    with pytest.raises(ConfigError, match="data.workers must be >= 0"):
        Trainer(config, "/nonexistent-run-dir")


def test_ctc_selection_ignores_dropout_and_transcripts_stop_with_the_audio(tmp_path, tiny_llm_dir, noise_corpus):
    config = ctc_config(tiny_llm_dir, noise_corpus, steps=(1, 1))
    config.model.adapter_dropout = 0.5
    trainer = Trainer(config, tmp_path / "run")
    model = trainer.model.train()
    audio = str(next(iter(read_manifest(noise_corpus))).audio)
    first = model.ctc_hypotheses([audio], trainer.features)
    assert all(model.ctc_hypotheses([audio], trainer.features) == first for _ in range(3))  # dropout never applies
    assert model.adapter.training  # and the caller's mode is restored

    trainer.fit(progress=False)
    from speechbraid.inference.transcribe import TOKENS_PER_SECOND

    transcriber = load_transcriber(tmp_path / "run" / "model")
    item = audio_item(audio)
    tokens = []
    original = transcriber.decode
    transcriber.decode = lambda ids: tokens.append(len(ids)) or original(ids)
    transcriber.transcribe([item], progress=False)
    assert tokens[0] <= TOKENS_PER_SECOND * item.duration + 5  # a looping model stops with the audio


def test_resume_is_exact_with_the_frozen_encoders_stored_outputs(tmp_path, tiny_llm_dir, noise_corpus):
    """Issue 10 item 2: with the encoder frozen throughout (the default recipe) its outputs come from the disk
    store, so a run killed after its last checkpoint and resumed in a new process sees the very values the
    uninterrupted run saw (the old in-process cache re-encoded them in other batches, off by up to 3.5e-3)."""
    config = tiny_config(tiny_llm_dir, noise_corpus, steps=(2, 2))
    config.stages[1].trainable = [r"^adapter\.", r"^llm\."]  # the encoder never trains
    config.encoder_store = str(tmp_path / "store")
    train(config, tmp_path / "full", progress=False)
    reference = [row["loss"] for row in read_train_log(tmp_path / "full")]
    config.encoder_store = str(tmp_path / "other-store")  # the interrupted run starts from an empty store
    train(config, tmp_path / "cut", progress=False, stop_after=3)
    train(config, tmp_path / "cut", progress=False, resume=True)
    assert [row["loss"] for row in read_train_log(tmp_path / "cut")] == reference


def test_char_unit_bridge_spells_transcripts_and_reads_its_hypothesis_as_llm_tokens(tmp_path, tiny_llm_dir,
                                                                                   noise_corpus):
    from speechbraid.models.build import _spelling
    from speechbraid.models.speech_llm import CTCBridge

    _, tokenizer = load_causal_lm(tiny_llm_dir)
    alphabet = "abcdefghijklmnopqrstuvwxyz '"
    ids = {c: tokenizer.encode(c, add_special_tokens=False)[0] for c in alphabet}
    bridge = CTCBridge(list(ids.values()), 8, tokenizer.eos_token_id, spelling=_spelling(tokenizer))
    klass = {tokenizer.decode([t]): k + 1 for k, t in enumerate(bridge.token_ids.tolist())}
    # Targets: the normalised transcript (case and punctuation gone), one class per character.
    target = bridge.classes(tokenizer.encode("Hi, there! Don't.", add_special_tokens=False))
    assert target == [klass[c] for c in "hi there don't"]
    with pytest.raises(ValueError, match="not in the CTC vocabulary"):
        bridge.classes(tokenizer.encode("x7", add_special_tokens=False))
    # A greedy path "_hh_i_  _the_ " reads back as the LLM's own tokens of "hi the", each at its first letter.
    path = [0, klass["h"], klass["h"], 0, klass["i"], 0, klass[" "], klass[" "], 0, klass["t"], klass["h"],
            klass["e"], 0, klass[" "]]
    hyp = bridge.hypothesis(path)
    assert hyp.tokens == tuple(tokenizer.encode("hi the", add_special_tokens=False))
    assert list(hyp.frames) == sorted(set(hyp.frames)) and hyp.frames[0] == 1
    assert all(path[f] not in (0, klass[" "]) for f in hyp.frames)  # never read at a blank or a space

    config = ctc_config(tiny_llm_dir, noise_corpus)
    config.model.ctc.units = "chars"
    config.model.ctc.speech_input = "hypothesis"
    with pytest.raises(ValueError, match="longer than its speech frames"):  # 80 ms frames: too few to spell
        train(config, tmp_path / "coarse", progress=False)
    config.model.conformer = ConformerConfig(d_model=16, n_layers=1, n_heads=2, subsample_layers=1)  # 20 ms frames
    config.data.max_len = 256
    train(config, tmp_path / "run", progress=False)
    assert all(row["loss"] > 0 for row in read_train_log(tmp_path / "run"))
    model, tokenizer, _ = load_speech_llm(tmp_path / "run" / "model")
    assert model.ctc.units == "chars"
    chars = {tokenizer.decode([t]) for t in model.ctc.token_ids.tolist()}
    assert chars == {c for r in read_manifest(noise_corpus) for c in normalize_for_wer(r.text)}
    # Compression keeps the hypothesis tokens' frames; the CTC decoder writes the hypothesis.
    audio = str(next(iter(read_manifest(noise_corpus))).audio)
    features = config.model.feature_config.extract_file
    hyp = model.ctc_hypotheses([audio], features)[0]
    assert model.frame_selector(features)(audio) == hyp.frames
    run = load_transcriber(tmp_path / "run" / "model", decoder="ctc").transcribe([audio_item(audio)], progress=False)
    assert run.texts == [tokenizer.decode(list(hyp.tokens)).strip()]
    # The beam search with a word n-gram (ctc-lm) reads the same bridge: the model's lm.arpa.gz unless one is given.
    from speechbraid.inference.ctc_beam import CTCBeamDecoder
    from speechbraid.models.ngram_lm import build_kneser_ney

    with pytest.raises(ConfigError, match="no n-gram LM .lm.arpa.gz.; build one with 'speechbraid ngram-lm"):
        load_transcriber(tmp_path / "run" / "model", decoder="ctc-lm")
    lm = build_kneser_ney(normalize_for_wer(r.text) for r in read_manifest(noise_corpus))
    lm.write_arpa(tmp_path / "run" / "model" / "lm.arpa.gz")
    with pytest.raises(ConfigError, match="only by --decoder ctc-lm"):
        load_transcriber(tmp_path / "run" / "model", decoder="ctc", lm=tmp_path / "run" / "model" / "lm.arpa.gz")
    run = load_transcriber(tmp_path / "run" / "model", decoder="ctc-lm").transcribe([audio_item(audio)],
                                                                                    progress=False)
    log_probs = model.ctc_log_probs([audio], features)[0]
    assert log_probs.shape[-1] == len(model.ctc.labels()) and model.ctc.labels()[0] == ""
    assert run.texts == [CTCBeamDecoder(model.ctc.labels(), lm).decode(log_probs.numpy())]
    # Joint CTC/LLM decoding reads the same bridge; the n-gram only when one is named.
    from speechbraid.device import autocast
    from speechbraid.inference.ctc_beam import WordFusion
    from speechbraid.inference.ctc_prefix import CTCPrefixScorer
    from speechbraid.inference.decode import asr_prompt, generate
    from speechbraid.inference.settings import DecodeConfig

    model_dir = tmp_path / "run" / "model"
    for kwargs in ({}, {"lm": model_dir / "lm.arpa.gz"}):
        joint = load_transcriber(model_dir, decoder="llm-ctc", ctc_weight=0.7, **kwargs)
        encoded = []
        joint.model.encoder.register_forward_hook(lambda *_, seen=encoded: seen.append(1))
        text = joint.transcribe([audio_item(audio)], beam_size=2, max_new_tokens=12, progress=False).texts
        # one encoder pass serves the CTC scores and the LLM's frame selection (the same frames as alone)
        assert len(encoded) == 1 and joint.model.frame_selector(features)(audio) == hyp.frames
        guide = CTCBeamDecoder(model.ctc.labels(), lm if kwargs else None).n_best(log_probs.numpy(), GUIDES)
        assert 1 <= len(guide) <= GUIDES and len(set(guide)) == len(guide)
        scorer = CTCPrefixScorer(log_probs, model.ctc.labels(), joint.decode, model.ctc.spelling.normalize,
                                 WordFusion(lm) if kwargs else None, guide, joint._tokenize)
        item = audio_item(audio)
        prompt = asr_prompt(Utterance(item.id, "", audio=item.path, duration=item.duration))
        config = DecodeConfig(max_new_tokens=12, beam_size=2, stop_ids=(tokenizer.eos_token_id,), ctc_weight=0.7)
        with autocast(joint.device, joint.amp):  # the transcriber's LLM decodes under its precision (bf16 if native)
            expected = generate(joint.model, [prompt], joint.features, config, scorers=[scorer])[0]
        assert text == [joint.decode(expected.tokens)]
    with pytest.raises(ConfigError, match="ctc_weight must be in"):
        load_transcriber(model_dir, decoder="llm-ctc", ctc_weight=1.0)


def test_a_saved_whisper_speech_llm_loads_without_the_checkpoint_its_encoder_came_from(tmp_path, tiny_llm_dir):
    import shutil

    from test_reliability_cli import make_whisper_speech_llm

    saved = make_whisper_speech_llm(tmp_path, tiny_llm_dir)
    before, _, _ = load_speech_llm(saved)
    shutil.rmtree(tmp_path / "tiny-whisper")  # the directory is self-contained: weights and encoder shape
    after, _, _ = load_speech_llm(saved)
    features = torch.randn(1, 200, 80)
    expected = before.encoder(features, torch.tensor([200]))[0]
    torch.testing.assert_close(after.encoder(features, torch.tensor([200]))[0], expected)


def test_trains_from_a_lhotse_shar_directory_as_from_its_wav_manifest(tmp_path, tiny_llm_dir, noise_corpus):
    """Audio read in place from Shar tar shards (features, the frozen encoder's stored outputs) trains like the
    original WAV files: the same loss curve."""
    from lhotse import CutSet

    from speechbraid.data.interop.lhotse_cuts import record_to_cut

    shar = tmp_path / "shar"
    shar.mkdir()
    CutSet.from_cuts(record_to_cut(r) for r in read_manifest(noise_corpus)).to_shar(
        shar, fields={"recording": "wav"}, shard_size=3)
    losses = []
    for name, source in (("wav", SourceConfig(str(noise_corpus), "asr")),
                         ("shar", SourceConfig(str(shar), "asr", format="lhotse-shar"))):
        config = tiny_config(tiny_llm_dir, noise_corpus, steps=(2, 1))
        config.data.train = [source]
        config.encoder_store = str(tmp_path / f"store-{name}")
        train(config, tmp_path / name, progress=False)
        losses.append([row["loss"] for row in read_train_log(tmp_path / name)])
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)

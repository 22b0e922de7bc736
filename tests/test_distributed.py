"""Distributed training on real processes (torchrun, gloo on CPU), precision, and resume after a SIGKILL.

Every run that is compared with another runs in its own process with one OpenMP thread, so the comparisons see
the same floating-point reduction order.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from speechbraid.config import save_config
from speechbraid.errors import ConfigError
from speechbraid.models.build import load_speech_llm
from speechbraid.training.runlog import read_train_log
from speechbraid.training.trainer import Trainer, train
from test_trainer import tiny_config

SRC = Path(__file__).resolve().parents[1] / "src"  # the checkout under test, not an editable install elsewhere
DRIVER = Path(__file__).with_name("train_driver.py")
TIMING = ("train_seconds", "tokens_per_s")  # wall-clock fields of a log line


def _run(args: list[str], nproc: int | None = None) -> subprocess.CompletedProcess:
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc)] if nproc else []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}
    return subprocess.run([sys.executable, *launcher, *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=600)


def _ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stderr[-4000:]


def _log(out: Path) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING} for row in read_train_log(out)]


def _max_relative(a: list[float], b: list[float]) -> float:
    assert len(a) == len(b)
    return max(abs(x - y) / abs(y) for x, y in zip(a, b, strict=True))


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    model, _, _ = load_speech_llm(model_dir)
    return model.state_dict()


def test_two_ddp_processes_train_as_one_process_with_grad_accum_2(tmp_path, tiny_llm_dir, noise_corpus):
    """The README's two commands on one config: ``speechbraid train`` with grad_accum 2 and ``torchrun
    --nproc-per-node 2 -m speechbraid train`` with grad_accum 1 (and a data worker per rank) see the same
    micro-batches and dropout masks, so their logged (global mean) losses agree over 20 steps; a resume on another
    world size is refused."""
    config = tiny_config(tiny_llm_dir, noise_corpus, steps=(5, 15))  # stage 2 trains the encoder: dropout on
    config.ckpt_every = 100
    config.grad_accum = 2
    save_config(config, tmp_path / "one.yaml")
    config.grad_accum = 1
    config.data.workers = 1  # each rank's batches built by a background data worker: the same micro-batches
    save_config(config, tmp_path / "ddp.yaml")
    _ok(_run(["-m", "speechbraid", "train", "--config", tmp_path / "one.yaml", "--out", tmp_path / "one"]))
    _ok(_run(["-m", "speechbraid", "train", "--config", tmp_path / "ddp.yaml", "--out", tmp_path / "ddp"], nproc=2))

    one, ddp = _log(tmp_path / "one"), _log(tmp_path / "ddp")
    assert len(one) == len(ddp) == 20
    difference = _max_relative([r["loss"] for r in ddp], [r["loss"] for r in one])
    print(f"DDP (2 processes) vs grad_accum 2: max relative loss difference {difference:.2e}")
    assert difference < 1e-4
    assert [r["target_tokens"] for r in ddp] == [r["target_tokens"] for r in one]  # sums over both ranks
    assert [r["fill"] for r in ddp] == pytest.approx([r["fill"] for r in one], rel=1e-9)
    reference = _weights(tmp_path / "one" / "model")
    for name, tensor in _weights(tmp_path / "ddp" / "model").items():
        torch.testing.assert_close(tensor, reference[name], rtol=1e-4, atol=1e-5, msg=name)

    with pytest.raises(ConfigError, match=r"saved by a run on 2 process\(es\) and this run has 1"):
        train(config, tmp_path / "ddp", progress=False, resume=True)


def test_fsdp_on_two_processes_checkpoints_resumes_and_saves_a_loadable_model(tmp_path, tiny_llm_dir, noise_corpus):
    """FSDP2 (fully_shard per LLM block) with gloo: interrupted after step 3, resumed on two processes, it trains
    as one process with grad_accum 4 does; its checkpoint has the single-process format."""
    config = tiny_config(tiny_llm_dir, noise_corpus, steps=(2, 4))
    config.ckpt_every = 100
    config.grad_accum = 4
    save_config(config, tmp_path / "one.yaml")
    config.grad_accum = 2  # x 2 ranks: also accumulates across backward passes without reduce-scatter
    config.distributed = "fsdp"
    save_config(config, tmp_path / "fsdp.yaml")
    _ok(_run([DRIVER, tmp_path / "one.yaml", tmp_path / "one"]))
    began = time.perf_counter()
    _ok(_run([DRIVER, tmp_path / "fsdp.yaml", tmp_path / "fsdp", "--stop-after", "3"], nproc=2))
    cut = tmp_path / "fsdp" / "checkpoints" / "step-00000003"
    single = tmp_path / "one" / "checkpoints" / "step-00000006"  # same stage: same trainable parameters
    assert set(load_file(cut / "model.safetensors")) == set(load_file(single / "model.safetensors"))
    state, single_state = (torch.load(p / "state.pt", weights_only=True) for p in (cut, single))
    assert state["world"] == 2 and single_state["world"] == 1
    assert state["optimizer"]["param_groups"][0]["params"] == single_state["optimizer"]["param_groups"][0]["params"]
    assert {k: {n: t.shape for n, t in v.items()} for k, v in state["optimizer"]["state"].items()} == \
        {k: {n: t.shape for n, t in v.items()} for k, v in single_state["optimizer"]["state"].items()}
    resumed = _run([DRIVER, tmp_path / "fsdp.yaml", tmp_path / "fsdp", "--resume"], nproc=2)
    _ok(resumed)
    assert "rank 1: parameters are DTensor" in resumed.stdout  # sharded, not replicated
    print(f"FSDP 2 processes, 6 steps in two launches: {time.perf_counter() - began:.1f} s")

    one, fsdp = _log(tmp_path / "one"), _log(tmp_path / "fsdp")
    difference = _max_relative([r["loss"] for r in fsdp], [r["loss"] for r in one])
    print(f"FSDP (2 processes x grad_accum 2) vs grad_accum 4: max relative loss difference {difference:.2e}")
    assert difference < 1e-4
    assert [r["target_tokens"] for r in fsdp] == [r["target_tokens"] for r in one]
    reference = _weights(tmp_path / "one" / "model")
    for name, tensor in _weights(tmp_path / "fsdp" / "model").items():
        torch.testing.assert_close(tensor, reference[name], rtol=1e-4, atol=1e-5, msg=name)


def test_a_run_killed_anywhere_resumes_to_the_uninterrupted_result(tmp_path, tiny_llm_dir, noise_corpus):
    """SIGKILL inside a step (mid grad accumulation), while a checkpoint is half written, and between a checkpoint's
    rename and ``latest``: each resume continues from the last complete checkpoint and the run ends with the very
    log and weights of an uninterrupted one."""
    config = tiny_config(tiny_llm_dir, noise_corpus, steps=(2, 4))
    config.grad_accum = 2
    config.ckpt_every = 2
    save_config(config, tmp_path / "c.yaml")
    _ok(_run([DRIVER, tmp_path / "c.yaml", tmp_path / "full"]))
    cut = tmp_path / "cut"
    checkpoints = cut / "checkpoints"

    killed = _run([DRIVER, tmp_path / "c.yaml", cut, "--kill-at", "backward:7"])  # first micro-batch of step 4
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert len(read_train_log(cut)) == 3 and (checkpoints / "latest").read_text().strip() == "step-00000002"

    killed = _run([DRIVER, tmp_path / "c.yaml", cut, "--resume", "--kill-at", "state:4"])
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert list(checkpoints.glob(".step-00000004.*"))  # the half-written one, never named by latest
    assert (checkpoints / "latest").read_text().strip() == "step-00000002"

    killed = _run([DRIVER, tmp_path / "c.yaml", cut, "--resume", "--kill-at", "latest:6"])
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert (checkpoints / "step-00000006").is_dir() and not (cut / "model").exists()
    assert (checkpoints / "latest").read_text().strip() == "step-00000004"

    _ok(_run([DRIVER, tmp_path / "c.yaml", cut, "--resume"]))
    assert _log(cut) == _log(tmp_path / "full")
    assert not list(checkpoints.glob(".step-*"))
    full = _weights(tmp_path / "full" / "model")
    resumed = _weights(cut / "model")
    assert all(torch.equal(resumed[name], tensor) for name, tensor in full.items())


def test_fp16_unscales_before_clipping_and_keeps_the_scaler_in_the_checkpoint(tmp_path, tiny_llm_dir, noise_corpus,
                                                                              one_torch_thread):
    config = tiny_config(tiny_llm_dir, noise_corpus, steps=(1, 2))
    train(config, tmp_path / "fp32", progress=False)
    config.precision = "fp16"
    train(config, tmp_path / "fp16", progress=False)
    fp32, fp16 = read_train_log(tmp_path / "fp32"), read_train_log(tmp_path / "fp16")
    # the logged norm is of the true gradients (scaled by 65536 they would be far larger)
    assert fp16[0]["grad_norm"] == pytest.approx(fp32[0]["grad_norm"], rel=0.05)
    assert fp16[0]["loss"] == pytest.approx(fp32[0]["loss"], rel=0.01)

    # a scale so large that every fp16 gradient overflows: the scaler skips the steps and halves the scale
    trainer = Trainer(config, tmp_path / "overflow")
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**40)
    adapter = {k: v.clone() for k, v in trainer.model.adapter.state_dict().items()}
    trainer.fit(progress=False, stop_after=2)
    assert all(torch.equal(v, adapter[k]) for k, v in trainer.model.adapter.state_dict().items())  # steps skipped
    state = torch.load(tmp_path / "overflow" / "checkpoints" / "step-00000002" / "state.pt", weights_only=True)
    assert state["scaler"]["scale"] == 2.0**38
    train(config, tmp_path / "overflow", progress=False, resume=True)  # a fresh scaler (65536) takes the saved scale
    state = torch.load(tmp_path / "overflow" / "checkpoints" / "step-00000003" / "state.pt", weights_only=True)
    assert state["scaler"]["scale"] == 2.0**37


def test_gradient_checkpointing_recomputes_the_llm_blocks_and_keeps_the_loss(tmp_path, tiny_llm_dir, noise_corpus,
                                                                            one_torch_thread, monkeypatch):
    from transformers.models.llama import modeling_llama

    calls = [0]
    forward = modeling_llama.LlamaMLP.forward

    def counted(self, *args, **kwargs):  # module hooks do not fire in the recompute: count the forward itself
        calls[0] += 1
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(modeling_llama.LlamaMLP, "forward", counted)
    losses, runs = {}, {}
    for checkpointing in (False, True):
        config = tiny_config(tiny_llm_dir, noise_corpus, steps=(1, 1))
        config.gradient_checkpointing = checkpointing
        calls[0] = 0
        train(config, tmp_path / str(checkpointing), progress=False)
        losses[checkpointing] = [row["loss"] for row in read_train_log(tmp_path / str(checkpointing))]
        runs[checkpointing] = calls[0]
    assert runs[True] == 2 * runs[False] > 0  # every block ran again in backward
    assert losses[True] == pytest.approx(losses[False], rel=1e-6)


def test_llm_dtype_sets_the_dtype_the_llm_is_loaded_in(tiny_llm_dir):
    from speechbraid.models.build import ModelConfig, build_speech_llm
    from speechbraid.models.encoders import ConformerConfig

    conformer = ConformerConfig(d_model=16, n_layers=1, n_heads=2)
    model, _ = build_speech_llm(ModelConfig(llm=str(tiny_llm_dir), conformer=conformer, llm_dtype="bfloat16"))
    assert {p.dtype for p in model.llm.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in model.adapter.parameters()} == {torch.float32}  # the speech side keeps its own
    model, _ = build_speech_llm(ModelConfig(llm=str(tiny_llm_dir), conformer=conformer))  # auto: as stored
    assert {p.dtype for p in model.llm.parameters()} == {torch.float32}


def test_fsdp_refuses_what_needs_whole_weights(tiny_llm_dir, noise_corpus):
    config = tiny_config(tiny_llm_dir, noise_corpus)
    config.distributed = "fsdp"
    config.precision = "fp16"
    with pytest.raises(ConfigError, match="fsdp with precision=fp16"):
        Trainer(config, "/nonexistent-run-dir")
    config.precision = "bf16"
    config.validation.dev = "dev.jsonl"
    with pytest.raises(ConfigError, match="fsdp with validation.dev"):
        Trainer(config, "/nonexistent-run-dir")

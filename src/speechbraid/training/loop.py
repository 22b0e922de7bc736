"""The one training loop every trainer runs: the speech LLM's stages, the text prior, the CTC aligner and the unit
vocoder.

A trainer supplies ``step_fn(step) -> metrics``, which draws its batch, runs the forward pass and calls
``backward`` (it owns its data, micro-batches and autocast); :class:`TrainingLoop` does the rest of every step
the same way everywhere: gradient clipping, the optimizer and learning-rate schedule step
(``transformers.get_scheduler``), one JSON line per step in ``train_log.jsonl``, a progress bar, and atomic
checkpoints (weights, optimizer, schedule, RNG and the trainer's own state, e.g. its data position) every
``checkpoint_every`` steps and at the end. :meth:`TrainingLoop.restore` continues a run exactly where its last
checkpoint left it (log lines past it dropped) or starts it afresh. A distributed run passes its
:class:`~speechbraid.training.distributed.Parallel`: checkpoints record the world size (a resume on another one
is refused) and a sharded model's weights and optimizer are gathered into the single-process format. fp16
training passes a ``GradScaler``: step functions call :meth:`TrainingLoop.backward`, the loop unscales before
clipping and keeps the scaler's state in the checkpoint.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm
from transformers import get_scheduler

from speechbraid.errors import ConfigError
from speechbraid.training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from speechbraid.training.distributed import Parallel
from speechbraid.training.runlog import LOG_FILE, truncate_log
from speechbraid.training.runtime import apply_gradients, rng_state, set_rng_state

CHECKPOINT_DIR = "checkpoints"
StepFn = Callable[[int], dict[str, Any]]


def make_scheduler(optimizer: torch.optim.Optimizer, steps: int, warmup: float, name: str = "linear",
                   min_lr_rate: float | None = None) -> torch.optim.lr_scheduler.LRScheduler:
    """``transformers.get_scheduler`` over ``steps``, warming up for a ``warmup`` fraction of them (at least one
    step); ``min_lr_rate`` is the floor of the ``cosine_with_min_lr`` schedule."""
    kwargs = {"min_lr_rate": min_lr_rate} if min_lr_rate is not None else None
    return get_scheduler(name, optimizer, num_warmup_steps=max(1, round(warmup * steps)), num_training_steps=steps,
                         scheduler_specific_kwargs=kwargs)


class TrainingLoop:
    """Steps ``step_fn`` for one optimizer and schedule, logging and checkpointing into ``run_dir``.

    ``state()`` returns what the trainer needs besides weights, optimizer, schedule and RNG to continue exactly
    (tensors and plain containers only); :meth:`restore` hands it back. ``on_step(metrics)`` runs after each step
    is logged (TensorBoard, validation, a DDP barrier); ``main`` is False on the other ranks of a distributed run,
    which step but neither log nor checkpoint. A trainer with an optimizer per stage (the speech LLM's) sets
    ``optimizer`` and ``scheduler`` before each :meth:`run`. ``checkpoint_at(step)`` names further steps to
    checkpoint after (the trainer's validation steps, so the best one is a checkpoint); ``keep`` is how many of the
    newest checkpoints are kept (besides the ``best`` one and the one a resumed run started from).
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                 scheduler: torch.optim.lr_scheduler.LRScheduler | None, run_dir: str | Path, *, clip: float,
                 checkpoint_every: int, state: Callable[[], dict[str, Any]] = dict,
                 on_step: Callable[[dict[str, Any]], None] | None = None, main: bool = True, keep: int = 1,
                 checkpoint_at: Callable[[int], bool] | None = None, parallel: Parallel | None = None,
                 scaler: torch.amp.GradScaler | None = None) -> None:
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.parallel = parallel
        self.scaler = scaler
        self.run_dir = Path(run_dir)
        self.clip = clip
        self.checkpoint_every = checkpoint_every
        self.state = state
        self.on_step = on_step
        self.main = main
        self.keep = keep
        self.checkpoint_at = checkpoint_at
        self.resumed_from: str | None = None  # never pruned while this run goes on: the state it continued from
        self.train_seconds = 0.0

    @property
    def world(self) -> int:
        return self.parallel.world if self.parallel is not None else 1

    @property
    def _sharded(self) -> bool:
        return self.parallel is not None and self.parallel.sharded

    def backward(self, loss: torch.Tensor) -> None:
        """``loss.backward()``, scaled first when training in fp16 (see :func:`apply_gradients`)."""
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    @property
    def checkpoints(self) -> Path:
        return self.run_dir / CHECKPOINT_DIR

    @property
    def log_path(self) -> Path:
        return self.run_dir / LOG_FILE

    def restore(self, resume: bool, optimizer_state: bool = True) -> tuple[int, dict[str, Any] | None]:
        """(step to continue from, the checkpoint's state) of the last checkpoint when ``resume`` and one exists;
        else (0, None) after removing an earlier run's checkpoints and log. ``optimizer_state=False`` leaves the
        optimizer and schedule alone (a trainer whose checkpoint was taken under another optimizer)."""
        if self.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        latest = latest_checkpoint(self.checkpoints) if resume else None
        if latest is None:
            if self.main:
                self.log_path.unlink(missing_ok=True)
                shutil.rmtree(self.checkpoints, ignore_errors=True)
            return 0, None
        load_weights = (lambda weights: self.parallel.load_model_state(self.model, weights)) if self._sharded else None
        state = load_checkpoint(latest, self.model, load_weights)
        self.resumed_from = latest.name
        saved_world = int(state.get("world", self.world))  # checkpoints from before the world was recorded: trusted
        if saved_world != self.world:
            # the global batch is grad_accum x world micro-batches and batch k goes to rank k % world: another world
            # size would train on other batches than the interrupted run, so it is not the same run
            raise ConfigError(f"{latest}: this checkpoint was saved by a run on {saved_world} process(es) and this run "
                              f"has {self.world}; resume it with the same world size (torchrun --nproc-per-node "
                              f"{saved_world}), or start a new run in another --out")
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        if optimizer_state:
            self.load_optimizer(state)
        set_rng_state(state["rng"])
        self.train_seconds = float(state.get("train_seconds", 0.0))
        if self.main:
            truncate_log(self.log_path, int(state["step"]))
        return int(state["step"]), state

    def load_optimizer(self, state: dict[str, Any]) -> None:
        if self._sharded:
            self.parallel.load_optimizer_state(self.model, self.optimizer, state["optimizer"])
        else:
            self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])

    def run(self, step_fn: StepFn, start: int, end: int, bar: tqdm | None = None) -> dict[str, Any]:
        """Steps ``start`` .. ``end - 1`` (0-based); returns the last step's metrics (the log line)."""
        metrics: dict[str, Any] = {}
        for step in range(start, end):
            began = time.perf_counter()
            metrics = step_fn(step)
            metrics["grad_norm"] = apply_gradients(self.model, self.optimizer, self.scheduler, self.clip, self.scaler)
            self.train_seconds += time.perf_counter() - began
            metrics = {"step": step + 1, **metrics, "lr": self.scheduler.get_last_lr()[0],
                       "train_seconds": round(self.train_seconds, 3)}
            if self.main:
                with self.log_path.open("a", encoding="utf-8") as log:
                    log.write(json.dumps(metrics) + "\n")
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{metrics['loss']:.3f}", lr=f"{metrics['lr']:.1e}")
            if self.on_step is not None:
                self.on_step(metrics)
            due = (step + 1) % self.checkpoint_every == 0 or step + 1 == end
            due = due or (self.checkpoint_at is not None and self.checkpoint_at(step + 1))
            if (self.main or self._sharded) and due:
                self.save(step + 1)
        return metrics

    def save(self, step: int) -> Path | None:
        """Write checkpoint ``step`` (rank 0; under FSDP every rank calls this to gather the state)."""
        if self._sharded:
            weights: torch.nn.Module | dict[str, Any] = self.parallel.model_state(self.model)
            optimizer = self.parallel.optimizer_state(self.model, self.optimizer)
        else:
            weights, optimizer = self.model, self.optimizer.state_dict()
        if not self.main:
            return None
        extra = {"scaler": self.scaler.state_dict()} if self.scaler is not None else {}
        return save_checkpoint(self.checkpoints, step, weights, {
            "step": step, "world": self.world, "train_seconds": self.train_seconds, "optimizer": optimizer,
            "scheduler": self.scheduler.state_dict(), "rng": rng_state(), **extra, **self.state()}, keep=self.keep,
            protect=[self.resumed_from] if self.resumed_from else ())


def progress_bar(total: int, initial: int, desc: str, enabled: bool) -> tqdm:
    return tqdm(total=total, initial=initial, desc=desc, unit="step", disable=not enabled, dynamic_ncols=True)

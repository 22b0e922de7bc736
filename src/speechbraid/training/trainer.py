"""The speech-LLM trainer: staged schedule, packing, checkpoints with exact resume, DDP via torchrun.

Stages run one after another on one global step counter; each stage trains the parameters whose names
match its regexes (stage 1 of METHODS.md: adapter only; stage 2: everything) with its own AdamW and a
linear warmup + linear decay schedule. Loss is next-token cross-entropy on text targets only (the
layouts decide which tokens those are).

Multi-process: launched with ``torchrun --nproc-per-node N -m speechbraid train ...``; every rank plans
the same deterministic batch sequence and builds and trains only its own share (batch ``k`` goes to rank
``k % world``; with ``data.workers`` > 0, background DataLoader workers build them ahead, see
:mod:`speechbraid.training.loader`), gradients are averaged by DistributedDataParallel (``distributed: ddp``, gloo
on CPU, nccl on GPU) or reduce-scattered over FSDP2 shards (``distributed: fsdp``, for LLMs that do not fit one GPU).
A step on N processes with ``grad_accum`` A equals a step of one process with ``grad_accum`` N x A: the same
micro-batches, the same dropout masks (seeded per micro-batch), the logged loss the mean over all of them.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from tqdm import tqdm

from speechbraid.batching.collate import collate
from speechbraid.config import from_dict, save_config, to_dict
from speechbraid.data.features import FeatureConfig
from speechbraid.device import autocast, autocast_dtype, pick_device
from speechbraid.errors import ConfigError
from speechbraid.layouts.registry import get_layout
from speechbraid.layouts.tokenizer import HFTextTokenizer
from speechbraid.models.build import (
    ModelConfig,
    build_speech_llm,
    load_speech_llm,
    matching_parameters,
    save_speech_llm,
    set_trainable,
    with_lora,
)
from speechbraid.models.encoder_store import EncoderOutputStore, precompute
from speechbraid.models.speech_llm import SpeechLLM
from speechbraid.training import checkpoint as ckpt
from speechbraid.training.data import BraidSource, MixSampler, PackedBatcher, SourceConfig
from speechbraid.training.distributed import Parallel
from speechbraid.training.encoder_outputs import open_encoder_store, skip_stored, source_audio
from speechbraid.training.loader import BatchStream
from speechbraid.training.loop import TrainingLoop, make_scheduler, progress_bar
from speechbraid.training.runtime import seed_everything
from speechbraid.training.validation import ValidationConfig, Validator


@dataclass
class StageConfig:
    name: str
    steps: int
    lr: float
    trainable: list[str] = field(default_factory=lambda: [".*"])  # regexes over parameter names
    warmup: float = 0.1  # fraction of the stage's steps
    # lm: next-token loss through the LLM; ctc: the adapter learns the LLM's token embeddings through the CTC bridge
    # (model.ctc), no LLM forward - cheap steps that make the speech input speak the LLM's language first
    objective: Literal["lm", "ctc"] = "lm"
    rows: int | None = None  # rows per batch in this stage (default data.rows): CTC steps are cheap per utterance


@dataclass
class DataConfig:
    train: list[SourceConfig] = field(default_factory=list)
    max_len: int = 512  # positions per packed row (speech frames + tokens)
    rows: int = 8  # rows per batch
    max_audio_seconds: float | None = None  # cap on audio per batch (sum over its examples)
    # cap on the encoder's padded input per batch: distinct audios x the longest (what encoder memory follows)
    max_padded_audio_seconds: float | None = None
    # duration bucketing: examples drawn at once and packed shortest first, so a batch holds similar lengths and
    # the encoder pads little (0: off, pack in draw order); each window's batches are trained in a seeded order
    bucket_window: int = 0
    # the batches are the same for any number of workers (they build from the same planned sequence)
    workers: int = 0  # background processes per rank building batches ahead (audio, features, collation); 0: none


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    stages: list[StageConfig] = field(default_factory=lambda: [
        StageConfig("adapter", 100, 1e-3, [r"^adapter\."]),
        StageConfig("full", 400, 4e-4, [".*"]),
    ])
    grad_accum: int = 1
    clip: float = 1.0
    weight_decay: float = 0.01
    seed: int = 0
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"  # autocast: auto (bf16 where native: GPU or CPU), bf16,
    # fp16 (with a gradient scaler, for GPUs without bf16), fp32; weights stay in model.llm_dtype
    distributed: Literal["ddp", "fsdp"] = "ddp"  # under torchrun: replicated weights (ddp) or sharded ones (fsdp)
    gradient_checkpointing: bool = False  # recompute the LLM's activations in backward (less memory, ~30% slower)
    device: str | None = None
    log_every: int = 10
    ckpt_every: int = 100
    keep_last: int = 1  # newest step checkpoints kept; the best one (validation) and the one resumed from are kept too
    cache_encoder: bool = True  # reuse encoder outputs while the encoder is frozen (kept on disk, see encoder_store)
    encoder_store: str | None = None  # directory of stored encoder outputs (default $SPEECHBRAID_HOME/encoder_outputs)
    # fill: encode what the store lacks and keep it; read-only: every output must have been precomputed
    # (speechbraid features --kind encoder), a missing or damaged one is an error before or during training
    encoder_store_mode: Literal["fill", "read-only"] = "fill"
    encoder_cache_mb: float = 2048  # RAM for in-memory copies of stored encoder outputs (LRU in front of the store)
    tensorboard: bool = True
    init_from: str | None = None  # a saved speech LLM whose weights start this run (e.g. a shared stage 1)
    validation: ValidationConfig = field(default_factory=ValidationConfig)  # dev loss / WER / EER every N steps


class FeatureCache:
    """Features per audio path, computed once (an LRU bounded by ``max_items``)."""

    def __init__(self, config: FeatureConfig, max_items: int = 50_000) -> None:
        self.config = config
        self.max_items = max_items
        self._items: OrderedDict[str, torch.Tensor] = OrderedDict()

    def __call__(self, path: str) -> torch.Tensor:
        if path in self._items:
            self._items.move_to_end(path)
            return self._items[path]
        feats = self.config.extract_file(path)
        self._items[path] = feats
        if len(self._items) > self.max_items:
            self._items.popitem(last=False)
        return feats


def _optimizer(model: torch.nn.Module, stage: StageConfig, weight_decay: float) -> torch.optim.AdamW:
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]  # matrices decay; norms and biases do not
    rest = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=stage.lr, betas=(0.9, 0.98))


def _stage_at(stages: list[StageConfig], step: int) -> tuple[int, int]:
    """(stage index, step within that stage) of a global step."""
    start = 0
    for i, stage in enumerate(stages):
        if step < start + stage.steps:
            return i, step - start
        start += stage.steps
    return len(stages), 0


class Trainer:
    """Owns the model, data and run directory of one training run; :meth:`fit` runs (or resumes) it."""

    def __init__(self, config: TrainConfig, out_dir: str | Path) -> None:
        if not config.data.train:
            raise ConfigError("data.train lists no sources")
        if not config.stages or any(s.steps <= 0 for s in config.stages):
            raise ConfigError("every stage needs steps > 0")
        self.config = config
        self.out = Path(out_dir)
        _check_distributed(config)
        _check_workers(config)
        self.parallel = Parallel(config.distributed, pick_device(config.device))
        self.device, self.world, self.rank, self.main = (self.parallel.device, self.parallel.world,
                                                         self.parallel.rank, self.parallel.main)
        seed_everything(config.seed)
        if config.init_from:
            self.model, self.tokenizer, saved = load_speech_llm(config.init_from)
            if asdict(saved) | {"lora": None} != asdict(config.model) | {"lora": None}:
                raise ConfigError(f"init_from {config.init_from}: its model config differs from this run's "
                                  f"(saved {asdict(saved)}, configured {asdict(config.model)})")
            if config.model.lora is not None:  # the saved LLM has its LoRA merged: fresh adapters on top of it
                self.model.llm = with_lora(self.model.llm, config.model.lora)
        else:
            self.model, self.tokenizer = build_speech_llm(config.model)
        self.model.to(self.device)
        text_tokenizer = HFTextTokenizer(self.tokenizer)
        self.sources = sources = [BraidSource(s, text_tokenizer, self.model.vocab, self.model.frame_rate)
                                  for s in config.data.train]
        self.batcher = PackedBatcher(MixSampler(sources, config.seed), config.data.rows, config.data.max_len,
                                     config.data.max_audio_seconds, config.data.max_padded_audio_seconds,
                                     config.data.bucket_window)
        # each data worker holds its own copy of the cache: together they keep what one process would
        self.features = FeatureCache(config.model.feature_config, max_items=50_000 // max(1, config.data.workers))
        self.batch_features = skip_stored(self.features, self.model, config.model.feature_config.num_mel_bins)
        self.batches = BatchStream(self.batcher, functools.partial(collate, features=self.batch_features,
                                                                   max_len=config.data.max_len),
                                   world=self.world, rank=self.rank, workers=config.data.workers,
                                   pin_memory=self.device.type == "cuda")
        if config.cache_encoder and self.model.encoder is not None:
            self.model.encoder_cache = open_encoder_store(
                self.model.encoder, sources, config.model, root=config.encoder_store, mode=config.encoder_store_mode,
                cache_mb=config.encoder_cache_mb, init_from=config.init_from)
        _check_objectives(config, self.model)
        if config.gradient_checkpointing:
            _enable_activation_checkpointing(self.model.llm)
        if config.distributed == "fsdp":
            self.parallel.wrap(self.model)  # shards in place, before a resume loads the checkpoint into the shards
        self.amp = autocast_dtype(self.device, config.precision)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.amp == torch.float16 else None
        self.total_steps = sum(s.steps for s in config.stages)
        if config.keep_last < 1:
            raise ConfigError(f"keep_last must be >= 1, got {config.keep_last}")
        # built here so a bad dev manifest fails before any step is spent
        self.validator = Validator(config.validation, self.model, self.tokenizer, config.model, self.features,
                                   self.out, self.total_steps, amp=self.amp, main=self.main) \
            if config.validation.dev else None

    def _encode_before_training(self, progress: bool) -> None:
        """Fill the encoder store with every training audio at once, files of similar length batched together,
        when the encoder stays frozen in every stage: ~2x faster than encoding each training batch's mixed
        lengths as it comes (the demo's 6,000 utterances: ~3.5 min instead of ~7.7). Single-process runs only;
        under DDP the ranks fill the store batch by batch as before."""
        store, model = self.model.encoder_cache, self.model
        if not isinstance(store, EncoderOutputStore) or store.mode != "fill" or self.world > 1:
            return
        if any(name.startswith("encoder.") for stage in self.config.stages
               for name in matching_parameters(model, stage.trainable)):
            return  # a trained encoder's outputs change every step: nothing to store
        audio = [path for path, _ in source_audio(self.sources)]
        precompute(store, model.encoder, self.config.model.feature_config.extract_file, audio,
                   device=self.device, progress=progress)

    def fit(self, *, resume: bool = False, progress: bool = True, stop_after: int | None = None) -> dict[str, Any]:
        """Train to the end (or ``stop_after`` global steps, checkpointed as an interruption would be);
        the finished model is saved to ``out_dir/model``. Returns the last step's metrics."""
        config, out, model = self.config, self.out, self.model
        writer = None
        stage_index = 0

        def on_step(metrics: dict[str, Any]) -> None:
            if writer is not None and metrics["step"] % config.log_every == 0:
                for key in ("loss", "lr", "grad_norm", "fill", "tokens_per_s"):
                    writer.add_scalar(f"train/{key}", metrics[key], metrics["step"])
            if self.validator is not None and self.main and self.validator.due(metrics["step"]):
                self.validator.run(metrics["step"], writer, _echo if progress else None)  # other ranks: barrier
            self.parallel.barrier()

        loop = TrainingLoop(model, None, None, out, clip=config.clip, checkpoint_every=config.ckpt_every,
                            state=lambda: {"stage": stage_index, "data": self.batcher.state_dict(),
                                           **({"validation": self.validator.state_dict()} if self.validator else {})},
                            on_step=on_step, main=self.main, keep=config.keep_last,
                            checkpoint_at=self.validator.due if self.validator else None, parallel=self.parallel,
                            scaler=self.scaler)
        self._loop = loop
        if resume and ckpt.latest_checkpoint(loop.checkpoints) is not None:
            _check_same_run(out / "config.yaml", config)
        if self.main:
            out.mkdir(parents=True, exist_ok=True)
            save_config(config, out / "config.yaml")
        step, state = loop.restore(resume, optimizer_state=False)  # each stage has its own optimizer (below)
        if state is not None:
            self.batcher.load_state_dict(state["data"])
        if self.validator is not None:
            self.validator.restore(step, state)
        if self.main and config.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(out / "tensorboard"))
        end_step = min(self.total_steps, stop_after) if stop_after is not None else self.total_steps
        if step < end_step:
            self._encode_before_training(progress)
        metrics: dict[str, Any] = {}
        with progress_bar(self.total_steps, step, "train", progress and self.main) as bar:
            while step < end_step:
                stage_index, stage_step = _stage_at(config.stages, step)
                stage = config.stages[stage_index]
                trainable = set_trainable(model, stage.trainable)
                self._select_frames(stage)
                self.batcher.rows = stage.rows or config.data.rows
                module = self.parallel.wrap(model)
                loop.optimizer = _optimizer(model, stage, config.weight_decay)
                loop.scheduler = make_scheduler(loop.optimizer, stage.steps, stage.warmup)
                if state is not None and state["stage"] == stage_index:  # resumed inside this stage
                    loop.load_optimizer(state)
                state = None
                bar.set_description(f"train[{stage.name}]")
                stage_end = min(end_step, step - stage_step + stage.steps)
                # (re)started per stage: workers copy the batcher's state, its rows and the frozen encoder's store
                with self.batches:
                    metrics = loop.run(lambda at, module=module, stage=stage, trainable=trainable: self._step(
                        module, stage.objective, at) | {"stage": stage.name, "trainable": trainable}, step, stage_end,
                        bar)
                step = stage_end
        if writer is not None:
            writer.close()
        if step >= self.total_steps:
            self._save_model(out / "model")
        metrics["mix"] = self.batcher.sampler.mix_report()
        metrics["skipped_lines"] = self.batcher.sampler.skipped_report()  # sources with on_bad: skip
        return metrics

    def _select_frames(self, stage: StageConfig) -> None:
        """CTC compression holds in LLM stages (the speech side is frozen there, see _check_objectives): kept frames
        are a function of the frozen weights, so a resumed run selects exactly what the interrupted one did."""
        self.model.forget_selection()
        select = self.model.frame_selector(self.features) if stage.objective == "lm" else None
        for source in self.batcher.sampler.sources:
            source.select = select

    def _save_model(self, directory: Path) -> None:
        """The finished model (rank 0). Sharded weights are gathered first (every rank takes part) into a plain
        copy of the model, so the saved directory is the one a single process writes (LoRA merged the same way)."""
        model = self.model
        if self.parallel.sharded:
            weights = self.parallel.model_state(self.model)
            if not self.main:
                return
            model, _ = build_speech_llm(self.config.model)
            model.load_state_dict(weights, strict=True)
        if self.main:
            save_speech_llm(model, self.tokenizer, self.config.model, directory)

    def _step(self, module: torch.nn.Module, objective: str = "lm", step: int = 0) -> dict[str, Any]:
        """Forward and backward over ``grad_accum`` micro-batches per rank (the loop then steps the optimizer).
        Metrics are over all ranks' micro-batches: the loss their mean, counts their sums."""
        config, model = self.config, self.model
        t0 = time.perf_counter()
        model.train()
        if not any(p.requires_grad for p in model.encoder.parameters()):
            model.encoder.eval()  # frozen: no dropout, so cached outputs equal fresh ones
        loss_sum, tokens, positions, filled, audio_s = 0.0, 0, 0, 0, 0.0
        micro_batches = config.grad_accum * self.world
        for micro in range(self.rank, micro_batches, self.world):
            # every rank plans the same sequence; the batch's own rank (or one of its data workers) builds it
            batch = self.batches.next().to(self.device)
            # dropout masks depend on the micro-batch's place in the global sequence only, so N ranks draw the ones
            # a single process with N x grad_accum draws, and a resumed run the ones the interrupted run drew
            torch.manual_seed(config.seed * 1_000_003 + step * micro_batches + micro)
            with self.parallel.gradient_sync(module, sync=micro + self.world >= micro_batches):
                with autocast(self.device, self.amp):
                    loss, _ = module(batch, objective=objective)
                self._loop.backward(loss / config.grad_accum)
            loss_sum += float(loss.detach())
            tokens += batch.num_loss_tokens
            positions += batch.example_ids.numel()
            filled += int((batch.example_ids > 0).sum())
            audio_s += float(batch.audio_frames.sum()) / model.frame_rate
        loss_sum, tokens, positions, filled, audio_s = self.parallel.sum([loss_sum, tokens, positions, filled, audio_s])
        return {"loss": loss_sum / micro_batches, "target_tokens": int(tokens), "fill": filled / max(positions, 1),
                "audio_seconds": audio_s, "tokens_per_s": positions / (time.perf_counter() - t0)}


def _check_objectives(config: TrainConfig, model: SpeechLLM) -> None:
    """Refuse stage plans that cannot mean what they say, before any step is spent."""
    for stage in config.stages:
        if stage.objective == "ctc":
            if model.ctc is None:
                raise ConfigError(f"stage {stage.name!r}: objective ctc needs model.ctc (the CTC bridge)")
            others = sorted({s.layout for s in config.data.train if not get_layout(s.layout).transcribes})
            if others:
                raise ConfigError(f"stage {stage.name!r}: objective ctc trains on asr sources only; the mix also "
                                  f"holds {', '.join(others)} (give the CTC stage its own run or config)")
        elif model.compress:
            if config.data.bucket_window:
                raise ConfigError("data.bucket_window with model.ctc.compress is not supported (a window is planned "
                                  "with the frames kept when it is drawn, and a new stage keeps others); set "
                                  "data.bucket_window=0 or model.ctc.compress=false")
            moving = [n for n in matching_parameters(model, stage.trainable)
                      if n.startswith(("encoder.", "adapter.", "ctc."))]
            if moving:
                raise ConfigError(f"stage {stage.name!r} trains {moving[0]} while model.ctc.compress keeps frames by "
                                  "the CTC bridge's output: freeze the encoder, adapter and bridge in lm stages "
                                  "(or set model.ctc.compress=false)")


def _enable_activation_checkpointing(llm: Any) -> None:
    # non-reentrant checkpointing: works with frozen inputs (stage 1 trains only the adapter) and with FSDP's hooks
    kwargs = {"use_reentrant": False}
    if hasattr(llm, "activation_checkpointing_enable"):  # transformers >= 5.x (gradient_checkpointing_* deprecated)
        llm.activation_checkpointing_enable(kwargs)
    else:
        llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def _check_distributed(config: TrainConfig) -> None:
    """FSDP shards every weight: refuse what needs whole weights outside the model's forward pass."""
    if config.distributed != "fsdp":
        return
    if config.model.lora is not None:
        raise ConfigError("distributed=fsdp with model.lora is not supported (the final save merges LoRA into "
                          "whole weights); LoRA's few trainable weights fit distributed=ddp")
    if config.model.ctc is not None:
        raise ConfigError("distributed=fsdp with model.ctc is not supported (CTC frame selection runs the speech "
                          "side outside the forward pass); use distributed=ddp")
    if config.precision == "fp16":
        raise ConfigError("distributed=fsdp with precision=fp16 is not supported (each rank sees only its shard "
                          "of the gradients when checking for overflow); use precision=bf16")
    if config.validation.dev:
        raise ConfigError("distributed=fsdp with validation.dev is not supported (validation runs on rank 0 alone, "
                          "and a sharded model needs every rank for its forward pass); validate saved checkpoints, "
                          "or use distributed=ddp")


def _check_workers(config: TrainConfig) -> None:
    if config.data.workers < 0:
        raise ConfigError(f"data.workers must be >= 0, got {config.data.workers}")
    if config.data.workers and config.model.ctc is not None and config.model.ctc.compress:
        raise ConfigError("data.workers > 0 with model.ctc.compress is not supported (planning a batch runs the "
                          "speech encoder and CTC bridge to select frames, which data workers cannot do); set "
                          "data.workers=0, or model.ctc.compress=false")


def _check_same_run(saved_path: Path, config: TrainConfig) -> None:
    """Resuming with other settings would silently mix two runs: refuse, naming the differing options."""
    if not saved_path.is_file():
        return
    saved = yaml.safe_load(saved_path.read_text(encoding="utf-8"))
    # options added since the run started read as their defaults, so an older run still resumes; an option that no
    # longer exists fails to load and is compared as written, so it is named below
    with contextlib.suppress(ConfigError):
        saved = to_dict(from_dict(TrainConfig, saved, str(saved_path)))
    current = to_dict(config)
    for options in (saved, current):  # the number of data workers changes no batch: a run resumes with any
        if isinstance(options.get("data"), dict):
            options["data"].pop("workers", None)
    differing = sorted(key for key in saved.keys() | current.keys() if saved.get(key) != current.get(key))
    if differing:
        raise ConfigError(f"{saved_path}: cannot resume with other settings (differing: {', '.join(differing)}); "
                          "use the same config or another --out")


def train(config: TrainConfig, out_dir: str | Path, *, resume: bool = False, progress: bool = True,
          stop_after: int | None = None) -> dict[str, Any]:
    """Build a :class:`Trainer` and fit it (see :meth:`Trainer.fit`)."""
    return Trainer(config, out_dir).fit(resume=resume, progress=progress, stop_after=stop_after)


def _echo(line: str) -> None:
    tqdm.write(line, file=sys.stderr)  # above the progress bar, which is on stderr too

"""Validation while training: dev loss (and optionally dev WER / EER) every N steps, the best checkpoint kept.

The trainer asks :meth:`Validator.due` after every step; on a validation step (every ``every`` global steps and the
last step of training) the main rank measures the model being trained on the first ``max_records`` records of the
dev manifest, appends one JSON line to ``dev_log.jsonl`` (``step``, ``dev_loss``, ``dev_wer``, ``dev_eer`` as
configured, ``records``, ``seconds``), writes ``dev/*`` TensorBoard scalars and prints one line. Validation steps
are also checkpoint steps, so the best one by ``best_metric`` (lower is better: every metric is a loss or an error
rate; ties go to the lower dev loss) is a checkpoint: ``checkpoints/best`` names it (a marker file like ``latest``,
no symlink) and pruning spares it; ``best.json`` in the run directory holds its step and metrics.

- dev loss: the teacher-forced loss of the ``asr`` layout (speech, then the transcript) on the dev records,
  averaged over target tokens, under the training precision - the same number the training loss is on asr data;
- dev WER / EER: the dev audio transcribed by the model being trained through the one ASR decoder
  (:meth:`speechbraid.inference.transcribe.SpeechLLMTranscriber.from_model`, greedy) and scored by
  :mod:`speechbraid.metrics.asr` (EER over the records that carry entities).

Validation never changes training: it runs under ``no_grad`` in eval mode with the RNG state forked, so a run's
train log is the same with or without it. Under DDP only the main rank validates (the others wait at the step's
barrier): the dev set is small, and one process scoring it keeps the numbers independent of the world size. The
best-so-far travels in every checkpoint, so a resumed run restores it, truncates ``dev_log.jsonl`` to the step it
resumed from and ends with the same log and best as an uninterrupted run.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from speechbraid.batching.collate import IGNORE_INDEX, collate, flatten_braid
from speechbraid.data.manifest import iter_manifest
from speechbraid.data.records import Utterance
from speechbraid.device import autocast
from speechbraid.errors import ConfigError, InputError
from speechbraid.files import atomic_write_text
from speechbraid.inference.transcribe import AudioItem, SpeechLLMTranscriber, audio_item
from speechbraid.layouts.registry import get_layout
from speechbraid.layouts.tokenizer import HFTextTokenizer
from speechbraid.metrics.asr import entity_error_rate, wer
from speechbraid.models.speech_llm import SpeechLLM, shift_labels
from speechbraid.training.checkpoint import BEST, checkpoint_name, write_marker
from speechbraid.training.loop import CHECKPOINT_DIR
from speechbraid.training.runlog import truncate_log

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from speechbraid.models.build import ModelConfig

DEV_LOG = "dev_log.jsonl"
BEST_FILE = "best.json"
METRICS = ("loss", "wer", "eer")
BEST_METRICS = tuple(f"dev_{name}" for name in METRICS)


@dataclass
class ValidationConfig:
    dev: str | None = None  # dev manifest (records with audio and text); None: no validation
    every: int = 500  # validate after every N global steps, and after the last step
    metrics: list[Literal["loss", "wer", "eer"]] = field(default_factory=lambda: ["loss"])  # loss is always measured
    max_records: int | None = 200  # the first N dev records (validation time grows with it); None: all
    best_metric: Literal["dev_loss", "dev_wer", "dev_eer"] = "dev_loss"  # lower is better
    batch_size: int = 8  # dev utterances per forward / decoding batch

    def __post_init__(self) -> None:
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown:
            raise ConfigError(f"validation.metrics: unknown metric {unknown[0]!r}; choose from {', '.join(METRICS)}")
        if self.best_metric not in BEST_METRICS:
            raise ConfigError(f"validation.best_metric: unknown metric {self.best_metric!r}; choose one of "
                              f"{', '.join(BEST_METRICS)}")
        if self.best_metric != "dev_loss" and self.best_metric.removeprefix("dev_") not in self.metrics:
            raise ConfigError(f"validation.best_metric {self.best_metric} is not measured: add "
                              f"{self.best_metric.removeprefix('dev_')} to validation.metrics")
        for name in ("every", "batch_size", "max_records"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"validation.{name} must be >= 1, got {value}")

    @property
    def measured(self) -> tuple[str, ...]:
        """The dev_* fields a validation writes, in log order."""
        return tuple(f"dev_{m}" for m in METRICS if m == "loss" or m in self.metrics)


def load_dev_records(path: str | Path, max_records: int | None, need_entities: bool = False
                     ) -> list[tuple[Utterance, AudioItem]]:
    """The first ``max_records`` records of a dev manifest with their audio items, checked before any training step:
    a missing manifest, a malformed line or a record without audio / duration / text anywhere in it, or a missing or
    unreadable audio file among the records used, is an :class:`InputError` naming the file and line."""
    layout = get_layout("asr")
    kept: list[tuple[Utterance, AudioItem]] = []
    problems: list[str] = []
    for entry in iter_manifest(path):  # raises on a missing file or an unparsable line, naming file:line
        record = entry.record
        lacks = layout.lacks(record) or (None if record.text.strip() else "empty text")
        if lacks:
            problems.append(f"{entry.where()}: [{record.id}] {lacks}")
        elif max_records is None or len(kept) < max_records:
            # reading the header now: a missing audio file fails here, not at the first validation hours later
            kept.append((record, audio_item(str(record.audio), record.id, entry.path, entry.line)))
    if problems:
        shown = "\n  ".join(problems[:5])
        raise InputError(f"{len(problems)} dev record(s) cannot be validated on (dev loss and WER need audio and "
                         f"a transcript):\n  {shown}", path)
    if not kept:
        raise InputError("the dev manifest holds no records", path)
    if need_entities and not any(record.entities for record, _ in kept):
        raise InputError(f"validation.metrics lists eer but none of the {len(kept)} dev record(s) used carries "
                         "entities", path)
    return kept


def _rank(measured: dict[str, Any], metric: str) -> tuple[float, float]:
    """Sort key of a validation, lower is better: the best metric, then the dev loss (WER on a small dev set often
    ties, e.g. at 1.0 early on); NaN (a diverged run) ranks last. Full ties keep the earlier step."""
    def finite(value: float) -> float:
        return math.inf if math.isnan(value) else value

    return finite(measured[metric]), finite(measured["dev_loss"])


class Validator:
    """Measures the model being trained on the dev set and keeps the dev log and the best checkpoint (module doc).

    Built by the trainer before any step (so bad dev input fails first); ``main`` is False on the other ranks of a
    distributed run, which neither validate nor write.
    """

    def __init__(self, config: ValidationConfig, model: SpeechLLM, hf_tokenizer: PreTrainedTokenizerBase,
                 model_config: ModelConfig, features: Callable[[str], torch.Tensor], run_dir: str | Path,
                 total_steps: int, *, amp: torch.dtype | None = None, main: bool = True) -> None:
        if config.dev is None:
            raise ConfigError("validation needs a dev manifest (validation.dev)")
        self.config = config
        self.model = model
        self.features = features
        self.run_dir = Path(run_dir)
        self.total_steps = total_steps
        self.amp = amp
        self.main = main
        self.tokenizer = HFTextTokenizer(hf_tokenizer)
        self.pairs = load_dev_records(config.dev, config.max_records, "eer" in config.metrics)
        self.transcriber = SpeechLLMTranscriber.from_model(model, hf_tokenizer, model_config, features, amp=amp)
        self.best: dict[str, Any] | None = None  # the best validation so far: step, metric, value, its dev_* fields

    @property
    def log_path(self) -> Path:
        return self.run_dir / DEV_LOG

    def due(self, step: int) -> bool:
        """Whether the model after global step ``step`` (1-based) is validated."""
        return step % self.config.every == 0 or step == self.total_steps

    # ------------------------------------------------------------------------------------------------------------
    # Measuring

    def measure(self) -> dict[str, float]:
        """The configured dev_* metrics of the model as it is now; training state is left untouched."""
        model = self.model
        device = next(model.parameters()).device
        if model.compress and any(p.requires_grad for name, p in model.named_parameters()
                                  if name.startswith(("encoder.", "adapter.", "ctc."))):
            model.forget_selection()  # kept frames follow the moving speech side: remembered ones are stale
        was_training = model.training
        devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():  # training draws the same numbers either way
            model.eval()
            try:
                result = {"dev_loss": self._dev_loss(device)}
                if "wer" in self.config.metrics or "eer" in self.config.metrics:
                    result |= self._error_rates()
            finally:
                model.train(was_training)
        return result

    def _dev_loss(self, device: torch.device) -> float:
        """Teacher-forced asr-layout loss, a mean over all target tokens of the dev set (independent of batching)."""
        model, layout = self.model, get_layout("asr")
        select = model.frame_selector(self.features)
        flats = [flatten_braid(layout.build(record, self.tokenizer), model.vocab, model.frame_rate, select)
                 for record, _ in self.pairs]
        order = sorted(range(len(flats)), key=lambda i: len(flats[i]))  # similar lengths together: less padding
        total, count = 0.0, 0
        for start in range(0, len(order), self.config.batch_size):
            batch = collate([[flats[i]] for i in order[start:start + self.config.batch_size]], self.features)
            batch = batch.to(device)
            with autocast(device, self.amp):
                loss, _ = model(batch)
            targets = int((shift_labels(batch.labels, batch.example_ids) != IGNORE_INDEX).sum())  # as forward counts
            total += float(loss) * targets
            count += targets
        return total / max(count, 1)

    def _error_rates(self) -> dict[str, float]:
        metrics = self.config.metrics
        # EER alone needs only the records with entities transcribed
        pairs = self.pairs if "wer" in metrics else [(r, item) for r, item in self.pairs if r.entities]
        run = self.transcriber.transcribe([item for _, item in pairs], batch_size=self.config.batch_size,
                                          progress=False)
        records = [record for record, _ in pairs]
        result: dict[str, float] = {}
        if "wer" in metrics:
            rate = wer([r.text for r in records], run.texts).rate
            result["dev_wer"] = float("nan") if rate is None else rate
        if "eer" in metrics:
            rate = entity_error_rate(records, run.texts).eer
            result["dev_eer"] = float("nan") if rate is None else rate
        return result

    # ------------------------------------------------------------------------------------------------------------
    # Logging and the best checkpoint (main rank only)

    def run(self, step: int, writer: Any = None, echo: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Validate after ``step``: measure, log (JSONL, TensorBoard ``writer``, ``echo`` a line) and keep the best.
        The trainer checkpoints this step right after, which is the checkpoint ``best`` then names (a run killed in
        between has ``best`` name a checkpoint never completed; resuming rewrites it from the checkpoint's state)."""
        began = time.perf_counter()
        measured = self.measure()
        row: dict[str, Any] = {"step": step, **measured, "records": len(self.pairs),
                               "seconds": round(time.perf_counter() - began, 3)}
        with self.log_path.open("a", encoding="utf-8") as log:
            log.write(json.dumps(row) + "\n")
        if writer is not None:
            for key, value in measured.items():
                writer.add_scalar(f"dev/{key.removeprefix('dev_')}", value, step)
        metric = self.config.best_metric
        if self.best is None or _rank(measured, metric) < _rank(self.best, metric):
            self.best = {"step": step, "metric": metric, "value": measured[metric], "checkpoint": checkpoint_name(step),
                         **measured}
            self._write_best()
        if echo is not None:
            shown = "  ".join(f"{k} {v:.4f}" for k, v in measured.items())
            echo(f"validation after step {step}: {shown} ({row['records']} records, {row['seconds']:.1f} s); "
                 f"best {metric} {self.best['value']:.4f} after step {self.best['step']}")
        return row

    def _write_best(self) -> None:
        write_marker(self.run_dir / CHECKPOINT_DIR, BEST, self.best["checkpoint"] if self.best else None)
        if self.best is None:
            (self.run_dir / BEST_FILE).unlink(missing_ok=True)
        else:
            atomic_write_text(self.run_dir / BEST_FILE, json.dumps(self.best, indent=2) + "\n")

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint carries: the best validation so far (plain values only)."""
        return {"best": dict(self.best) if self.best is not None else None}

    def restore(self, step: int, state: dict[str, Any] | None) -> None:
        """After the training loop's restore: a fresh run (``step`` 0) drops an earlier run's dev log and best; a
        resumed one keeps the dev log up to ``step`` and the best its checkpoint recorded (marker and file too)."""
        saved = (state or {}).get("validation") or {}
        self.best = dict(saved["best"]) if saved.get("best") else None
        if not self.main:
            return
        if step == 0:
            self.log_path.unlink(missing_ok=True)
        else:
            truncate_log(self.log_path, step)
        self._write_best()

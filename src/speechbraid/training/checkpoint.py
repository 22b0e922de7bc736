"""Atomic, resumable checkpoints that never unpickle code.

Layout of a run's ``checkpoints/``: ``step-XXXXXXXX/`` directories, each with ``model.safetensors``
(weights) and ``state.pt`` (optimizer, scheduler, RNG, data position: tensors and plain containers
only, loaded with ``torch.load(weights_only=True)``), plus ``latest`` naming the newest complete one.
A directory is written under a temporary name and renamed; ``latest`` is repointed last, so a crash at
any moment leaves the previous checkpoint intact and ``latest`` always names a complete one.
``best`` (written by the trainer's validation, :mod:`speechbraid.training.validation`) names the checkpoint with
the best dev metric; pruning never deletes it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model, save_model
from torch import nn

from speechbraid.errors import CheckpointError, ConfigError, InputError
from speechbraid.files import atomic_write_text

T = TypeVar("T")

MODEL_FILE = "model.safetensors"
STATE_FILE = "state.pt"
LATEST = "latest"
BEST = "best"


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def save_checkpoint(root: str | Path, step: int, model: nn.Module | Mapping[str, torch.Tensor], state: dict[str, Any],
                    keep: int = 1, protect: Collection[str] = ()) -> Path:
    """Write checkpoint ``step`` under ``root`` and keep only the newest ``keep`` ones, besides the one ``best``
    names and those named in ``protect`` (e.g. the checkpoint a resumed run started from). ``model`` is the module
    or its full state dict (a sharded model's weights, gathered: see ``training.distributed``)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    name = checkpoint_name(step)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}."))
    # save_model handles tied tensors (stored once, the alias named in the metadata); it reads only
    # ``state_dict()``, so a gathered state dict goes through the same path and the file is the same
    save_model(model if isinstance(model, nn.Module) else _Weights(model), str(tmp / MODEL_FILE))
    torch.save(state, tmp / STATE_FILE)
    final = root / name
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    atomic_write_text(root / LATEST, name + "\n")
    # Keep the one just written and the newest earlier ones. A checkpoint with a later step is left from another
    # run in this directory: keeping it by name order would delete the new one and strand ``latest``.
    earlier = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and p.name < name)
    later = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and p.name > name]
    spared = set(protect) | {marked for marked in [read_marker(root, BEST)] if marked}
    for old in [p for p in earlier[: max(0, len(earlier) - (keep - 1))] if p.name not in spared] + later:
        shutil.rmtree(old)
    for stale in root.glob(".step-*"):  # temp dirs of a run killed while saving
        shutil.rmtree(stale, ignore_errors=True)
    return final


RUN_MARKERS = ("config.yaml", "checkpoints", "model", "train_log.jsonl")  # what a training run writes


def prepare_run_dir(out: str | Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse to train into an existing non-empty run directory unless told what to do with it.

    ``resume`` continues it; ``overwrite`` deletes it first (only a directory that holds a run's files, so a
    mistyped ``--out`` never deletes unrelated data). Without either, a non-empty ``out`` is an
    :class:`InputError` naming both flags: starting afresh there would replace the old model, config and log.
    """
    out = Path(out)
    if resume and overwrite:
        raise ConfigError("--resume continues the run in --out and --overwrite deletes it: pass one of them")
    if not out.exists():
        return
    if not out.is_dir():
        raise InputError("--out exists and is not a directory", out)
    if not any(out.iterdir()):
        return
    if overwrite:
        if not any((out / marker).exists() for marker in RUN_MARKERS):
            raise InputError(f"--overwrite would delete a directory that is not a training run (none of "
                             f"{', '.join(RUN_MARKERS)} in it); remove it yourself or choose another --out", out)
        shutil.rmtree(out)
    elif not resume:
        raise InputError("run directory is not empty; pass --resume to continue that run or --overwrite to delete "
                         "it and start afresh (or choose another --out)", out)


def read_marker(root: str | Path, marker: str) -> str | None:
    """The checkpoint name a marker file (``latest``, ``best``) holds, None without the file."""
    pointer = Path(root) / marker
    return pointer.read_text(encoding="utf-8").strip() if pointer.is_file() else None


def write_marker(root: str | Path, marker: str, name: str | None) -> None:
    """Point ``marker`` at checkpoint ``name`` (atomically), or remove it when ``name`` is None."""
    if name is None:
        (Path(root) / marker).unlink(missing_ok=True)
    else:
        Path(root).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(root) / marker, name + "\n")


def latest_checkpoint(root: str | Path) -> Path | None:
    pointer = Path(root) / LATEST
    if not pointer.is_file():
        return None
    path = Path(root) / pointer.read_text(encoding="utf-8").strip()
    if not path.is_dir():
        raise CheckpointError("'latest' names a checkpoint that does not exist", pointer)
    return path


def load_checkpoint(path: str | Path, model: nn.Module,
                    load_weights: Callable[[dict[str, torch.Tensor]], None] | None = None) -> dict[str, Any]:
    """Load weights into ``model`` (strict) and return the trainer state; corrupt files raise CheckpointError.
    ``load_weights`` takes the full state dict instead (tied aliases filled in), for a sharded model."""
    path = Path(path)
    try:
        if load_weights is None:
            load_model(model, str(path / MODEL_FILE), strict=True)
        else:
            load_weights(read_weights(path / MODEL_FILE))
    except (OSError, RuntimeError, ValueError, KeyError, SafetensorError) as exc:
        raise CheckpointError(f"cannot load model weights: {exc}", path / MODEL_FILE) from None
    try:
        return torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError) as exc:
        raise CheckpointError(f"cannot load trainer state: {exc}", path / STATE_FILE) from None


def read_weights(file: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of a ``save_model`` file by name, tied aliases included (the metadata names each alias's
    stored tensor)."""
    with safe_open(str(file), framework="pt") as handle:
        weights = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118 (not a dict)
        aliases = handle.metadata() or {}
    weights.update({alias: weights[kept] for alias, kept in aliases.items() if kept in weights})
    return weights


class _Weights:
    """A state dict seen as the one method of a module that ``safetensors.torch.save_model`` calls."""

    def __init__(self, weights: Mapping[str, torch.Tensor]) -> None:
        self._weights = dict(weights)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self._weights)

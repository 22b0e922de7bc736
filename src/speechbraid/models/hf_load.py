"""Loading Hugging Face checkpoints (weights, tokenizers, processors) with errors that name the file.

``from_pretrained`` reports a damaged checkpoint with the loader's own exception: a ``SafetensorError``
for a truncated ``model.safetensors``, an ``UnpicklingError`` (whose message suggests
``weights_only=False``, i.e. running the file's code) for a pickle where weights belong, an
``EOFError`` for an empty ``pytorch_model.bin``. :func:`load_pretrained` turns each into one
:class:`~speechbraid.errors.CheckpointError` naming the weights file; it never retries unsafely.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from speechbraid.errors import CheckpointError

T = TypeVar("T")

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


def weights_file(directory: str | Path) -> Path:
    """The weights file ``from_pretrained`` reads in ``directory`` (the directory itself when there is none)."""
    directory = Path(directory)
    return next((directory / name for name in WEIGHT_FILES if (directory / name).is_file()), directory)


def load_pretrained(load: Callable[..., T], directory: str | Path, what: str, **kwargs: Any) -> T:
    """``load(directory, **kwargs)`` (a ``from_pretrained``), with a damaged checkpoint as a :class:`CheckpointError`
    naming the weights file and saying what it is (``what``: "causal LM", "tokenizer", ...)."""
    from safetensors import SafetensorError

    try:
        with warnings.catch_warnings():
            # torch's safe unpickler warns about pickle protocols before refusing, naming weights_only
            warnings.filterwarnings("ignore", module="torch._weights_only_unpickler")
            return load(directory, **kwargs)
    except pickle.UnpicklingError:
        raise CheckpointError(f"cannot load the {what}: the weights are a pickle that is not plain tensors; "
                              "speechbraid never runs code from a weights file (save it as safetensors)",
                              weights_file(directory)) from None
    except (OSError, ValueError, RuntimeError, EOFError, KeyError, SafetensorError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        raise CheckpointError(f"cannot load the {what}: {message[:300]}", weights_file(directory)) from None

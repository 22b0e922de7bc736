"""Packaged example configs, usable by name (``--config asr_default``) or copied as starting points."""

from __future__ import annotations

from pathlib import Path

from speechbraid.errors import ConfigError

CONFIG_DIR = Path(__file__).parent


def packaged_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def resolve_config(name_or_path: str | Path) -> Path:
    """An existing file wins; otherwise the packaged config of that name."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    packaged = CONFIG_DIR / f"{name_or_path}.yaml"
    if packaged.is_file():
        return packaged
    raise ConfigError(f"config {str(name_or_path)!r} is neither a file nor a packaged config "
                      f"({', '.join(packaged_configs())})")

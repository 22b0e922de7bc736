"""Helpers shared by the exporters: portable audio paths and skip-or-raise."""

from __future__ import annotations

from pathlib import Path

from speechbraid.errors import InputError


def relative_audio(audio: str, base_dir: Path) -> str:
    """``audio`` relative to ``base_dir`` when it lies under it (so a corpus directory moves as a whole)."""
    resolved = Path(audio).resolve()
    try:
        return str(resolved.relative_to(base_dir.resolve()))
    except ValueError:
        return audio


def skip_or_raise(record_id: str, reason: str, skipped: list[str] | None, path: str | Path | None = None) -> None:
    """Record ``record_id`` in ``skipped`` when the caller collects skips, otherwise raise."""
    if skipped is None:
        raise InputError(f"record '{record_id}' {reason}", path)
    skipped.append(record_id)

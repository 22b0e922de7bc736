"""File helpers shared by the exporters: atomic writes and portable audio paths."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from speechbraid.errors import InputError


@contextmanager
def atomic_text(path: str | Path) -> Iterator[TextIO]:
    """Open ``path`` for writing through a temporary file that replaces it only on success.

    A killed or failing export therefore never leaves a half-written file that looks complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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

"""Per-step JSONL training logs that stay consistent with checkpoints across interruptions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from speechbraid.files import iter_jsonl, read_append_log, write_jsonl

LOG_FILE = "train_log.jsonl"


def truncate_log(log_path: Path, last_step: int) -> None:
    """Drop log lines written after the checkpoint we resume from; those steps are re-run and logged again."""
    if not log_path.is_file():
        return
    kept = [row for _, row in read_append_log(log_path) if row["step"] <= last_step]
    write_jsonl(log_path, kept)


def read_train_log(out_dir: str | Path) -> list[dict[str, Any]]:
    """The per-step records of a run's ``train_log.jsonl``."""
    return [row for _, row in iter_jsonl(Path(out_dir) / LOG_FILE)]

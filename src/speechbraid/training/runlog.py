"""Per-step JSONL training logs that stay consistent with checkpoints across interruptions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from speechbraid.training.checkpoint import atomic_write_text

LOG_FILE = "train_log.jsonl"


def truncate_log(log_path: Path, last_step: int) -> None:
    """Drop log lines written after the checkpoint we resume from; those steps are re-run and logged again."""
    if not log_path.is_file():
        return
    kept = []
    for line in log_path.read_text(encoding="utf-8").splitlines():
        try:
            step = json.loads(line)["step"]
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # a line cut short by the crash: it belongs to a step after the checkpoint
        if step <= last_step:
            kept.append(line)
    atomic_write_text(log_path, "".join(line + "\n" for line in kept))


def read_train_log(out_dir: str | Path) -> list[dict[str, Any]]:
    """The per-step records of a run's ``train_log.jsonl``."""
    path = Path(out_dir) / LOG_FILE
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

"""JSONL manifests, read lazily: one record per line, so a million-line manifest never sits in memory.

Every record read keeps its file and line, so later stages (validation, layout building, training)
can point the user at the exact line that is wrong.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from speechbraid.data.records import Utterance
from speechbraid.errors import InputError, ManifestError
from speechbraid.files import atomic_open, iter_text_lines


@dataclass(frozen=True)
class ManifestLine:
    """A record together with where it came from."""

    path: str
    line: int
    record: Utterance

    def where(self) -> str:
        return f"{self.path}:{self.line}"


def iter_manifest(path: str | Path, errors: list[ManifestError] | None = None) -> Iterator[ManifestLine]:
    """Yield records one by one from a JSONL manifest; blank lines are skipped.

    Relative ``audio`` paths resolve against the manifest's directory. A line that cannot be parsed
    raises :class:`ManifestError` naming file and line, unless ``errors`` is given: then the error is
    appended there (reported, not silently lost) and reading goes on.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("manifest not found", path)
    base_dir = path.parent
    for line_no, raw in iter_text_lines(path, errors, ManifestError):  # type: ignore[arg-type]
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
            record = Utterance.from_dict(obj, base_dir=base_dir)
        except (json.JSONDecodeError, ValueError) as exc:
            error = ManifestError(f"invalid record: {exc}", path, line_no)
            if errors is None:
                raise error from None
            errors.append(error)
            continue
        yield ManifestLine(str(path), line_no, record)


def read_manifest(path: str | Path) -> Iterator[Utterance]:
    """Yield only the records of a manifest (lazily); parse errors raise with file and line."""
    for item in iter_manifest(path):
        yield item.record


def write_manifest(records: Iterable[Utterance], path: str | Path, relative_audio: bool = True) -> int:
    """Write records as JSONL atomically (a killed writer never leaves a half-written manifest).

    With ``relative_audio`` audio paths under the manifest's directory are stored relative to it, so a
    corpus directory can be moved as a whole. Returns the number of records written.
    """
    path = Path(path)
    base_dir = path.parent.resolve()
    count = 0
    with atomic_open(path) as handle:
        for record in records:
            obj = record.to_dict()
            if relative_audio and record.audio is not None:
                obj["audio"] = _relative_to(record.audio, base_dir)
            handle.write(json.dumps(obj, ensure_ascii=False) + "\n")
            count += 1
    return count


def _relative_to(audio: str, base_dir: Path) -> str:
    """Relative to the manifest when the audio lies below it, else absolute: a path relative to the
    current directory would break as soon as the manifest is read from elsewhere."""
    resolved = Path(audio).resolve()
    try:
        return str(resolved.relative_to(base_dir))
    except ValueError:
        return str(resolved)

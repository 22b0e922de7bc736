"""JSONL manifests, read lazily: one record per line, so a million-line manifest never sits in memory.

Every record read keeps its file and line, so later stages (validation, layout building, training)
can point the user at the exact line that is wrong.
"""

from __future__ import annotations

import glob
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from speechbraid.data.records import Utterance
from speechbraid.errors import InputError, ManifestError
from speechbraid.files import LineIndex, atomic_open, iter_text_lines

# one line of text (its file and line number given for errors) -> the record it holds
LineParser = Callable[[str, Path, int], Utterance]


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
    for line_no, raw in iter_text_lines(path, errors, ManifestError):  # type: ignore[arg-type]
        if not raw.strip():
            continue
        try:
            record = parse_manifest_line(raw, path, line_no)
        except ManifestError as error:
            if errors is None:
                raise
            errors.append(error)
            continue
        yield ManifestLine(str(path), line_no, record)


def parse_manifest_line(text: str, path: Path, line_no: int) -> Utterance:
    """The record one manifest line holds (relative audio resolved against the manifest's directory); a line
    that is not a record raises :class:`ManifestError` naming file and line."""
    try:
        return Utterance.from_dict(json.loads(text), base_dir=path.parent)
    except (json.JSONDecodeError, ValueError) as exc:
        raise ManifestError(f"invalid record: {exc}", path, line_no) from None


def manifest_shards(spec: str | Path) -> list[Path]:
    """The files a manifest names: one file, a directory of shards (its ``*.jsonl`` and ``*.jsonl.gz``) or a glob
    pattern; shards in sorted name order, so every process reads them as the same concatenation."""
    path = Path(spec)
    if path.is_file():
        return [path]
    if path.is_dir():
        shards = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith((".jsonl", ".jsonl.gz")))
        if not shards:
            raise InputError("manifest directory holds no *.jsonl or *.jsonl.gz shards", path)
        return shards
    if glob.has_magic(str(spec)):
        shards = sorted(Path(p) for p in glob.glob(str(spec)) if Path(p).is_file())
        if not shards:
            raise InputError("no manifest shard matches the pattern", spec)
        return shards
    raise InputError("manifest not found", path)


class LazyManifest:
    """Random access to the records of a manifest of any length (one file or shards read as one), parsing one
    line per access: only the byte offsets of its lines stay in memory (:class:`~speechbraid.files.LineIndex`).

    ``parse`` turns a line into its record (default: a speechbraid manifest line); its errors name file and line.
    """

    def __init__(self, spec: str | Path, parse: LineParser = parse_manifest_line) -> None:
        self.spec = str(spec)
        self.lines = LineIndex(manifest_shards(spec), ManifestError)
        self.parse = parse

    def __len__(self) -> int:
        return len(self.lines)

    def __getitem__(self, index: int) -> ManifestLine:
        path, line_no, text = self.lines.line(index)
        return ManifestLine(str(path), line_no, self.parse(text, path, line_no))

    def close(self) -> None:
        self.lines.close()


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

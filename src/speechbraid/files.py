"""File helpers every layer uses: the one atomic-write mechanism, and JSONL lines read with their place.

A killed or failing writer must never leave a half-written file that a later run (resume, a reader in
another process) takes for a complete one: every file the package writes goes through :func:`atomic_path`
(a temporary name beside the target, renamed onto it only when the whole write succeeded).
"""

from __future__ import annotations

import array
import gzip
import json
import os
import shutil
import tempfile
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TypeVar

import numpy as np

from speechbraid.errors import CheckpointError, InputError

T = TypeVar("T")


@contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """A temporary path beside ``path`` that replaces it when the block ends without an error (else removed).

    For writers that take a file name (soundfile, safetensors, numpy). ``suffix`` keeps an extension that such
    a writer reads its format from.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """``open(path, mode)`` through :func:`atomic_path`: readers see the old file or the whole new one."""
    with atomic_path(path) as tmp, open(tmp, mode, encoding=None if "b" in mode else "utf-8") as handle:
        yield handle


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_open(path) as handle:
        handle.write(text)


def write_jsonl(path: str | Path, rows: Iterable[Any]) -> int:
    """One JSON object per line, atomically; returns the number of rows written."""
    count = 0
    with atomic_open(path) as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def iter_text_lines(path: str | Path, errors: list[InputError] | None = None,
                    error_type: type[InputError] = InputError) -> Iterator[tuple[int, str]]:
    """(1-based line number, text without its line end) for every line of a UTF-8 text file, lazily.

    A line that is not valid UTF-8 raises ``error_type`` naming the file, line and byte, unless ``errors``
    is given: then the error is appended there and reading goes on with the next line (one bad byte
    costs one line, never the rest of the file).
    """
    path = Path(path)
    with path.open("rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            try:
                text = decode_line(raw, path, line_no, error_type)
            except InputError as error:
                if errors is None:
                    raise
                errors.append(error)
                continue
            yield line_no, text


def decode_line(raw: bytes, path: str | Path, line_no: int, error_type: type[InputError] = InputError) -> str:
    """One line's bytes as text without its line end; bad UTF-8 raises ``error_type`` naming file, line and byte."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error_type(f"not valid UTF-8: byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} of the "
                         "line (save the file as UTF-8)", path, line_no) from None
    return text.rstrip("\r\n")


class LineIndex:
    """Random access to the non-blank lines of one or more UTF-8 text files (shards read as one), holding only
    their byte offsets: 8 bytes a line, so a million-line JSONL file costs 8 MB, not its records.

    Built in one streaming pass. ``.gz`` files cannot be seeked cheaply, so each is decompressed once into a
    temporary file (disk, not memory), removed when the index is closed or collected. Errors name the file as
    given and its 1-based line, blank lines counted.
    """

    _OPEN_FILES = 16  # handles kept open at once (a directory may hold thousands of shards)

    def __init__(self, paths: Sequence[str | Path], error_type: type[InputError] = InputError) -> None:
        self.paths = [Path(p) for p in paths]
        self.error_type = error_type
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._readable = [self._seekable(p) for p in self.paths]
        offsets = array.array("q")
        self._blank_at: list[np.ndarray] = []  # per file: global index of the line after each blank line
        starts = [0]
        for readable in self._readable:
            blanks = array.array("q")
            position = 0
            with readable.open("rb") as handle:
                for raw in handle:
                    if raw.strip():
                        offsets.append(position)
                    else:
                        blanks.append(len(offsets))
                    position += len(raw)
            self._blank_at.append(np.frombuffer(blanks, dtype=np.int64) if blanks else np.zeros(0, np.int64))
            starts.append(len(offsets))
        # a view of the array's own buffer: no second copy of the offsets, even for a moment
        self.offsets = np.frombuffer(offsets, dtype=np.int64) if offsets else np.zeros(0, np.int64)
        self.starts = np.array(starts, dtype=np.int64)  # file f holds lines starts[f]..starts[f+1]-1
        self._handles: OrderedDict[int, IO[bytes]] = OrderedDict()
        self._pid = os.getpid()

    def _seekable(self, path: Path) -> Path:
        if not path.is_file():
            raise self.error_type("file not found", path)
        if path.suffix != ".gz":
            return path
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="speechbraid-lines-")
            weakref.finalize(self, self._tmp.cleanup)
        plain = Path(self._tmp.name) / f"{len(os.listdir(self._tmp.name))}-{path.stem}"
        with gzip.open(path, "rb") as source, plain.open("wb") as target:
            shutil.copyfileobj(source, target)
        return plain

    def __len__(self) -> int:
        return len(self.offsets)

    def where(self, index: int) -> tuple[Path, int]:
        """(file as given, 1-based line number) of line ``index``."""
        file = int(np.searchsorted(self.starts, index, side="right")) - 1
        blanks_before = int(np.searchsorted(self._blank_at[file], index, side="right"))
        return self.paths[file], index - int(self.starts[file]) + blanks_before + 1

    def line(self, index: int) -> tuple[Path, int, str]:
        """(file, line number, text without its line end) of non-blank line ``index`` (0-based)."""
        if not 0 <= index < len(self.offsets):
            raise IndexError(index)
        file = int(np.searchsorted(self.starts, index, side="right")) - 1
        if self._pid != os.getpid():  # a forked copy (a DataLoader worker): its inherited handles share their file
            for handle in self._handles.values():  # offsets with the parent's, so seek + read would race: this
                handle.close()  # process opens its own (the temporary files of .gz shards stay the parent's)
            self._handles.clear()
            self._pid = os.getpid()
        handle = self._handles.pop(file, None) or self._readable[file].open("rb")
        self._handles[file] = handle  # most recently used last
        if len(self._handles) > self._OPEN_FILES:
            self._handles.popitem(last=False)[1].close()
        handle.seek(int(self.offsets[index]))
        path, line_no = self.where(index)
        return path, line_no, decode_line(handle.readline(), path, line_no, self.error_type)

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()
        if self._tmp is not None:
            self._tmp.cleanup()


def read_text_lines(paths: Sequence[str | Path]) -> list[str]:
    """All non-blank lines (stripped) of the given UTF-8 text files, in order (one sentence or document a line).

    A missing, undecodable or empty file raises :class:`InputError` naming it (and the line, for bad UTF-8)
    rather than being skipped: a silently missing corpus would quietly weaken what is built from it.
    """
    if not paths:
        raise InputError("no text files given")
    lines: list[str] = []
    for name in paths:
        path = Path(name)
        if not path.is_file():
            raise InputError("text file not found", path)
        found = [text.strip() for _, text in iter_text_lines(path) if text.strip()]
        if not found:
            raise InputError("text file is empty (no non-blank lines)", path)
        lines.extend(found)
    return lines


def iter_jsonl(path: str | Path, error_type: type[InputError] = InputError) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) for every non-blank line of a JSONL file; a line that is not JSON raises
    ``error_type`` naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise error_type("file not found", path)
    for line_no, text in iter_text_lines(path, error_type=error_type):
        if not text.strip():
            continue
        try:
            yield line_no, json.loads(text)
        except json.JSONDecodeError as exc:
            raise error_type(f"not a JSON line ({exc.msg} at column {exc.colno})", path, line_no) from None


def read_model_config(directory: str | Path, file: str, what: str, parse: Callable[[dict[str, Any]], T]) -> T:
    """``parse`` applied to the JSON config ``file`` of a saved model directory; a missing file says the directory
    is not a ``what`` directory, unreadable JSON or missing/unexpected fields name the file as corrupt."""
    directory = Path(directory)
    meta_path = directory / file
    if not meta_path.is_file():
        raise CheckpointError(f"not a {what} directory (no {file})", directory)
    try:
        return parse(json.loads(meta_path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"corrupt {what} config: {exc}", meta_path) from None


def read_append_log(path: str | Path, error_type: type[InputError] = InputError) -> list[tuple[int, Any]]:
    """(line number, parsed value) of an append-only JSONL log that an interrupted run may have cut short.

    Resumable jobs append one line per finished piece of work. A kill can tear the last line (no line end, or
    not JSON): that line is removed from the file, so the job redoes that piece and appends from a clean line
    end. A bad line before the last one is not a torn write: it raises ``error_type`` naming the file and line.
    """
    path = Path(path)
    if not path.is_file():
        return []
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    whole = lines[:-1]  # the piece after the last line end ('' when the file ends cleanly) is torn
    rows: list[tuple[int, Any]] = []
    good_bytes = 0
    for number, line in enumerate(whole, start=1):
        if line.strip():
            try:
                rows.append((number, json.loads(line)))
            except (json.JSONDecodeError, UnicodeDecodeError):
                if number < len(whole):
                    raise error_type("corrupt line in a resumable log; delete the file to start over", path,
                                     number) from None
                break  # the last line: cut short mid-write
        good_bytes += len(line) + 1
    if good_bytes < len(raw):
        with path.open("r+b") as handle:
            handle.truncate(good_bytes)
    return rows

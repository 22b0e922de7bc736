"""Errors a user can act on: each names the file (and line) that caused it."""

from __future__ import annotations

from pathlib import Path


class SpeechbraidError(Exception):
    """Base class for every error the toolkit raises on purpose (the CLI prints these without a traceback)."""


class InputError(SpeechbraidError):
    """Bad user input: a file, and where known a line, that cannot be used as it is."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None) -> None:
        self.path = None if path is None else str(path)
        self.line = line
        self.message = message
        super().__init__(self.location() + message)

    def __reduce__(self) -> tuple[type, tuple[str, str | None, int | None]]:
        # pickled with its fields (a DataLoader worker sends it to the training process), not the joined text
        return type(self), (self.message, self.path, self.line)

    def location(self) -> str:
        if self.path is None:
            return ""
        return f"{self.path}:{self.line}: " if self.line is not None else f"{self.path}: "


class ManifestError(InputError):
    """A manifest line that cannot be parsed into a record."""


class ConfigError(SpeechbraidError):
    """An unknown option or an invalid value in a config or on the command line."""


class CheckpointError(InputError):
    """A checkpoint that is missing, incomplete or corrupt."""

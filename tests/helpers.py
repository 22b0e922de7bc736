"""Small stand-ins shared by several test modules (``tests/`` is on ``sys.path`` under pytest's default import
mode)."""

from __future__ import annotations


class WordTokenizer:
    """One id per distinct word (no model files needed): enough to lay braids out."""

    bos_id, eos_id = 1, 2

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def encode(self, text: str) -> list[int]:
        return [self.ids.setdefault(w, 3 + len(self.ids)) for w in text.split()]

    def decode(self, ids: list[int]) -> str:
        words = {v: k for k, v in self.ids.items()}
        return " ".join(words[i] for i in ids)

"""The named entities of the embedded default corpus as one lexicon, and a matcher that finds them in any text.

The lexicon holds every name the corpus builder can put in an entity slot, across all splits (held-out names
included): drug names and conditions (medical), institutions, products, card names and account types (banking).
Slots whose values are generated rather than named (amounts, dates, dosages) are left out. Drug names come from
the optional ``drug-named-entity-recognition`` dictionary; without it the lexicon simply has no drugs and says so.

:class:`EntityMatcher` uses the entity error rate's whole-word rule (:mod:`speechbraid.metrics.asr`): a match is
bounded by a non-alphanumeric character or a string end on each side, and whitespace inside a multi-word name
matches any run of whitespace. It differs in one point, on purpose: matching ignores case, because a display
should mark "Aspirin" at the start of a sentence too (EER scoring stays case-sensitive).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from speechbraid.corpora.banking import banking_entity_names
from speechbraid.corpora.medical import CONDITIONS, drug_names
from speechbraid.data.records import EntitySpan
from speechbraid.errors import InputError


@dataclass(frozen=True)
class EntityLexicon:
    """Entity names -> entity type, and the parts that could not be loaded (each with the reason)."""

    names: Mapping[str, str]
    missing: tuple[str, ...] = ()


def default_entity_lexicon() -> EntityLexicon:
    """Every entity name of the default corpus; a part whose source is not installed is listed in ``missing``."""
    names: dict[str, str] = {}
    missing: list[str] = []
    try:
        names.update(dict.fromkeys(drug_names(), "drug"))
    except InputError as exc:
        missing.append(f"drug names ({exc})")
    # conditions such as "an ear infection" carry their article in the corpus; the name is what follows it
    names.update((_without_article(c), "condition") for c in CONDITIONS)
    names.update(banking_entity_names())
    return EntityLexicon(names, tuple(missing))


def _without_article(name: str) -> str:
    for article in ("a ", "an ", "the "):
        if name.startswith(article):
            return name[len(article):]
    return name


class EntityMatcher:
    """Finds the names of a lexicon in a text (whole words, case ignored, longest name first)."""

    def __init__(self, names: Mapping[str, str]) -> None:
        # keys compared in lower case (what re.IGNORECASE compares); of two names that differ only in case the
        # first one's type is kept
        self._types: dict[str, str] = {}
        for name, kind in names.items():
            key = _key(name)
            if key:
                self._types.setdefault(key, kind)
        # One alternation, longest first, so "Northbrook Credit Union" wins over a shorter name inside it;
        # a regex scan stays fast with thousands of names (one pass over the text).
        bodies = [r"\s+".join(re.escape(part) for part in key.split())
                  for key in sorted(self._types, key=lambda k: (-len(k), k))]
        self._pattern = (re.compile(rf"(?<![^\W_])(?:{'|'.join(bodies)})(?![^\W_])", re.IGNORECASE)
                         if bodies else None)

    def __len__(self) -> int:
        return len(self._types)

    def find(self, text: str) -> list[EntitySpan]:
        """Non-overlapping matches in ``text``, left to right; ``span.text`` is the text as written there."""
        if self._pattern is None:
            return []
        return [EntitySpan(m.group(0), self._types.get(_key(m.group(0)), "entity"), m.start(), m.end())
                for m in self._pattern.finditer(text)]


def _key(name: str) -> str:
    return " ".join(name.split()).lower()


def highlight(text: str, spans: list[EntitySpan]) -> list[tuple[str, str | None]]:
    """``text`` cut into (piece, entity type or None) pairs that join back to ``text`` exactly."""
    pieces: list[tuple[str, str | None]] = []
    at = 0
    for span in spans:
        if span.start > at:
            pieces.append((text[at:span.start], None))
        pieces.append((text[span.start:span.end], span.type))
        at = span.end
    if at < len(text):
        pieces.append((text[at:], None))
    return pieces

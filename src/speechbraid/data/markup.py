"""Inline entity markup for text files: ``Take [aspirin](drug) twice a day.``

``[surface](type)`` becomes the plain surface text plus an :class:`EntitySpan` with character offsets
into the plain text. A square bracket outside that pattern (``[aspirin(drug)``, ``[x]()``) is broken
markup and a ``ValueError`` naming the column: spoken as literal text it would silently lose the entity.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from speechbraid.data.records import EntitySpan

_ENTITY = re.compile(r"\[([^\[\]\n]+)\]\(([A-Za-z][\w\-]*)\)")
_BRACKET = re.compile(r"[\[\]]")


def parse_markup(line: str) -> tuple[str, list[EntitySpan]]:
    """Strip entity markup; return the plain text and its entity spans."""
    pieces: list[str] = []
    entities: list[EntitySpan] = []
    length = 0
    cursor = 0
    for match in _ENTITY.finditer(line):
        _check_plain(line, cursor, match.start())
        before = line[cursor : match.start()]
        pieces.append(before)
        length += len(before)
        surface, kind = match.group(1), match.group(2)
        entities.append(EntitySpan(text=surface, type=kind, start=length, end=length + len(surface)))
        pieces.append(surface)
        length += len(surface)
        cursor = match.end()
    _check_plain(line, cursor, len(line))
    pieces.append(line[cursor:])
    return "".join(pieces), entities


def _check_plain(line: str, start: int, end: int) -> None:
    stray = _BRACKET.search(line, start, end)
    if stray is not None:
        raise ValueError(f"broken entity markup at column {stray.start() + 1} ({line[stray.start():][:30]!r}): "
                         "write entities as [surface](type), e.g. [aspirin](drug)")


def to_markup(text: str, entities: Sequence[EntitySpan]) -> str:
    """Inverse of :func:`parse_markup` for non-overlapping spans."""
    out: list[str] = []
    cursor = 0
    for ent in sorted(entities, key=lambda e: e.start):
        if ent.start < cursor:
            raise ValueError(f"overlapping entity spans at character {ent.start}")
        out.append(text[cursor : ent.start])
        out.append(f"[{text[ent.start : ent.end]}]({ent.type})")
        cursor = ent.end
    out.append(text[cursor:])
    return "".join(out)

"""Inline entity markup for text files: ``Take [aspirin](drug) twice a day.``

``[surface](type)`` becomes the plain surface text plus an :class:`EntitySpan` with character offsets
into the plain text. Brackets that do not form that pattern are kept as literal text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from speechbraid.data.records import EntitySpan

_ENTITY = re.compile(r"\[([^\[\]\n]+)\]\(([A-Za-z][\w\-]*)\)")


def parse_markup(line: str) -> tuple[str, list[EntitySpan]]:
    """Strip entity markup; return the plain text and its entity spans."""
    pieces: list[str] = []
    entities: list[EntitySpan] = []
    length = 0
    cursor = 0
    for match in _ENTITY.finditer(line):
        before = line[cursor : match.start()]
        pieces.append(before)
        length += len(before)
        surface, kind = match.group(1), match.group(2)
        entities.append(EntitySpan(text=surface, type=kind, start=length, end=length + len(surface)))
        pieces.append(surface)
        length += len(surface)
        cursor = match.end()
    pieces.append(line[cursor:])
    return "".join(pieces), entities


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

"""Sentence frames with typed slots: filling one gives the text and its entity spans together.

A frame is a plain string such as ``"Take {dosage} of {drug} {frequency}."``. Each slot name (digits
at the end ignored, so ``{drug2}`` is a second drug) maps to a generator that returns the surface
text and its entity type, or None for slots that carry no entity. Offsets are computed while the
text is assembled, so ``text[start:end] == entity.text`` holds by construction.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from num2words import num2words

from speechbraid.data.records import EntitySpan

SlotFiller = Callable[[random.Random], tuple[str, str | None]]

_SLOT = re.compile(r"\{([a-z_]+?)(\d*)\}")


@dataclass(frozen=True)
class Filled:
    """A generated sentence with its entity spans."""

    text: str
    entities: tuple[EntitySpan, ...]


def fill(frame: str, fillers: Mapping[str, SlotFiller], rng: random.Random) -> Filled:
    """Fill every slot of ``frame``; repeated slots of one kind (``{drug}``, ``{drug2}``) get distinct values."""
    parts: list[str] = []
    spans: list[tuple[int, int, str]] = []
    used: dict[str, set[str]] = {}
    pos = 0
    length = 0
    for match in _SLOT.finditer(frame):
        literal = frame[pos : match.start()]
        parts.append(literal)
        length += len(literal)
        kind = match.group(1)
        if kind not in fillers:
            raise KeyError(f"frame {frame!r} has slot {{{kind}}} with no filler")
        surface, ent_type = _distinct(fillers[kind], rng, used.setdefault(kind, set()))
        if ent_type is not None:
            spans.append((length, length + len(surface), ent_type))
        parts.append(surface)
        length += len(surface)
        pos = match.end()
    parts.append(frame[pos:])
    text = "".join(parts)
    text = text[0].upper() + text[1:]
    return Filled(text, tuple(EntitySpan(text[s:e], t, s, e) for s, e, t in spans))


def _distinct(filler: SlotFiller, rng: random.Random, used: set[str]) -> tuple[str, str | None]:
    for _ in range(20):
        surface, ent_type = filler(rng)
        if surface not in used:
            break
    used.add(surface)
    return surface, ent_type


def choice_filler(values: Sequence[str], ent_type: str | None = None) -> SlotFiller:
    """A slot filled with one of ``values``, uniformly."""
    values = tuple(values)
    return lambda rng: (rng.choice(values), ent_type)


def number_words(value: int) -> str:
    """A whole number in words without commas ("one thousand two hundred and fifty")."""
    return num2words(value).replace(",", "")


def ordinal_words(value: int) -> str:
    """An ordinal in words ("twenty-first")."""
    return num2words(value, to="ordinal")

"""Held-out entities: which names each split may use, and the check that none leaks into training.

Dev and test get their own named entities (drugs; institution and brand stems), chosen only among
names that never occur as a word in the general corpus, so they cannot appear in any training
text, training audio or the text-only domain corpus. Types whose values come from a small closed
vocabulary (dosages, amounts, dates, conditions, account types) are shared by all splits.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from random import Random

from speechbraid.data.manifest import read_manifest

HELD_OUT_TYPES = frozenset({"drug", "institution", "product", "card_name"})


@dataclass(frozen=True)
class Pools:
    """Disjoint name pools: training (speech and domain text), dev and test (test names also in domain text)."""

    train: tuple[str, ...]
    dev: tuple[str, ...]
    test: tuple[str, ...]

    def for_split(self, split: str) -> tuple[str, ...]:
        return {"train": self.train, "dev": self.dev, "test": self.test}[split]


def partition_names(
    names: Sequence[str], rng: Random, *, forbidden: set[str], dev_fraction: float, test_fraction: float
) -> Pools:
    """Split ``names`` into pools; dev/test only get names whose lower-case form is not in ``forbidden``."""
    eligible = [n for n in names if n.lower() not in forbidden]
    rng.shuffle(eligible)
    n_test = max(1, round(len(names) * test_fraction))
    n_dev = max(1, round(len(names) * dev_fraction))
    if n_test + n_dev >= len(eligible):
        raise ValueError(f"only {len(eligible)} of {len(names)} names can be held out; need {n_test + n_dev}")
    test, dev = set(eligible[:n_test]), set(eligible[n_test : n_test + n_dev])
    train = tuple(n for n in names if n not in test and n not in dev)
    return Pools(train=train, dev=tuple(sorted(dev)), test=tuple(sorted(test)))


@dataclass(frozen=True)
class Leak:
    """A held-out entity found in a text it must not occur in."""

    entity: str
    where: str  # "file:line"


def find_leaks(held_out: Iterable[str], texts: Iterable[tuple[str, str]]) -> list[Leak]:
    """Every occurrence (case-insensitive, whole words) of a held-out entity in ``(where, text)`` pairs."""
    names = sorted({n.lower() for n in held_out}, key=len, reverse=True)
    if not names:
        return []
    pattern = re.compile(
        r"(?<![A-Za-z])(?:" + "|".join(re.escape(n) for n in names) + r")(?![A-Za-z])", re.IGNORECASE
    )
    return [Leak(m.group(0), where) for where, text in texts for m in pattern.finditer(text)]


def check_held_out(corpus_dir: str | Path) -> list[Leak]:
    """Leaks in a built corpus: held-out entities (of :data:`HELD_OUT_TYPES`) where they must not be.

    Dev entities must not occur in any other file: every text corpus under ``text/`` except ``dev``, and
    the training speech manifest. Test entities must not occur in the speech training data (``train``
    transcripts and manifest), the general LM text or the dev texts -- but they do occur in the domain
    text (``text/domain.*``): that is the text-only adaptation data whose effect the JSTIP study measures.
    Returns [] when the property holds.
    """
    root = Path(corpus_dir)
    text_dir = root / "text"
    held: dict[str, set[str]] = {}
    for split in ("dev", "test"):
        held[split] = {
            e.text for r in read_manifest(text_dir / f"{split}.jsonl") for e in r.entities if e.type in HELD_OUT_TYPES
        }
    texts = [p for p in sorted(text_dir.iterdir()) if p.suffix in (".txt", ".jsonl")]
    speech_train = root / "speech" / "train" / "manifest.jsonl"
    if speech_train.is_file():
        texts.append(speech_train)
    forbidden = {"dev": [p for p in texts if p.stem != "dev"],
                 "test": [p for p in texts if p.stem not in ("test", "domain")]}
    return [leak for split in ("dev", "test") for leak in find_leaks(held[split], _lines(forbidden[split]))]


def _lines(paths: Iterable[Path]) -> Iterator[tuple[str, str]]:
    for path in paths:
        if not path.is_file():
            continue
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                yield f"{path}:{number}", line

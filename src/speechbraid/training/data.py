"""Training data: sources (manifest + layout), a stateful token-ratio mixer, and an online packer.

Everything here is deterministic given the seed and resumable from ``state_dict()``: the trainer
stores it in each checkpoint, so a resumed run sees exactly the examples an uninterrupted run would.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from speechbraid.batching.collate import IGNORE_INDEX, FlatBraid, flatten_braid
from speechbraid.braid.vocab import VocabLayout
from speechbraid.data.manifest import iter_manifest
from speechbraid.data.records import Utterance
from speechbraid.errors import InputError
from speechbraid.layouts.registry import get_layout
from speechbraid.layouts.tokenizer import TextTokenizer

if TYPE_CHECKING:
    from speechbraid.data.questions import SpokenQA


@dataclass
class SourceConfig:
    manifest: str
    layout: str = "asr"  # a name in speechbraid.layouts.registry.LAYOUTS
    weight: float = 1.0  # share of target tokens this source contributes to the mix
    # interleaved layouts: speech-first, text-first or both (alternating); generation layouts (gen-<pattern>,
    # manifest = a spoken QA file): the prompt's modality, text, speech or both
    variant: str = "both"
    segment_by: str = "silence"  # segment-il / mixed-il: silence or silence+punct
    name: str = ""

    def __post_init__(self) -> None:
        get_layout(self.layout).check_variant(self.variant)
        if self.weight <= 0:
            raise ValueError(f"source weight must be > 0, got {self.weight}")
        self.name = self.name or f"{self.layout}:{self.manifest}"


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


class BraidSource:
    """The records of one manifest and the layout that turns each into a braid."""

    def __init__(self, config: SourceConfig, tokenizer: TextTokenizer, vocab: VocabLayout, frame_rate: float,
                 records: Sequence[Utterance] | None = None) -> None:
        self.config = config
        self.layout = get_layout(config.layout)
        self.tokenizer = tokenizer
        self.vocab = vocab
        self.frame_rate = frame_rate
        self.select: Callable[[str], Sequence[int]] | None = None  # CTC compression: audio -> kept frames
        self.records = list(records) if records is not None else self._load(config)
        if not self.records:
            raise InputError("no records to train on", config.manifest)

    def _load(self, config: SourceConfig) -> list[Utterance] | list[SpokenQA]:
        if self.layout.reads == "spoken-qa":
            return self._load_spoken_qa(config)
        records, problems = [], []
        for item in iter_manifest(config.manifest):
            rec = item.record
            lacks = self.layout.lacks(rec) or (None if rec.text.strip() else "empty text")
            if lacks:
                problems.append(f"{item.where()}: [{rec.id}] {lacks}")
            else:
                records.append(rec)
        if problems:
            shown = "\n  ".join(problems[:5])
            raise InputError(
                f"{len(problems)} record(s) cannot be used with layout {config.layout!r}:\n  {shown}\n"
                "run `speechbraid validate --policy skip` (or `speechbraid align`) first", config.manifest)
        return records

    def _load_spoken_qa(self, config: SourceConfig) -> list[SpokenQA]:
        from speechbraid.data.questions import load_spoken_qa

        records, problems = load_spoken_qa(config.manifest), []
        for number, pair in enumerate(records, start=1):
            where = f"{config.manifest}:{number}: [{pair.id}]"
            if pair.units is None or not pair.units:
                problems.append(f"{where} no answer units")
            elif max(pair.units) >= self.vocab.num_units:
                problems.append(f"{where} unit {max(pair.units)} outside the model's {self.vocab.num_units} units")
            elif config.variant != "text" and pair.question_audio is None:
                problems.append(f"{where} no question audio for a speech prompt (use variant: text)")
        if problems:
            shown = "\n  ".join(problems[:5])
            raise InputError(f"{len(problems)} pair(s) cannot be used with layout {config.layout!r}:\n  {shown}",
                             config.manifest)
        return records

    def __len__(self) -> int:
        return len(self.records)

    def example(self, index: int, epoch: int) -> FlatBraid:
        record = self.records[index]
        choice = _stable_int(record.id) + epoch  # alternatives alternate across epochs
        braid = self.layout.build(record, self.tokenizer, variant=self.config.variant,
                                  segment_by=self.config.segment_by, choice=choice)
        return flatten_braid(braid, self.vocab, self.frame_rate, self.select)


class MixSampler:
    """Draws examples from several sources so their target-token counts follow the configured weights.

    Deterministic: the next source is the one furthest below its share (ties: lowest index); each
    source walks a seeded permutation of its records, reshuffled every epoch.
    """

    def __init__(self, sources: Sequence[BraidSource], seed: int = 0) -> None:
        if not sources:
            raise ValueError("the training mix needs at least one source")
        self.sources = list(sources)
        self.seed = seed
        total = sum(s.config.weight for s in sources)
        self.shares = np.array([s.config.weight / total for s in sources])
        self.consumed = np.zeros(len(sources))
        self.epochs = [0] * len(sources)
        self.positions = [0] * len(sources)

    def _order(self, source: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, source, self.epochs[source]])
        return rng.permutation(len(self.sources[source]))

    def next_key(self) -> tuple[int, int, int]:
        """(source, record index, epoch) of the next example; advances the sampler."""
        source = int(np.argmin(self.consumed / self.shares))
        if self.positions[source] >= len(self.sources[source]):
            self.epochs[source] += 1
            self.positions[source] = 0
        index = int(self._order(source)[self.positions[source]])
        self.positions[source] += 1
        return source, index, self.epochs[source]

    def example(self, key: tuple[int, int, int]) -> FlatBraid:
        source, index, epoch = key
        return self.sources[source].example(index, epoch)

    def account(self, key: tuple[int, int, int], flat: FlatBraid) -> None:
        self.consumed[key[0]] += sum(1 for label in flat.labels if label != IGNORE_INDEX)

    def state_dict(self) -> dict[str, Any]:
        return {"consumed": self.consumed.tolist(), "epochs": list(self.epochs), "positions": list(self.positions)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.consumed = np.array(state["consumed"], dtype=float)
        self.epochs = list(state["epochs"])
        self.positions = list(state["positions"])

    def mix_report(self) -> dict[str, float]:
        total = max(self.consumed.sum(), 1.0)
        return {s.config.name: float(c / total) for s, c in zip(self.sources, self.consumed, strict=True)}


class PackedBatcher:
    """Fills ``rows`` rows of ``max_len`` positions online (first fit) and closes a batch when the next
    example fits nowhere or would exceed ``max_audio_seconds``; that example opens the next batch.

    Positions count speech frames too, so batches are duration-aware: long utterances make fewer
    examples per batch.
    """

    def __init__(self, sampler: MixSampler, rows: int, max_len: int, max_audio_seconds: float | None = None) -> None:
        self.sampler = sampler
        self.rows = rows
        self.max_len = max_len
        self.max_audio_seconds = max_audio_seconds
        self.pending: tuple[int, int, int] | None = None

    def next_batch(self) -> list[list[FlatBraid]]:
        rows: list[list[FlatBraid]] = []
        room: list[int] = []
        audio_seconds = 0.0
        while True:
            key = self.pending or self.sampler.next_key()
            self.pending = None
            flat = self.sampler.example(key)
            if len(flat) > self.max_len:
                raise InputError(f"example {flat.id!r} has {len(flat)} positions, more than the context "
                                 f"max_len={self.max_len}; raise data.max_len or drop long utterances")
            seconds = flat.num_frames / self.sampler.sources[key[0]].frame_rate
            slot = next((i for i, free in enumerate(room) if len(flat) <= free), None)
            if slot is None and len(rows) < self.rows:
                slot = len(rows)
                rows.append([])
                room.append(self.max_len)
            limit = self.max_audio_seconds
            over_audio = limit is not None and bool(rows[0]) and audio_seconds + seconds > limit
            if slot is None or over_audio:
                self.pending = key
                return [r for r in rows if r]
            rows[slot].append(flat)
            room[slot] -= len(flat)
            audio_seconds += seconds
            self.sampler.account(key, flat)

    def state_dict(self) -> dict[str, Any]:
        return {"sampler": self.sampler.state_dict(), "pending": list(self.pending) if self.pending else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state["sampler"])
        self.pending = tuple(state["pending"]) if state["pending"] else None  # type: ignore[assignment]

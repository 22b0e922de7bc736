"""Training data: sources (manifest + layout), a stateful token-ratio mixer, and an online packer.

Everything here is deterministic given the seed and resumable from ``state_dict()``: the trainer
stores it in each checkpoint, so a resumed run sees exactly the examples an uninterrupted run would.

Memory does not grow with the manifest: a source holds the byte offsets of its lines (8 bytes a record) and
parses one line when an example is drawn; the mixer holds one seeded permutation per source (8 bytes a record).

Two costs are kept apart so DDP ranks can share one batch sequence without each building all of it:
*planning* (which records form each batch - reading the line, checking it, building its braid and counting
its positions and target tokens) is cheap and runs on every rank, so the sequence never depends on the world
size; *building* (laying the braid out position by position, then features and collation in the trainer) runs
only on the rank that trains the batch (:meth:`PackedBatcher.skip_batch` on the others). Under CTC compression
the kept frames decide a braid's length, so planning then runs the frame selection too (remembered per audio).
Which rank builds which batch, and background workers that build them ahead: :mod:`speechbraid.training.loader`.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from speechbraid.batching.collate import BraidSize, FlatBraid, braid_size, flatten_braid
from speechbraid.braid.spans import Braid
from speechbraid.braid.vocab import VocabLayout
from speechbraid.data.manifest import LazyManifest, LineParser, manifest_shards, parse_manifest_line
from speechbraid.data.records import Utterance
from speechbraid.errors import InputError
from speechbraid.layouts.registry import get_layout
from speechbraid.layouts.tokenizer import TextTokenizer

if TYPE_CHECKING:
    from speechbraid.data.questions import SpokenQA

Key = tuple[int, int, int]  # (source, record index, epoch)


@dataclass
class SourceConfig:
    manifest: str  # a JSONL manifest, a directory of *.jsonl / *.jsonl.gz shards, or a glob pattern of shards
    layout: str = "asr"  # a name in speechbraid.layouts.registry.LAYOUTS
    weight: float = 1.0  # share of target tokens this source contributes to the mix
    # interleaved layouts: speech-first, text-first or both (alternating); generation layouts (gen-<pattern>,
    # manifest = a spoken QA file): the prompt's modality, text, speech or both
    variant: str = "both"
    segment_by: str = "silence"  # segment-il / mixed-il: silence or silence+punct
    name: str = ""
    # manifest: speechbraid records; lhotse: a cuts manifest (.jsonl[.gz]), one single-supervision cut a line;
    # lhotse-shar: a lhotse Shar directory (cuts.NNNNNN.jsonl.gz shards, audio read in place from recording.NNNNNN.tar)
    format: Literal["manifest", "lhotse", "lhotse-shar"] = "manifest"
    # a line that cannot be parsed or used with the layout: error stops naming file:line; skip passes it and counts it
    # (the counts are in the run's metrics, "skipped_lines")
    on_bad: Literal["error", "skip"] = "error"

    def __post_init__(self) -> None:
        get_layout(self.layout).check_variant(self.variant)
        if self.weight <= 0:
            raise ValueError(f"source weight must be > 0, got {self.weight}")
        if self.on_bad not in ("error", "skip"):
            raise ValueError(f"on_bad must be 'error' or 'skip', got {self.on_bad!r}")
        self.name = self.name or f"{self.layout}:{self.manifest}"


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


@dataclass(frozen=True)
class PlannedExample:
    """A drawn record's braid and size: all that packing and the mix need, before any layout by position."""

    key: Key
    braid: Braid
    size: BraidSize
    seconds: float  # audio the example brings to its batch


def _line_parser(config: SourceConfig) -> LineParser:
    if config.format == "lhotse":
        from speechbraid.data.interop.lhotse_cuts import parse_cut_line  # lhotse loads only for lhotse sources

        return parse_cut_line
    if config.format == "lhotse-shar":
        from speechbraid.data.interop.lhotse_cuts import parse_shar_cut_line

        return parse_shar_cut_line
    return parse_manifest_line


# sources over the same files (asr and word-il of one manifest, say) share one line index while any is alive
_OPEN_MANIFESTS: weakref.WeakValueDictionary[tuple[Any, ...], LazyManifest] = weakref.WeakValueDictionary()


def _open_manifest(config: SourceConfig) -> LazyManifest:
    files = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in manifest_shards(config.manifest)]
    key = (config.format, *files)  # size and mtime: a rewritten file is indexed again
    manifest = _OPEN_MANIFESTS.get(key)
    if manifest is None:
        manifest = LazyManifest(config.manifest, _line_parser(config))
        _OPEN_MANIFESTS[key] = manifest
    return manifest


class BraidSource:
    """The records of one manifest and the layout that turns each into a braid.

    Utterance manifests are read on demand (:class:`~speechbraid.data.manifest.LazyManifest`), so a record is
    checked when it is first drawn: an unusable one raises naming its file and line, or under ``on_bad: skip``
    is counted and passed over (remembered, so later epochs pass it at once). Spoken QA files (generation
    layouts) are small and are read and checked whole up front.
    """

    _SHOWN_PROBLEMS = 5  # skipped lines listed in the report (all are counted)

    def __init__(self, config: SourceConfig, tokenizer: TextTokenizer, vocab: VocabLayout, frame_rate: float) -> None:
        self.config = config
        self.layout = get_layout(config.layout)
        self.tokenizer = tokenizer
        self.vocab = vocab
        self.frame_rate = frame_rate
        self.select: Callable[[str], Sequence[int]] | None = None  # CTC compression: audio -> kept frames
        self.skip = config.on_bad == "skip"
        self.problems: list[str] = []  # the first skipped lines, "file:line: reason"
        self._bad = np.zeros(0, dtype=bool)  # per record: found unusable (allocated on the first one)
        self._skipped = 0  # how many are (a count, so no check scans the whole table)
        self.manifest: LazyManifest | None = None
        self.pairs: list[SpokenQA] = []
        if self.layout.reads == "spoken-qa":
            self.pairs = self._load_spoken_qa(config)
        else:
            self.manifest = _open_manifest(config)
        if len(self) == 0:
            raise InputError("no records to train on", config.manifest)

    def _load_spoken_qa(self, config: SourceConfig) -> list[SpokenQA]:
        from speechbraid.data.questions import load_spoken_qa

        self.pairs = load_spoken_qa(config.manifest)
        problems = []
        for index, pair in enumerate(self.pairs):
            if pair.units is None or not pair.units:
                problems.append((index, "no answer units"))
            elif max(pair.units) >= self.vocab.num_units:
                problems.append((index, f"unit {max(pair.units)} outside the model's {self.vocab.num_units} units"))
            elif config.variant != "text" and pair.question_audio is None:
                problems.append((index, "no question audio for a speech prompt (use variant: text)"))
        if problems and not self.skip:
            shown = "\n  ".join(f"{self.where(i)}: [{self.pairs[i].id}] {why}" for i, why in problems[:5])
            raise InputError(f"{len(problems)} pair(s) cannot be used with layout {config.layout!r}:\n  {shown}",
                             config.manifest)
        for index, why in problems:
            self.reject(index, f"[{self.pairs[index].id}] {why}")
        return self.pairs

    def __len__(self) -> int:
        return len(self.manifest) if self.manifest is not None else len(self.pairs)

    @property
    def skipped(self) -> int:
        """Distinct records found unusable and passed over so far (``on_bad: skip``)."""
        return self._skipped

    def where(self, index: int) -> str:
        if self.manifest is not None:
            path, line = self.manifest.lines.where(index)
            return f"{path}:{line}"
        return f"{self.config.manifest}:{index + 1}"

    def reject(self, index: int, reason: str) -> None:
        """Record ``index`` cannot be used: raise naming its file and line, or (skip policy) count and remember it."""
        where = f"{self.where(index)}: {reason}"
        if not self.skip:
            raise InputError(f"{where} (layout {self.config.layout!r}; run `speechbraid validate --policy skip` "
                             "first, or set the source's on_bad: skip)")
        if not len(self._bad):
            self._bad = np.zeros(len(self), dtype=bool)
        if not self._bad[index]:
            self._bad[index] = True
            self._skipped += 1
            if len(self.problems) < self._SHOWN_PROBLEMS:
                self.problems.append(where)
        if self._skipped == len(self):  # never loop forever over a source with nothing left to draw
            raise InputError(f"every record of {self.config.manifest} is unusable with layout "
                             f"{self.config.layout!r}; first: {self.problems[0]}")

    def is_bad(self, index: int) -> bool:
        return bool(len(self._bad)) and bool(self._bad[index])

    def braid(self, index: int, epoch: int) -> Braid | None:
        """The braid of record ``index`` in ``epoch`` (alternative forms alternate across epochs); None when the
        record is unusable under the skip policy."""
        if self.is_bad(index):
            return None
        record: Utterance | SpokenQA
        if self.manifest is not None:
            try:
                line = self.manifest[index]
            except InputError as exc:
                self.reject(index, exc.message)
                return None
            record = line.record
            lacks = self.layout.lacks(record) or (None if record.text.strip() else "empty text")
            if lacks:
                self.reject(index, f"[{record.id}] {lacks}")
                return None
        else:
            record = self.pairs[index]
        choice = _stable_int(record.id) + epoch
        try:
            return self.layout.build(record, self.tokenizer, variant=self.config.variant,
                                     segment_by=self.config.segment_by, choice=choice)
        except (InputError, ValueError) as exc:  # a record the builder cannot use: name its line
            self.reject(index, f"[{record.id}] {getattr(exc, 'message', exc)}")
            return None

    def encoded_audio(self) -> Iterator[tuple[str, str]]:
        """(audio path, ``file:line [id]``) of every audio file this source's braids run through the speech encoder,
        in one pass over the manifest; an unreadable line raises or, under ``on_bad: skip``, is counted and passed."""
        if self.layout.reads == "spoken-qa":
            if self.config.variant != "text":
                for index, pair in enumerate(self.pairs):
                    if pair.question_audio and not self.is_bad(index):
                        yield pair.question_audio, f"{self.where(index)} [{pair.id}]"
            return
        if not self.layout.needs_audio or self.manifest is None:
            return
        for index in range(len(self)):
            try:
                record = self.manifest[index].record
            except InputError as exc:
                self.reject(index, exc.message)
                continue
            if record.audio:
                yield record.audio, f"{self.where(index)} [{record.id}]"

    def size(self, braid: Braid) -> BraidSize:
        return braid_size(braid, self.frame_rate, self.select)

    def flatten(self, braid: Braid) -> FlatBraid:
        return flatten_braid(braid, self.vocab, self.frame_rate, self.select)

    def example(self, index: int, epoch: int) -> FlatBraid:
        braid = self.braid(index, epoch)
        if braid is None:
            raise InputError(f"{self.where(index)}: record is unusable (skipped)")
        return self.flatten(braid)

    def contents(self) -> dict[str, int]:
        """Records per file this source draws from: a checkpoint keeps it, so a resume over changed data (a shard
        removed or added, lines appended) is refused instead of silently drawing other examples."""
        if self.manifest is None:
            return {str(self.config.manifest): len(self.pairs)}
        lines = self.manifest.lines
        return {str(path): int(count) for path, count in zip(lines.paths, np.diff(lines.starts), strict=True)}

    def check_contents(self, saved: dict[str, int]) -> None:
        now = self.contents()
        if saved == now:
            return
        gone = sorted(saved.keys() - now.keys())
        new = sorted(now.keys() - saved.keys())
        changed = [f"{path} ({saved[path]} records then, {now[path]} now)" for path in saved
                   if path in now and saved[path] != now[path]]
        what = "; ".join(part for part in (f"missing since: {', '.join(gone)}" if gone else "",
                                           f"new: {', '.join(new)}" if new else "",
                                           f"changed: {', '.join(changed)}" if changed else "") if part)
        raise InputError(f"the training data changed since the checkpoint ({what}); a resumed run would draw other "
                         "examples than the interrupted one - restore the files, or start a new run",
                         self.config.manifest)

    def bad_state(self) -> list[int]:
        return np.flatnonzero(self._bad).tolist()

    def load_bad_state(self, indices: Sequence[int]) -> None:
        if len(indices):
            if not len(self._bad):
                self._bad = np.zeros(len(self), dtype=bool)
            self._bad[np.asarray(indices, dtype=np.int64)] = True
            self._skipped = int(self._bad.sum())


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
        self._orders: dict[int, tuple[int, np.ndarray]] = {}  # source -> (epoch, its permutation)

    def _order(self, source: int) -> np.ndarray:
        epoch = self.epochs[source]
        cached = self._orders.get(source)
        if cached is None or cached[0] != epoch:  # one permutation per source and epoch, not one per draw
            rng = np.random.default_rng([self.seed, source, epoch])
            order = rng.permutation(len(self.sources[source]))
            cached = (epoch, order.astype(np.int32) if len(order) < 2**31 else order)  # same order, half the bytes
            self._orders[source] = cached
        return cached[1]

    def next_key(self) -> Key:
        """(source, record index, epoch) of the next example; advances the sampler."""
        source = int(np.argmin(self.consumed / self.shares))
        if self.positions[source] >= len(self.sources[source]):
            self.epochs[source] += 1
            self.positions[source] = 0
        index = int(self._order(source)[self.positions[source]])
        self.positions[source] += 1
        return source, index, self.epochs[source]

    def plan(self, key: Key) -> PlannedExample | None:
        """The planned example of ``key``; None when its record is skipped as unusable."""
        source = self.sources[key[0]]
        braid = source.braid(key[1], key[2])
        if braid is None:
            return None
        size = source.size(braid)
        return PlannedExample(key, braid, size, size.num_frames / source.frame_rate)

    def next_example(self) -> PlannedExample:
        """The next usable example (unusable records are skipped and counted by their source, or raise)."""
        while True:
            planned = self.plan(self.next_key())
            if planned is not None:
                return planned

    def example(self, key: Key) -> FlatBraid:
        source, index, epoch = key
        return self.sources[source].example(index, epoch)

    def flatten(self, planned: PlannedExample) -> FlatBraid:
        return self.sources[planned.key[0]].flatten(planned.braid)

    def account(self, planned: PlannedExample) -> None:
        self.consumed[planned.key[0]] += planned.size.target_tokens

    def state_dict(self) -> dict[str, Any]:
        return {"consumed": self.consumed.tolist(), "epochs": list(self.epochs), "positions": list(self.positions),
                "skipped": [s.bad_state() for s in self.sources], "contents": [s.contents() for s in self.sources]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for source, saved in zip(self.sources, state.get("contents") or [], strict=False):  # older checkpoints: none
            source.check_contents(saved)
        self.consumed = np.array(state["consumed"], dtype=float)
        self.epochs = list(state["epochs"])
        self.positions = list(state["positions"])
        for source, bad in zip(self.sources, state.get("skipped") or [[]] * len(self.sources), strict=True):
            source.load_bad_state(bad)  # checkpoints from before skipping existed have none

    def mix_report(self) -> dict[str, float]:
        total = max(self.consumed.sum(), 1.0)
        return {s.config.name: float(c / total) for s, c in zip(self.sources, self.consumed, strict=True)}

    def skipped_report(self) -> dict[str, int]:
        """Unusable records passed over so far, per source (``on_bad: skip``)."""
        return {s.config.name: s.skipped for s in self.sources}


class PackedBatcher:
    """Fills ``rows`` rows of ``max_len`` positions online (first fit) and closes a batch when the next
    example fits nowhere or would exceed ``max_audio_seconds`` or ``max_padded_audio_seconds``; that example
    opens the next batch.

    Positions count speech frames too, so batches are duration-aware: long utterances make fewer
    examples per batch. ``max_audio_seconds`` caps the sum of the examples' audio; the encoder, though, runs on
    the batch's distinct audios padded to the longest, so one long utterance among many short ones costs
    (audios x longest) - ``max_padded_audio_seconds`` caps exactly that.

    ``bucket_window`` > 0 adds duration bucketing (the idea of lhotse's ``DynamicBucketingSampler``, kept
    deterministic): that many examples are drawn at once, sorted by audio length (then positions) and packed
    in that order, so each batch holds utterances of similar length and the encoder pads little; the window's
    batches are then trained in a seeded random order, not shortest first. The last, partly filled batch of a
    window is not trained as is: its examples open the next window.

    :meth:`next_plan` decides a batch from braid sizes alone; :meth:`materialize` lays it out. Every DDP rank plans
    every batch (so all see one sequence) and materializes only its own (:meth:`next_batch` / :meth:`skip_batch`).
    """

    def __init__(self, sampler: MixSampler, rows: int, max_len: int, max_audio_seconds: float | None = None,
                 max_padded_audio_seconds: float | None = None, bucket_window: int = 0) -> None:
        if bucket_window < 0:
            raise ValueError(f"bucket_window must be >= 0, got {bucket_window}")
        self.sampler = sampler
        self.rows = rows
        self.max_len = max_len
        self.max_audio_seconds = max_audio_seconds
        self.max_padded_audio_seconds = max_padded_audio_seconds
        self.bucket_window = bucket_window
        self.pending: PlannedExample | Key | None = None  # the example that opens the next batch (a key after resume)
        self.queue: list[list[list[PlannedExample]]] = []  # bucketing: the current window's batches not yet taken
        self.carry: list[PlannedExample] = []  # bucketing: examples of the last window's partial batch
        self.windows = 0  # bucketing: windows planned so far (seeds each window's batch order)

    def _replan(self, planned: PlannedExample | Key) -> PlannedExample:
        if isinstance(planned, tuple):  # restored from a checkpoint: plan it again (it was usable then)
            planned = self.sampler.plan(planned)  # type: ignore[assignment]
            assert planned is not None
        source = self.sampler.sources[planned.key[0]]
        return PlannedExample(planned.key, planned.braid, source.size(planned.braid), planned.seconds)

    def _draw(self) -> PlannedExample:
        """The next example of the mix that fits one row (longer ones are rejected, naming their line)."""
        while True:
            planned = self.sampler.next_example()
            if planned.size.positions <= self.max_len:
                return planned
            self.sampler.sources[planned.key[0]].reject(
                planned.key[1], f"[{planned.braid.id}] {planned.size.positions} positions, more than the context "
                f"max_len={self.max_len}; raise data.max_len or drop long utterances")

    def next_plan(self) -> list[list[PlannedExample]]:
        """The next batch's rows of planned examples (advances the sampler; cheap: nothing is laid out)."""
        if not self.bucket_window:
            batch, _ = self._pack(self._next_online)
            return batch
        if not self.queue:
            self._plan_window()
        return self.queue.pop(0)

    def _next_online(self) -> PlannedExample:
        pending, self.pending = self.pending, None
        return self._replan(pending) if pending is not None else self._draw()

    def _plan_window(self) -> None:
        drawn = [self._draw() for _ in range(max(self.bucket_window - len(self.carry), 1))]
        for planned in drawn:
            self.sampler.account(planned)  # the whole window is trained: the mix counts it as drawn
        pool = sorted(self.carry + drawn, key=lambda p: (p.seconds, p.size.positions))
        stream = iter(pool)
        batches: list[list[list[PlannedExample]]] = []
        pending: list[PlannedExample] = []  # the example that closed the previous batch

        def next_in_pool() -> PlannedExample | None:
            return pending.pop() if pending else next(stream, None)

        while True:
            batch, overflow = self._pack(next_in_pool)
            if overflow is None:  # the pool ran out: this batch is partial, its examples open the next window
                self.carry = [planned for row in batch for planned in row]
                break
            batches.append(batch)
            pending.append(overflow)
        if not batches:  # a window smaller than one batch: train what there is rather than grow without end
            batches, self.carry = [batch], []
        order = np.random.default_rng([self.sampler.seed, 0xB0C, self.windows]).permutation(len(batches))
        self.queue = [batches[i] for i in order]
        self.windows += 1

    def _pack(self, next_example: Callable[[], PlannedExample | None]) -> tuple[
            list[list[PlannedExample]], PlannedExample | None]:
        """First-fit packing of examples from ``next_example`` into one batch: (its rows, the example that did not
        fit and opens the next batch - None when ``next_example`` ran out)."""
        rows: list[list[PlannedExample]] = []
        room: list[int] = []
        audio_seconds = 0.0
        audios: dict[str, float] = {}  # the batch's distinct audio (encoded once each) -> seconds
        while True:
            planned = next_example()
            if planned is None:
                return [r for r in rows if r], None
            length = planned.size.positions
            slot = next((i for i, free in enumerate(room) if length <= free), None)
            if slot is None and len(rows) < self.rows:
                slot = len(rows)
                rows.append([])
                room.append(self.max_len)
            if slot is None or (rows[0] and self._over_audio(audio_seconds, audios, planned)):
                if not self.bucket_window:
                    self.pending = planned
                return [r for r in rows if r], planned
            rows[slot].append(planned)
            room[slot] -= length
            audio_seconds += planned.seconds
            if planned.seconds and planned.braid.audio is not None:
                audios[planned.braid.audio] = planned.seconds
            if not self.bucket_window:  # online, an example counts toward the mix once placed (a window: once drawn)
                self.sampler.account(planned)

    def _over_audio(self, audio_seconds: float, audios: dict[str, float], planned: PlannedExample) -> bool:
        if self.max_audio_seconds is not None and audio_seconds + planned.seconds > self.max_audio_seconds:
            return True
        if self.max_padded_audio_seconds is None or not planned.seconds or planned.braid.audio in audios:
            return False
        longest = max(planned.seconds, *audios.values()) if audios else planned.seconds
        return (len(audios) + 1) * longest > self.max_padded_audio_seconds

    def materialize(self, plan: list[list[PlannedExample]]) -> list[list[FlatBraid]]:
        """Lay the planned rows out position by position (the expensive part, done only by the batch's rank)."""
        rows = [[self.sampler.flatten(planned) for planned in row] for row in plan]
        for row, planned_row in zip(rows, plan, strict=True):
            for flat, planned in zip(row, planned_row, strict=True):
                if len(flat) != planned.size.positions:  # braid_size and flatten_braid must agree, or rows overflow
                    raise RuntimeError(f"example {flat.id!r}: planned {planned.size.positions} positions, "
                                       f"laid out {len(flat)}")
        return rows

    def next_batch(self) -> list[list[FlatBraid]]:
        return self.materialize(self.next_plan())

    def skip_batch(self) -> None:
        """Advance past the next batch exactly as :meth:`next_batch` would, without laying it out (another rank's)."""
        self.next_plan()

    def state_dict(self) -> dict[str, Any]:
        pending = self.pending.key if isinstance(self.pending, PlannedExample) else self.pending
        state: dict[str, Any] = {"sampler": self.sampler.state_dict(), "pending": list(pending) if pending else None}
        if self.bucket_window:
            state["bucketing"] = {"windows": self.windows, "carry": [list(p.key) for p in self.carry],
                                  "queue": [[[list(p.key) for p in row] for row in batch] for batch in self.queue]}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state["sampler"])
        self.pending = tuple(state["pending"]) if state["pending"] else None  # type: ignore[assignment]
        bucketing = state.get("bucketing", {"windows": 0, "carry": [], "queue": []})
        self.windows = bucketing["windows"]
        self.carry = [self._replan(tuple(key)) for key in bucketing["carry"]]  # type: ignore[arg-type]
        self.queue = [[[self._replan(tuple(key)) for key in row] for row in batch]  # type: ignore[arg-type]
                      for batch in bucketing["queue"]]

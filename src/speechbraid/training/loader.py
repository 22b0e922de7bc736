"""One rank's collated training batches, in order: built in the training process, or in background workers.

The batch sequence is the batcher's (:class:`~speechbraid.training.data.PackedBatcher`); of each group of ``world``
global batches this rank trains the ``rank``-th (:func:`next_own_plan`, the one place that says which). Building a
batch - laying it out, reading its audio, computing features, collating - is the expensive part; planning is cheap.

With ``workers`` W > 0 a :class:`torch.utils.data.DataLoader` over :class:`WorkerBatches` builds them in W forked
processes: each worker restores a copy of the batcher from its state when the stream started, plans the same
sequence, and builds only its share (of this rank's batches the i-th goes to worker i % W; it only plans the
others). The DataLoader asks the workers in turn and returns their batches in order (``in_order=True``), so the
stream is the one the training process would build itself. The training process keeps its own batcher in lock
step (it plans every batch it takes), so the batcher's ``state_dict()`` - what a checkpoint stores - is always the
state after the batches consumed, whatever the workers have prepared ahead (at most ``prefetch_factor`` each).

An error a worker meets on purpose (:class:`~speechbraid.errors.SpeechbraidError`: an unreadable audio file, a bad
manifest line) is passed back as a value and raised in the training process as the same error, at the batch it
belongs to; anything else is a bug and keeps the DataLoader's worker traceback.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from speechbraid.batching.collate import BraidBatch, FlatBraid
from speechbraid.errors import ConfigError, InputError, SpeechbraidError
from speechbraid.training.data import PackedBatcher, PlannedExample

Plan = list[list[PlannedExample]]
Collate = Callable[[Sequence[Sequence[FlatBraid]]], BraidBatch]  # laid-out rows -> a batch with its features
PREFETCH = 2  # batches each worker prepares ahead


def next_own_plan(batcher: PackedBatcher, world: int = 1, rank: int = 0) -> Plan:
    """Advance the batcher past one group of ``world`` global batches; the plan of this rank's one (the others'
    batches are only planned: every rank plans the whole sequence, so it never depends on the world size)."""
    own: Plan = []
    for k in range(world):
        if k == rank:
            own = batcher.next_plan()
        else:
            batcher.skip_batch()
    return own


def build_batch(batcher: PackedBatcher, plan: Plan, collate: Collate) -> BraidBatch:
    """Lay ``plan`` out and collate it; an audio file that cannot be read is named with the manifest line using it."""
    rows = batcher.materialize(plan)
    try:
        return collate(rows)
    except InputError as exc:
        user = next((p for row in plan for p in row if exc.path is not None and p.braid.audio == exc.path), None)
        if user is None:
            raise
        source = batcher.sampler.sources[user.key[0]]
        raise InputError(f"{exc.message} (the audio of {source.where(user.key[1])} [{user.braid.id}])",
                         exc.path) from None


class _Failure:
    """An error met in a worker, sent back in place of its batch (pickled by value: the error's class and fields)."""

    def __init__(self, error: SpeechbraidError) -> None:
        self.error = error


class WorkerBatches(IterableDataset):
    """The batches of one rank as a DataLoader worker builds them: its share, from the batcher state ``state``."""

    def __init__(self, batcher: PackedBatcher, state: dict[str, Any], collate: Collate, world: int, rank: int) -> None:
        self.batcher, self.state, self.collate = batcher, state, collate
        self.world, self.rank = world, rank

    def __iter__(self) -> Iterator[BraidBatch | _Failure]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        batcher = self.batcher  # the worker's own (forked) copy
        batcher.load_state_dict(self.state)
        try:
            for index in itertools.count():
                plan = next_own_plan(batcher, self.world, self.rank)
                if index % workers == worker:
                    yield build_batch(batcher, plan, self.collate)
        except SpeechbraidError as exc:
            yield _Failure(exc)  # at the place of the batch that failed (or this worker's next one)


def _as_is(batch: Any) -> Any:
    return batch


def _start_worker(_: int) -> None:
    torch.set_num_threads(1)  # the DataLoader does this too; stated here because features run on CPU threads


class BatchStream:
    """This rank's batches in order (:meth:`next`), from ``batcher``'s current state when :meth:`start` is called.

    ``workers=0`` builds each batch in this process when asked; ``workers`` > 0 builds them ahead in that many
    forked DataLoader workers (``pin_memory`` for a CUDA device: the batches come back in pinned memory; the caller
    moves them to its device). Restart it (:meth:`start`) whenever what a worker copied at its start changes: the
    batcher's rows, the trainable parameters (which audio the frozen encoder's store spares), a restored state.
    """

    def __init__(self, batcher: PackedBatcher, collate: Collate, *, world: int = 1, rank: int = 0, workers: int = 0,
                 pin_memory: bool = False) -> None:
        if workers < 0:
            raise ConfigError(f"data.workers must be >= 0, got {workers}")
        if workers and "fork" not in multiprocessing.get_all_start_methods():
            raise ConfigError("data.workers > 0 needs the fork start method (Linux); set data.workers=0 here")
        self.batcher, self.collate = batcher, collate
        self.world, self.rank, self.workers, self.pin_memory = world, rank, workers, pin_memory
        self._batches: Iterator[BraidBatch | _Failure] | None = None

    def start(self) -> BatchStream:
        self.close()
        if self.workers:
            # forked workers inherit the tokenizer: HF tokenizers' own threads must not run in them
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            dataset = WorkerBatches(self.batcher, self.batcher.state_dict(), self.collate, self.world, self.rank)
            loader = DataLoader(dataset, batch_size=None, collate_fn=_as_is, num_workers=self.workers,
                                prefetch_factor=PREFETCH, pin_memory=self.pin_memory, in_order=True,
                                multiprocessing_context=multiprocessing.get_context("fork"),
                                worker_init_fn=_start_worker)
            self._batches = iter(loader)
        return self

    def next(self) -> BraidBatch:
        """This rank's next batch; the batcher advances past the ``world`` global batches of its group."""
        if self._batches is None:
            if self.workers:
                raise RuntimeError("BatchStream.next before start")
            return build_batch(self.batcher, next_own_plan(self.batcher, self.world, self.rank), self.collate)
        item = next(self._batches)
        if isinstance(item, _Failure):
            self.close()
            raise item.error from None
        next_own_plan(self.batcher, self.world, self.rank)  # lock step: the state a checkpoint stores
        return item

    def close(self) -> None:
        """Stop the workers (batches they prepared ahead are dropped; the batcher's state does not count them)."""
        batches, self._batches = self._batches, None
        shutdown = getattr(batches, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()

    def __enter__(self) -> BatchStream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

"""Turn braids into the tensors of one batch.

Each braid is flattened to positions: a token position holds a vocabulary id; a speech position holds
(audio index, adapter frame) and is filled by the model with that adapter frame. Labels sit on the
position of the token they name (``IGNORE_INDEX`` where no loss); the model shifts them by one and
never lets a prediction cross an example boundary. Several braids may share one row (packing): each
gets its own ``example_ids`` value and positions restarting at 0, and attention is reset between them.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from speechbraid.braid.frames import frame_range, midpoint_frame, num_frames_for
from speechbraid.braid.spans import Braid, ParallelSpan, SpecialSpan, SpeechSpan, StreamToken, TextSpan, UnitSpan
from speechbraid.braid.vocab import VocabLayout

IGNORE_INDEX = -100


@dataclass(frozen=True)
class FlatBraid:
    """One braid as positions: ``tokens[i]`` (or -1 at speech), ``frames[i]`` (-1 at tokens), ``labels[i]``."""

    tokens: tuple[int, ...]
    frames: tuple[int, ...]
    labels: tuple[int, ...]
    audio: str | None
    num_frames: int  # adapter frames the braid's audio yields (0 without audio)
    id: str = ""
    # second (speech) stream of parallel spans: vocabulary id per position (-1 outside parallel spans);
    # None when the braid has no parallel span
    stream: tuple[int, ...] | None = None
    stream_labels: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return len(self.tokens)


def flatten_braid(braid: Braid, vocab: VocabLayout, frame_rate: float,
                  select: Callable[[str], Sequence[int]] | None = None) -> FlatBraid:
    """Lay a braid out position by position under the vocab layout and the time <-> frame rule.

    ``select(audio)`` (CTC compression) gives the sorted frames of the audio that are kept: a speech span then
    holds the kept frames inside the range the time <-> frame rule gives it, or, where none is kept, the one
    frame holding its midpoint - spans keep their word times, they only hold fewer frames.
    """
    tokens: list[int] = []
    frames: list[int] = []
    labels: list[int] = []
    stream: list[int] = []
    stream_labels: list[int] = []
    num_frames, kept = _audio_frames(braid, frame_rate, select)

    def put(ids: Sequence[int], loss: bool, second: Sequence[int] | None = None) -> None:
        tokens.extend(ids)
        frames.extend([-1] * len(ids))
        labels.extend(ids if loss else [IGNORE_INDEX] * len(ids))
        stream.extend(second if second is not None else [-1] * len(ids))
        stream_labels.extend(second if second is not None and loss else [IGNORE_INDEX] * len(ids))

    def resolve(token: StreamToken, unit: bool) -> int:
        if isinstance(token, str):
            return vocab.special_id(token)
        return vocab.unit_id(token) if unit else token

    for span in braid.spans:
        if isinstance(span, TextSpan):
            put(span.tokens, span.loss)
        elif isinstance(span, SpecialSpan):
            put((vocab.special_id(span.token),), span.loss)
        elif isinstance(span, ParallelSpan):
            put([resolve(t, False) for t in span.text], span.loss, [resolve(u, True) for u in span.speech])
        elif isinstance(span, UnitSpan):
            put([vocab.unit_id(u) for u in span.units], span.loss)
        elif isinstance(span, SpeechSpan):
            held = _held_frames(span, frame_rate, num_frames, kept)
            tokens.extend([-1] * len(held))
            frames.extend(held)
            labels.extend([IGNORE_INDEX] * len(held))
            stream.extend([-1] * len(held))
            stream_labels.extend([IGNORE_INDEX] * len(held))
        else:  # pragma: no cover - the Span union is closed
            raise TypeError(f"unknown span {span!r}")
    parallel = any(isinstance(span, ParallelSpan) for span in braid.spans)
    return FlatBraid(tuple(tokens), tuple(frames), tuple(labels), braid.audio if num_frames else None, num_frames,
                     braid.id, tuple(stream) if parallel else None, tuple(stream_labels) if parallel else None)


def _audio_frames(braid: Braid, frame_rate: float,
                  select: Callable[[str], Sequence[int]] | None) -> tuple[int, Sequence[int] | None]:
    """Adapter frames of the braid's audio (0 without speech) and the kept ones under CTC compression."""
    if not braid.has_speech:
        return 0, None
    if braid.audio is None or braid.duration is None:
        raise ValueError(f"braid {braid.id!r} has speech spans but no audio/duration")
    return num_frames_for(braid.duration, frame_rate), select(braid.audio) if select is not None else None


def _held_frames(span: SpeechSpan, frame_rate: float, num_frames: int, kept: Sequence[int] | None) -> list[int]:
    first, last = frame_range(span.start, span.end, frame_rate, num_frames)
    if kept is None:
        return list(range(first, last))
    return list(kept[bisect_left(kept, first):bisect_left(kept, last)]) or [
        min(max(midpoint_frame(span.start, span.end, frame_rate), first), last - 1)]


@dataclass(frozen=True)
class BraidSize:
    """What packing and the token-ratio mix need to know of a braid, without laying it out."""

    positions: int  # len() of its FlatBraid
    target_tokens: int  # positions whose (first-stream) label carries loss
    num_frames: int  # adapter frames of its audio (0 without audio)


def braid_size(braid: Braid, frame_rate: float, select: Callable[[str], Sequence[int]] | None = None) -> BraidSize:
    """The size :func:`flatten_braid` would give the braid, counted span by span (no per-position tuples)."""
    num_frames, kept = _audio_frames(braid, frame_rate, select)
    positions = targets = 0
    for span in braid.spans:
        if isinstance(span, SpeechSpan):
            positions += len(_held_frames(span, frame_rate, num_frames, kept))
            continue
        if isinstance(span, TextSpan):
            n = len(span.tokens)
        elif isinstance(span, SpecialSpan):
            n = 1
        elif isinstance(span, ParallelSpan):
            n = len(span.text)
        elif isinstance(span, UnitSpan):
            n = len(span.units)
        else:  # pragma: no cover - the Span union is closed
            raise TypeError(f"unknown span {span!r}")
        positions += n
        targets += n if span.loss else 0
    return BraidSize(positions, targets, num_frames)


@dataclass
class BraidBatch:
    input_ids: torch.Tensor  # (B, L) vocabulary ids; 0 at speech and padding positions
    speech_mask: torch.Tensor  # (B, L) True where an adapter frame goes
    speech_index: torch.Tensor  # (B, L) index into the flattened (audio, frame) grid; 0 elsewhere
    labels: torch.Tensor  # (B, L) target id at its own position, IGNORE_INDEX where no loss
    position_ids: torch.Tensor  # (B, L) restart at 0 for every packed example
    example_ids: torch.Tensor  # (B, L) 1.. per example within a row; 0 = padding
    audio: list[str]  # one entry per distinct audio in the batch
    audio_frames: torch.Tensor  # (A,) adapter frames declared for each audio
    features: torch.Tensor | None = None  # (A, T, n_mels) filled by a feature function
    feature_lengths: torch.Tensor | None = None
    stream_ids: torch.Tensor | None = None  # (B, L) second-stream ids of parallel spans, -1 elsewhere
    stream_labels: torch.Tensor | None = None  # (B, L) their targets, IGNORE_INDEX where no loss

    def to(self, device: torch.device | str) -> BraidBatch:
        moved = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in self.__dict__.items()}
        return BraidBatch(**moved)

    def pin_memory(self) -> BraidBatch:
        """The batch in page-locked memory (a DataLoader's ``pin_memory`` calls this), for fast copies to a GPU."""
        return BraidBatch(**{k: v.pin_memory() if isinstance(v, torch.Tensor) else v for k, v in self.__dict__.items()})

    @property
    def num_loss_tokens(self) -> int:
        count = int((self.labels != IGNORE_INDEX).sum())
        if self.stream_labels is not None:
            count += int((self.stream_labels != IGNORE_INDEX).sum())
        return count

    @property
    def fill_ratio(self) -> float:
        """Non-padding fraction of positions (packing efficiency)."""
        return float((self.example_ids > 0).float().mean())


def collate(
    rows: Sequence[Sequence[FlatBraid]],
    features: Callable[[str], torch.Tensor] | None = None,
    max_len: int | None = None,
) -> BraidBatch:
    """Build a batch from rows of flattened braids (one row = one or more packed examples).

    ``features(path)`` returns ``(T, n_mels)`` for one audio file; it is called once per distinct audio.
    Rows are right-padded to ``max_len`` (or the longest row).
    """
    length = max_len or max(sum(len(f) for f in row) for row in rows)
    shape = (len(rows), length)
    input_ids = torch.zeros(shape, dtype=torch.long)
    speech_index = torch.zeros(shape, dtype=torch.long)
    labels = torch.full(shape, IGNORE_INDEX, dtype=torch.long)
    position_ids = torch.zeros(shape, dtype=torch.long)
    example_ids = torch.zeros(shape, dtype=torch.long)
    speech_mask = torch.zeros(shape, dtype=torch.bool)
    parallel = any(f.stream is not None for row in rows for f in row)
    stream_ids = torch.full(shape, -1, dtype=torch.long) if parallel else None
    stream_labels = torch.full(shape, IGNORE_INDEX, dtype=torch.long) if parallel else None
    audio: list[str] = []
    audio_frames: list[int] = []
    slot_of: dict[str, int] = {}
    for flat in (f for row in rows for f in row):
        if flat.audio is not None and flat.audio not in slot_of:
            slot_of[flat.audio] = len(audio)
            audio.append(flat.audio)
            audio_frames.append(flat.num_frames)
    grid = max(audio_frames, default=1)
    for b, row in enumerate(rows):
        cursor = 0
        for example, flat in enumerate(row, start=1):
            n = len(flat)
            if cursor + n > length:
                raise ValueError(f"example {flat.id!r} ({n} positions) does not fit a row of {length}")
            sl = slice(cursor, cursor + n)
            tokens = torch.tensor(flat.tokens, dtype=torch.long)
            frames = torch.tensor(flat.frames, dtype=torch.long)
            is_speech = frames >= 0
            input_ids[b, sl] = tokens.clamp(min=0)
            speech_mask[b, sl] = is_speech
            if flat.audio is not None:
                speech_index[b, sl] = torch.where(is_speech, slot_of[flat.audio] * grid + frames, 0)
            labels[b, sl] = torch.tensor(flat.labels, dtype=torch.long)
            position_ids[b, sl] = torch.arange(n)
            example_ids[b, sl] = example
            if flat.stream is not None:
                stream_ids[b, sl] = torch.tensor(flat.stream, dtype=torch.long)
                stream_labels[b, sl] = torch.tensor(flat.stream_labels, dtype=torch.long)
            cursor += n
        # padding continues the positions so they never look like the start of a new example
        position_ids[b, cursor:] = torch.arange(length - cursor)
    batch = BraidBatch(input_ids, speech_mask, speech_index, labels, position_ids, example_ids, audio,
                       torch.tensor(audio_frames, dtype=torch.long), stream_ids=stream_ids,
                       stream_labels=stream_labels)
    if audio and features is not None:
        feats = [features(path) for path in audio]
        batch.feature_lengths = torch.tensor([f.shape[0] for f in feats], dtype=torch.long)
        batch.features = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
    return batch

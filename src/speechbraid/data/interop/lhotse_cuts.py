"""lhotse interop: one utterance <-> one cut with a single supervision.

Mapping (speechbraid -> lhotse):
- ``audio`` -> ``Recording.from_file`` (id = utterance id); ``extra["offset"]`` (NeMo-style segment
  start, seconds) -> cut ``start``; ``duration`` -> cut and supervision ``duration``;
- ``text``, ``speaker`` -> ``SupervisionSegment.text`` / ``.speaker``;
- ``words`` -> ``alignment["word"]`` as ``AlignmentItem(symbol, start, duration, score)``, times relative
  to the supervision start as lhotse keeps them inside a cut;
- ``domain``, ``entities``, ``source``, ``units`` and unknown keys -> ``SupervisionSegment.custom``.

A cut must have a recording, so text-only records cannot become cuts: they raise
:class:`InputError`, or are listed in ``skipped`` when the caller passes a list.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from lhotse import CutSet, Recording, SupervisionSegment
from lhotse.cut import Cut
from lhotse.serialization import deserialize_item, open_best
from lhotse.supervision import AlignmentItem
from lhotse.utils import fastcopy

from speechbraid.data.interop._files import skip_or_raise
from speechbraid.data.records import Utterance, WordAlignment
from speechbraid.errors import InputError, ManifestError
from speechbraid.files import atomic_path

WORD_ALIGNMENT_KEY = "word"
_CUSTOM_FIELDS = ("domain", "source", "units")


def record_to_cut(record: Utterance) -> Cut:
    """Build the cut for one record with audio (see the module docstring for the field mapping)."""
    if record.audio is None:
        raise InputError(f"record '{record.id}' is text-only; a lhotse cut needs a recording")
    if not Path(record.audio).is_file():
        raise InputError(f"record '{record.id}': audio file not found", record.audio)
    recording = Recording.from_file(record.audio, recording_id=record.id)
    extra = dict(record.extra)
    offset = float(extra.pop("offset", None) or 0.0)
    if offset and record.duration is None:
        raise InputError(f"record '{record.id}' has an offset but no duration; the segment end is unknown")
    duration = record.duration if offset else recording.duration
    custom: dict[str, Any] = {key: getattr(record, key) for key in _CUSTOM_FIELDS if getattr(record, key) is not None}
    if record.entities:
        custom["entities"] = [e.to_dict() for e in record.entities]
    custom.update(extra)
    alignment = None
    if record.words is not None:
        alignment = {
            WORD_ALIGNMENT_KEY: [
                AlignmentItem(symbol=w.word, start=w.start, duration=w.duration, score=w.score) for w in record.words
            ]
        }
    cut = recording.to_cut()  # MonoCut for mono audio, MultiCut (all channels) otherwise
    supervision = SupervisionSegment(
        id=record.id,
        recording_id=recording.id,
        start=0.0,
        duration=duration,
        channel=cut.channel,
        text=record.text,
        speaker=record.speaker,
        custom=custom or None,
        alignment=alignment,
    )
    return fastcopy(cut, id=record.id, start=offset, duration=duration, supervisions=[supervision])


def to_cutset(records: Iterable[Utterance], skipped: list[str] | None = None) -> CutSet:
    """An in-memory :class:`CutSet` of ``records``; for large corpora stream with :func:`write_cutset`."""
    return CutSet.from_cuts(_cuts(records, skipped))


def write_cutset(records: Iterable[Utterance], path: str | Path, skipped: list[str] | None = None) -> int:
    """Stream records into a lhotse cuts manifest (``.jsonl`` or ``.jsonl.gz``); return cuts written.

    Written to a temporary name and renamed on success, so an interrupted run leaves no partial manifest.
    """
    path = Path(path)
    count = 0
    # the temporary name keeps the suffixes lhotse picks gzip by
    with atomic_path(path, suffix="".join(path.suffixes)) as tmp, CutSet.open_writer(tmp) as writer:
        for cut in _cuts(records, skipped):
            writer.write(cut)
            count += 1
    return count


def _cuts(records: Iterable[Utterance], skipped: list[str] | None) -> Iterator[Cut]:
    for record in records:
        if record.audio is None:
            skip_or_raise(record.id, "is text-only; a lhotse cut needs a recording", skipped)
            continue
        yield record_to_cut(record)


def from_cutset(cuts: Iterable[Cut], skipped: list[str] | None = None) -> Iterator[Utterance]:
    """Yield one utterance per supervision of each cut (lazily, so a lazy CutSet stays lazy).

    The utterance id is the cut id for single-supervision cuts, else the supervision id. Cuts without a
    file-backed recording or without supervisions raise, or go to ``skipped`` when it is a list.
    """
    for cut in cuts:
        yield from cut_to_records(cut, skipped)


def cut_to_records(cut: Cut, skipped: list[str] | None = None, audio: str | None = None) -> Iterator[Utterance]:
    """The utterances of one cut (see :func:`from_cutset`); ``audio``: where its recording is, when the cut does not
    say (a Shar cut's audio is in the tar shard beside its cuts shard)."""
    audio = audio or _audio_path(cut)
    if audio is None:
        skip_or_raise(cut.id, "has no file-backed recording (only audio files map to manifest records)", skipped)
        return
    if not cut.supervisions:
        skip_or_raise(cut.id, "has no supervision, so no text", skipped)
        return
    for sup in cut.supervisions:
        utt_id = cut.id if len(cut.supervisions) == 1 else sup.id
        if sup.text is None:
            skip_or_raise(utt_id, "has a supervision without text", skipped)
            continue
        custom = dict(sup.custom or {})
        obj: dict[str, Any] = {
            **custom,
            "id": utt_id,
            "text": sup.text,
            "audio": audio,
            "sample_rate": cut.sampling_rate,
            "duration": round(sup.duration, 6),
            "speaker": sup.speaker,
        }
        offset = cut.start + sup.start
        if offset > 0:
            obj["offset"] = round(offset, 6)
        items = (sup.alignment or {}).get(WORD_ALIGNMENT_KEY)
        if items is not None:
            # Alignment times share the supervision's frame; the utterance starts at the supervision.
            obj["words"] = [_word(item, sup.start).to_dict() for item in items]
        try:
            yield Utterance.from_dict(obj)
        except ValueError as exc:
            raise InputError(f"cut '{cut.id}': cannot map to a record: {exc}") from None


def _word(item: AlignmentItem, origin: float) -> WordAlignment:
    start = item.start - origin
    return WordAlignment(word=item.symbol, start=start, end=start + item.duration, score=item.score)


def _audio_path(cut: Cut) -> str | None:
    if not cut.has_recording:
        return None
    sources = cut.recording.sources
    if len(sources) != 1 or sources[0].type != "file":
        return None
    return str(sources[0].source)


def read_cutset(path: str | Path, skipped: list[str] | None = None) -> Iterator[Utterance]:
    """Read a lhotse cuts manifest (``.jsonl[.gz]``) lazily into utterances; bad lines name file and line."""
    path = Path(path)
    if not path.is_file():
        raise InputError("lhotse manifest not found", path)
    with open_best(path, "r") as handle:
        for line_no, raw in enumerate(handle, start=1):
            if raw.strip():
                yield from cut_to_records(_parse_cut(raw, path, line_no), skipped)


def _parse_cut(text: str, path: Path, line_no: int) -> Cut:
    try:
        item = deserialize_item(json.loads(text))
    except (json.JSONDecodeError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"not a lhotse cut: {exc!r}", path, line_no) from None
    if not isinstance(item, Cut):
        raise InputError(f"expected a cut, got a {type(item).__name__} (convert recordings + "
                         "supervisions with CutSet.from_manifests first)", path, line_no)
    return item


def parse_cut_line(text: str, path: Path, line_no: int) -> Utterance:
    """The one utterance of a cuts-manifest line, for random access (:class:`~speechbraid.data.manifest.LazyManifest`
    reads one line per record, so a cut must hold exactly one supervision); problems name file and line."""
    return _one_record(_parse_cut(text, path, line_no), path, line_no)


def parse_shar_cut_line(text: str, path: Path, line_no: int) -> Utterance:
    """The one utterance of a line of a lhotse Shar cuts shard (``cuts.NNNNNN.jsonl[.gz]``): its audio is the member
    named by the cut id in ``recording.NNNNNN.tar`` beside it, read in place (see :mod:`speechbraid.data.audio`)."""
    cut = _parse_cut(text, path, line_no)
    if not path.name.startswith("cuts."):
        raise ManifestError("not a Shar cuts shard (cuts.NNNNNN.jsonl[.gz])", path, line_no)
    index = path.name.removeprefix("cuts.").split(".", 1)[0]
    tar = path.with_name(f"recording.{index}.tar")
    return _one_record(cut, path, line_no, audio=f"{tar}#{cut.id}")


def _one_record(cut: Cut, path: Path, line_no: int, audio: str | None = None) -> Utterance:
    try:
        records = list(cut_to_records(cut, audio=audio))
    except InputError as exc:
        raise ManifestError(exc.message, path, line_no) from None
    if len(records) != 1:
        raise ManifestError(f"cut holds {len(records)} supervisions; a training source reads one utterance per "
                            "line (split it with CutSet.trim_to_supervisions() first)", path, line_no)
    return records[0]

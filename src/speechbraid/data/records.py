"""What one manifest line holds: an utterance (audio + text) or a text-only record.

Field names follow lhotse where a concept is shared (``AlignmentItem`` -> :class:`WordAlignment`,
``SupervisionSegment.text`` -> :attr:`Utterance.text`), so the interop layer maps one to one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SYNTH_SOURCE_PREFIX = "synth:"  # source of synthesised speech: "synth:<engine>" (speechbraid.synth)
RECORDED = "recorded"  # the voice family of every utterance not synthesised by an engine we know of


def voice_family(source: str | None) -> str:
    """The voice family of an utterance from its ``source``: the engine of ``synth:<engine>`` (``espeak``,
    ``piper``), otherwise ``recorded`` (``recorded:<package>``, a user's own corpus, or no source at all)."""
    if source and source.startswith(SYNTH_SOURCE_PREFIX) and len(source) > len(SYNTH_SOURCE_PREFIX):
        return source[len(SYNTH_SOURCE_PREFIX):]
    return RECORDED


@dataclass(frozen=True)
class WordAlignment:
    """One aligned word: its surface form as it appears in the text, and its time span in seconds."""

    word: str
    start: float
    end: float
    score: float | None = None  # aligner confidence, when the aligner gives one

    @property
    def duration(self) -> float:
        return self.end - self.start

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"word": self.word, "start": round(self.start, 4), "end": round(self.end, 4)}
        if self.score is not None:
            out["score"] = round(self.score, 4)
        return out


@dataclass(frozen=True)
class EntitySpan:
    """A named entity in the text: ``text == utterance.text[start:end]`` (character offsets, end exclusive)."""

    text: str
    type: str
    start: int
    end: int

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "type": self.type, "start": self.start, "end": self.end}


@dataclass
class Utterance:
    """A speech-text pair, or a text-only record when ``audio`` is None.

    ``text`` is kept exactly as spoken/written: case and punctuation are part of the data (TER and
    the entity error rate depend on them). ``words`` is None when no alignment exists yet, which is
    different from an empty list.
    """

    id: str
    text: str
    audio: str | None = None
    sample_rate: int | None = None
    duration: float | None = None
    words: list[WordAlignment] | None = None
    entities: list[EntitySpan] = field(default_factory=list)
    domain: str | None = None
    speaker: str | None = None
    source: str | None = None
    units: list[int] | None = None  # discrete speech units from an external tokenizer, if supplied
    extra: dict[str, Any] = field(default_factory=dict)  # unknown manifest keys, kept so nothing is lost

    @property
    def is_text_only(self) -> bool:
        return self.audio is None

    @property
    def has_alignment(self) -> bool:
        return self.words is not None and len(self.words) > 0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "text": self.text}
        if self.audio is not None:
            out["audio"] = self.audio
            out["sample_rate"] = self.sample_rate
            out["duration"] = None if self.duration is None else round(self.duration, 4)
        if self.words is not None:
            out["words"] = [w.to_dict() for w in self.words]
        if self.entities:
            out["entities"] = [e.to_dict() for e in self.entities]
        for key in ("domain", "speaker", "source", "units"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any], base_dir: str | Path | None = None) -> Utterance:
        """Build a record from a manifest dict; relative audio paths resolve against ``base_dir``.

        Raises ValueError with a message naming the offending field; the manifest reader adds the
        file and line.
        """
        if not isinstance(obj, Mapping):
            raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
        known = set(_FIELDS)
        utt_id = _require(obj, "id", str)
        text = _require(obj, "text", str)
        audio = _optional(obj, "audio", str)
        if audio is not None and base_dir is not None and not Path(audio).is_absolute():
            audio = str(Path(base_dir) / audio)
        words = obj.get("words")
        if words is not None:
            words = [_word(w, i) for i, w in enumerate(_as_list(words, "words"))]
        entities = [_entity(e, i) for i, e in enumerate(_as_list(obj.get("entities") or [], "entities"))]
        units = obj.get("units")
        if units is not None and not all(isinstance(u, int) for u in _as_list(units, "units")):
            raise ValueError("field 'units' must be a list of integers")
        return cls(
            id=utt_id,
            text=text,
            audio=audio,
            sample_rate=_optional(obj, "sample_rate", int),
            duration=_number(obj, "duration"),
            words=words,
            entities=entities,
            domain=_optional(obj, "domain", str),
            speaker=_optional(obj, "speaker", str),
            source=_optional(obj, "source", str),
            units=units,
            extra={k: v for k, v in obj.items() if k not in known},
        )


_FIELDS = (
    "id", "text", "audio", "sample_rate", "duration", "words", "entities",
    "domain", "speaker", "source", "units",
)


def _require(obj: Mapping[str, Any], key: str, kind: type) -> Any:
    if key not in obj:
        raise ValueError(f"missing required field '{key}'")
    return _optional(obj, key, kind)


def _optional(obj: Mapping[str, Any], key: str, kind: type) -> Any:
    value = obj.get(key)
    if value is None:
        return None
    if kind is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"field '{key}' must be {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


def _number(obj: Mapping[str, Any], key: str) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"field '{key}' must be a number, got {value!r}")
    return float(value)


def _as_list(value: Any, key: str) -> Sequence[Any]:
    if not isinstance(value, list):
        raise ValueError(f"field '{key}' must be a list, got {type(value).__name__}")
    return value


def _word(obj: Any, index: int) -> WordAlignment:
    try:
        if not isinstance(obj, Mapping):
            raise ValueError(f"expected an object with word, start and end, got {obj!r}")
        for key in ("start", "end"):
            if obj.get(key) is None:
                raise ValueError(f"missing required field '{key}'")
        return WordAlignment(
            word=_require(obj, "word", str),
            start=_number(obj, "start"),  # type: ignore[arg-type]
            end=_number(obj, "end"),  # type: ignore[arg-type]
            score=_number(obj, "score"),
        )
    except ValueError as exc:
        raise ValueError(f"words[{index}]: {exc}") from None


def _entity(obj: Any, index: int) -> EntitySpan:
    try:
        if not isinstance(obj, Mapping):
            raise ValueError(f"expected an object with text, type, start and end, got {obj!r}")
        return EntitySpan(
            text=_require(obj, "text", str),
            type=_require(obj, "type", str),
            start=_require(obj, "start", int),
            end=_require(obj, "end", int),
        )
    except ValueError as exc:
        raise ValueError(f"entities[{index}]: {exc}") from None

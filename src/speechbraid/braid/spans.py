"""The braided sequence: the one data structure every task, layout and pattern produces.

A braid is an ordered tuple of spans fed to one causal LM. Each span says what fills its positions
and whether those positions are prediction targets (``loss``):

- :class:`TextSpan` - token ids of the LLM's tokenizer;
- :class:`SpeechSpan` - a time range of the utterance's audio, filled with adapter frames at run time;
- :class:`UnitSpan` - discrete speech-unit ids (offset into the LLM vocabulary by the vocab layout);
- :class:`SpecialSpan` - one task/modality marker token. Markers the model only reads (``<|asr|>``,
  ``<|N|>``) never carry loss; control tokens a generation pattern must emit (end of text, the ESI
  switch, end of speech, padding) do;
- :class:`ParallelSpan` - several token streams advancing together, one token of each per position
  (the parallel generation pattern); the streams' delays are declared by the pattern, not here.

Builders of braids are pure functions of a record and a declared layout; the model has exactly one
place that turns braids into embeddings (``speechbraid.models``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

Modality = Literal["text", "speech", "units", "special", "parallel"]


@dataclass(frozen=True)
class TextSpan:
    tokens: tuple[int, ...]
    loss: bool
    text: str | None = None  # the surface text, for display only
    modality: Modality = field(default="text", init=False)


@dataclass(frozen=True)
class SpeechSpan:
    """Seconds ``[start, end)`` of the braid's audio; which adapter frames that covers is decided by
    :func:`speechbraid.braid.frames.frame_range` (the single time <-> frame rule)."""

    start: float
    end: float
    modality: Modality = field(default="speech", init=False)

    @property
    def loss(self) -> bool:
        return False  # continuous speech is input only


@dataclass(frozen=True)
class UnitSpan:
    units: tuple[int, ...]  # raw unit ids (0..num_units-1), not yet offset into the LLM vocabulary
    loss: bool
    modality: Modality = field(default="units", init=False)


@dataclass(frozen=True)
class SpecialSpan:
    token: str  # a name from speechbraid.braid.vocab.SPECIAL_TOKENS
    loss: bool = False  # True only for control tokens a generation pattern must learn to emit
    modality: Modality = field(default="special", init=False)


# One entry of a parallel stream: a text token id (text stream), a raw unit id (speech stream), or the
# name of a special token (padding, end markers) resolved by the vocabulary layout.
StreamToken = int | str


@dataclass(frozen=True)
class ParallelSpan:
    """Text and speech streams of equal length; position i holds ``text[i]`` and ``speech[i]``."""

    text: tuple[StreamToken, ...]
    speech: tuple[StreamToken, ...]
    loss: bool
    modality: Modality = field(default="parallel", init=False)

    def __post_init__(self) -> None:
        if len(self.text) != len(self.speech):
            raise ValueError(f"parallel streams differ in length: {len(self.text)} text vs {len(self.speech)} speech")


Span = TextSpan | SpeechSpan | UnitSpan | SpecialSpan | ParallelSpan


@dataclass(frozen=True)
class Braid:
    """One training/inference example: spans in order, plus the audio the speech spans cut from."""

    spans: tuple[Span, ...]
    id: str = ""
    audio: str | None = None
    duration: float | None = None  # of the audio; fixes how many adapter frames it yields
    layout: str = ""  # which layout built it, for reports and mixing statistics

    def __iter__(self) -> Iterator[Span]:
        return iter(self.spans)

    @property
    def has_speech(self) -> bool:
        return any(isinstance(s, SpeechSpan) for s in self.spans)

    def text_token_count(self, with_loss: bool | None = None) -> int:
        return sum(
            len(s.tokens)
            for s in self.spans
            if isinstance(s, TextSpan) and (with_loss is None or s.loss == with_loss)
        )

    def to_json(self) -> dict[str, Any]:
        """The printable form used by ``speechbraid layout --json``."""
        out: list[dict[str, Any]] = []
        for span in self.spans:
            if isinstance(span, TextSpan):
                out.append({"modality": "text", "text": span.text, "tokens": list(span.tokens),
                            "loss": span.loss})
            elif isinstance(span, SpeechSpan):
                out.append({"modality": "speech", "start": round(span.start, 4), "end": round(span.end, 4),
                            "loss": False})
            elif isinstance(span, UnitSpan):
                out.append({"modality": "units", "units": list(span.units), "loss": span.loss})
            elif isinstance(span, ParallelSpan):
                out.append({"modality": "parallel", "text": list(span.text), "speech": list(span.speech),
                            "loss": span.loss})
            else:
                out.append({"modality": "special", "token": span.token, "loss": span.loss})
        return {"id": self.id, "layout": self.layout, "audio": self.audio, "duration": self.duration, "spans": out}

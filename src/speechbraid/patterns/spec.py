"""Joint text-speech generation patterns (METHODS.md section 2), declared as data.

A pattern says in which order a response's text tokens and speech units are produced. Training
layouts and decoders both follow the same declaration: the builders in ``speechbraid.patterns.build``
replay the pattern's schedule over a known response, and the decoders ask the same schedule what may
come next. Control tokens (names from ``speechbraid.braid.vocab.SPECIAL_TOKENS``):

- ``<|eot|>`` ends the response text; ``<|eos_speech|>`` ends its speech;
- ``<|tpad|>`` pads the text where the plain interleaved and parallel patterns need a text token after
  the text has ended; ``<|spad|>`` pads the speech stream of the parallel pattern (before its delay
  has passed and after speech has ended);
- ``<|S|>`` is ESI's switch: "the rest is speech".

Patterns:
- ``InterleavedPattern(text_chunk=n, speech_chunk=m)``: n text tokens, then m speech units, repeated.
  Plain (``early_stop=False``): once the text has ended, text chunks are n ``<|tpad|>`` each, so the
  ratio holds until speech ends. ESI (``early_stop=True``): right after ``<|eot|>`` comes ``<|S|>``,
  then speech units only until ``<|eos_speech|>``. If speech ends before the text, the remaining text
  follows without speech chunks.
- ``ParallelPattern(speech_delay=k)``: one text and one speech token per step, from separate heads;
  the speech stream starts k steps after the text (``<|spad|>`` before); the text is padded with
  ``<|tpad|>`` after ``<|eot|>``; both streams' input embeddings are combined (sum or mean).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

EOT, EOS_SPEECH, TEXT_PAD, SPEECH_PAD, SWITCH, RESPONSE = (
    "<|eot|>", "<|eos_speech|>", "<|tpad|>", "<|spad|>", "<|S|>", "<|resp|>")

Expect = Literal["text", "speech", "switch", "done"]


@dataclass(frozen=True)
class InterleavedPattern:
    name: str
    text_chunk: int = 5
    speech_chunk: int = 10
    early_stop: bool = False  # True: ESI

    def __post_init__(self) -> None:
        if self.text_chunk < 1 or self.speech_chunk < 1:
            raise ValueError(f"chunk sizes must be >= 1, got {self.text_chunk}:{self.speech_chunk}")

    def schedule(self) -> InterleaveSchedule:
        return InterleaveSchedule(self)


@dataclass(frozen=True)
class ParallelPattern:
    name: str
    speech_delay: int = 1
    combine: Literal["sum", "mean"] = "sum"

    def __post_init__(self) -> None:
        if self.speech_delay < 0:
            raise ValueError(f"speech_delay must be >= 0, got {self.speech_delay}")


Pattern = InterleavedPattern | ParallelPattern

PATTERNS: dict[str, Pattern] = {
    "interleaved": InterleavedPattern("interleaved", 5, 10),
    "interleaved-13-26": InterleavedPattern("interleaved-13-26", 13, 26),  # GLM-4-Voice
    "interleaved-5-15": InterleavedPattern("interleaved-5-15", 5, 15),  # MinMo / CosyVoice2
    "esi": InterleavedPattern("esi", 5, 10, early_stop=True),
    "parallel": ParallelPattern("parallel", speech_delay=1),
}


def get_pattern(name: str) -> Pattern:
    try:
        return PATTERNS[name]
    except KeyError:
        raise ValueError(f"unknown pattern {name!r}; choose one of {', '.join(PATTERNS)}") from None


class InterleaveSchedule:
    """What an interleaved/ESI response expects next, given what has been produced so far.

    Feed every produced token to :meth:`advance` as ``"text"`` (a text token, ``<|eot|>`` or
    ``<|tpad|>``), ``"speech"`` (a unit or ``<|eos_speech|>``) or ``"switch"``, with ``ended`` True
    for the two end tokens.
    """

    def __init__(self, pattern: InterleavedPattern) -> None:
        self.pattern = pattern
        self.phase: Literal["text", "speech"] = "text"
        self.count = 0  # tokens produced in the current chunk
        self.text_ended = False
        self.speech_ended = False
        self.switched = False

    def expect(self) -> Expect:
        if self.speech_ended and self.text_ended:
            return "done"
        if self.switched or (self.pattern.early_stop and self.text_ended and not self.speech_ended):
            return "speech" if self.switched else "switch"
        if self.speech_ended:
            return "text"  # speech finished first: the rest of the text follows on its own
        return self.phase

    def advance(self, kind: Literal["text", "speech", "switch"], ended: bool = False) -> None:
        expected = self.expect()
        if kind != expected:
            raise ValueError(f"pattern {self.pattern.name!r} expects {expected}, got {kind}")
        if kind == "switch":
            self.switched = True
            return
        if kind == "text":
            self.text_ended = self.text_ended or ended
        else:
            self.speech_ended = self.speech_ended or ended
        if self.switched or self.speech_ended:
            return
        self.count += 1
        size = self.pattern.text_chunk if self.phase == "text" else self.pattern.speech_chunk
        if self.count == size:
            self.phase = "speech" if self.phase == "text" else "text"
            self.count = 0

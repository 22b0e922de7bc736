"""The engine interface every synthesiser implements, and the word-timing rules they share.

A synthesis result always carries one :class:`WordAlignment` per whitespace token of the input text,
in text order, spelled exactly as in the text (punctuation attached: ``"day."``). Engines time the
words they actually speak; :func:`assemble_words` turns those per-token times into the final list and
fills tokens the engine did not speak (a lone ``-``, say) by the rule documented there.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from speechbraid.data.audio import speech_seconds_after
from speechbraid.data.records import WordAlignment
from speechbraid.errors import ConfigError

OUTPUT_SAMPLE_RATE = 16000  # every engine hands back 16 kHz, the rate the rest of the toolkit reads

_TOKEN = re.compile(r"\S+")
# Speech after the last word's end (plus its release) means the word times missed part of the audio. Above
# both limits the times are wrong, not a little off: on the 1,950 utterances of the default corpus (English,
# 112 voices) at most 0.68 s of speech follows the last word, while English voices reading Russian or Chinese
# leave 4-6 s (80% of the speech) after it.
MAX_SPEECH_AFTER_WORDS = 1.0  # seconds
MAX_SPEECH_FRACTION_AFTER_WORDS = 0.25
_RELEASE = 0.1  # seconds


class SynthesisError(Exception):
    """The engine cannot speak this text (empty, nothing pronounceable, or an engine failure).

    Not a :class:`~speechbraid.errors.SpeechbraidError` on purpose: the corpus runner knows which
    record (and file:line) the text came from and re-raises it as an ``InputError`` naming them.
    """


@dataclass(frozen=True)
class VoiceSpec:
    """How to speak: engine, the engine's voice name, and optional rate and pitch.

    ``rate`` is in words per minute (espeak's own unit; Piper maps it to a length scale relative to
    espeak's normal 175 wpm). ``pitch`` is espeak's 0-100 base pitch (50 = normal); Piper has none.
    ``None`` means the engine's default.
    """

    engine: str
    voice: str
    rate: int | None = None
    pitch: int | None = None

    def __str__(self) -> str:
        parts = [self.engine, self.voice]
        if self.rate is not None:
            parts.append(f"rate={self.rate}")
        if self.pitch is not None:
            parts.append(f"pitch={self.pitch}")
        return ":".join(parts)


@dataclass
class SynthResult:
    """Mono float32 samples at ``sample_rate`` and one word alignment per text token."""

    samples: np.ndarray
    sample_rate: int
    words: list[WordAlignment]

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


class SynthEngine(ABC):
    """A text-to-speech engine that also reports when each word is spoken."""

    name: str = ""
    sample_rate: int = OUTPUT_SAMPLE_RATE
    default_voice: str = ""
    rate_limits: tuple[int, int] | None = None  # allowed VoiceSpec.rate values, None: rate unsupported
    pitch_limits: tuple[int, int] | None = None  # allowed VoiceSpec.pitch values, None: pitch unsupported

    @abstractmethod
    def voices(self) -> list[str]:
        """Every voice name this engine accepts (for ``--list-voices`` and validation)."""

    @abstractmethod
    def sampling_voices(self) -> list[str]:
        """The voices a corpus run draws from when the user names none: a varied, sensible subset."""

    @abstractmethod
    def synthesize(self, text: str, voice: VoiceSpec, seed: int | None = None) -> SynthResult:
        """Speak ``text``; raise :class:`SynthesisError` when it cannot.

        ``seed`` feeds engines with random sampling inside (espeak has none and ignores it).
        """

    def voice(self, voice: str | None = None, rate: int | None = None, pitch: int | None = None) -> VoiceSpec:
        """A validated :class:`VoiceSpec` for this engine (``ConfigError`` on out-of-range values)."""
        self.check_ranges(rate, pitch)
        return VoiceSpec(self.name, voice or self.default_voice, rate, pitch)

    def check_ranges(self, rate: int | None, pitch: int | None) -> None:
        for label, value, limits in (("rate", rate, self.rate_limits), ("pitch", pitch, self.pitch_limits)):
            if value is None:
                continue
            if limits is None:
                raise ConfigError(f"engine '{self.name}' has no {label} setting")
            if not limits[0] <= value <= limits[1]:
                raise ConfigError(f"{label} {value} outside the {self.name} range {limits[0]}..{limits[1]}")


def check_words_cover_speech(result: SynthResult, text: str) -> None:
    """Refuse a result whose word times stop before its speech does (:class:`SynthesisError`).

    Happens when the engine's word events do not follow the text, e.g. espeak reading a script or language
    its voice does not know (spelled out, or switched to another language) or text without spaces between
    words (Chinese): writing those times would give a manifest that validates but describes other audio.
    """
    last_end = max((w.end for w in result.words), default=0.0)
    after = speech_seconds_after(result.samples, result.sample_rate, last_end + _RELEASE)
    speech = speech_seconds_after(result.samples, result.sample_rate, 0.0)
    if after > MAX_SPEECH_AFTER_WORDS and after > MAX_SPEECH_FRACTION_AFTER_WORDS * speech:
        raise SynthesisError(
            f"word times cover only {last_end:.2f} s of {result.duration:.2f} s of speech ({after:.2f} s of speech "
            f"after the last word) - the engine's word events do not follow this text {text[:40]!r}: unsupported "
            "language/script for word alignment (use a voice of the text's language, and words separated by spaces)")


def text_tokens(text: str) -> list[tuple[int, int]]:
    """Character spans (start, end) of the whitespace-separated tokens: the words of the alignment."""
    return [(m.start(), m.end()) for m in _TOKEN.finditer(text)]


def token_at(tokens: Sequence[tuple[int, int]], char: int) -> int:
    """Index of the token holding character ``char``; a position in whitespace goes to the next token."""
    for index, (_, end) in enumerate(tokens):
        if char < end:
            return index
    return len(tokens) - 1


def assemble_words(
    text: str, tokens: Sequence[tuple[int, int]], spans: Sequence[tuple[float, float] | None], duration: float
) -> list[WordAlignment]:
    """One alignment per token from the engine's per-token spans (seconds; None where it gave none).

    Fill rule for untimed tokens: a run of them between two timed neighbours shares the gap from the
    previous word's end to the next word's start in equal parts (zero length when there is no gap),
    so they stay in order and never overlap spoken words. If no token at all was timed, the engine
    did not speak the text: :class:`SynthesisError`.
    """
    if len(spans) != len(tokens):
        raise ValueError(f"{len(spans)} spans for {len(tokens)} tokens")
    if not any(span is not None for span in spans):
        raise SynthesisError(f"the engine spoke no word of {text!r}")
    filled: list[tuple[float, float]] = []
    index = 0
    while index < len(spans):
        span = spans[index]
        if span is not None:
            start = max(span[0], filled[-1][1] if filled else 0.0)  # keep words monotonic
            filled.append((start, min(max(span[1], start), duration)))
            index += 1
            continue
        run_end = index
        while run_end < len(spans) and spans[run_end] is None:
            run_end += 1
        left = filled[-1][1] if filled else 0.0
        right = spans[run_end][0] if run_end < len(spans) else duration  # type: ignore[index]
        right = max(right, left)
        step = (right - left) / (run_end - index)
        filled.extend((left + k * step, left + (k + 1) * step) for k in range(run_end - index))
        index = run_end
    return [WordAlignment(text[a:b], s, e) for (a, b), (s, e) in zip(tokens, filled, strict=True)]


_ENGINES: dict[str, Callable[[], SynthEngine]] = {}
_INSTANCES: dict[str, SynthEngine] = {}


def register_engine(name: str, factory: Callable[[], SynthEngine]) -> None:
    """Make an engine available by name (the ``--engine`` choices)."""
    _ENGINES[name] = factory


def engine_names() -> list[str]:
    return sorted(_ENGINES)


def get_engine(name: str) -> SynthEngine:
    """The engine of this process, created on first use.

    One instance per process and name: espeak keeps global state in its C library and Piper loads a
    model, so workers build theirs once and reuse it.
    """
    if name not in _ENGINES:
        raise ConfigError(f"unknown synthesis engine '{name}' (choose from {', '.join(engine_names())})")
    if name not in _INSTANCES:
        _INSTANCES[name] = _ENGINES[name]()
    return _INSTANCES[name]

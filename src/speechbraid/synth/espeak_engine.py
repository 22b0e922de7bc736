"""espeak-ng through its C library (``libespeak-ng.so.1``) with word and phoneme events, via ctypes.

Word timing rule (checked against the signal energy of espeak-ng 1.51 output):

- a word STARTS at its ``espeakEVENT_WORD`` ``audio_position``;
- phoneme events mark where each phoneme starts; a word ENDS where the first pause phoneme
  (``_``, ``_:``, ``_!`` ...) after its first spoken phoneme starts, else where the next word starts,
  else at the end of the audio. So the silence espeak inserts at commas and sentence ends lies
  outside every word span.
- events map to text tokens by ``text_position`` (1-based, counted in characters for UTF-8 input);
  when espeak splits one token into several words (``3.5`` -> three point five) the token spans them
  all. Tokens it does not speak are filled by :func:`~speechbraid.synth.base.assemble_words`.

espeak keeps global state and is not thread-safe: the library is initialised once per process and a
lock serialises synthesis. Reproducibility: the C ``rand()`` espeak draws on is seeded before every
call, but the library keeps state from earlier utterances of the process that it offers no way to
reset (waveform phase; and, checked on 1.51, once any text with a digit has been spoken, later
sentence ends come out ~10-50 ms different), while terminating and re-initialising it hangs in
synchronous mode. So the same text and settings reproduce the audio exactly only in the same
processing history; across histories (another job count) times may differ by tens of milliseconds.
Each result's words always describe its own audio; a corpus run records the settings it drew and
resuming never re-synthesises finished utterances.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass, field

import numpy as np
import soxr

from speechbraid.synth.base import (
    OUTPUT_SAMPLE_RATE,
    SynthEngine,
    SynthesisError,
    SynthResult,
    VoiceSpec,
    assemble_words,
    register_engine,
    text_tokens,
    token_at,
)

LIBRARY = "libespeak-ng.so.1"

# speak_lib.h constants
AUDIO_OUTPUT_SYNCHRONOUS = 2
ESPEAK_INITIALIZE_PHONEME_EVENTS = 0x0001
ESPEAK_CHARS_UTF8 = 1
POS_CHARACTER = 1
ESPEAK_RATE = 1
ESPEAK_PITCH = 3
EVENT_LIST_TERMINATED = 0
EVENT_WORD = 1
EVENT_PHONEME = 7
RATE_LIMITS = (80, 450)  # espeakRATE_MINIMUM .. espeakRATE_MAXIMUM, words per minute
RATE_NORMAL = 175
PITCH_LIMITS = (0, 100)

# Accents of the installed English voices (mbrola voices need the separate mbrola program: left out).
SAMPLING_LANGUAGES = (
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)
# Human-sounding variants (the others are robots, whispers or effects).
SAMPLING_VARIANTS = ("", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt")


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """``espeak_EVENT`` from speak_lib.h (40 bytes on 64-bit: six 4-byte fields, a pointer, an 8-byte union)."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


class _Voice(ctypes.Structure):
    """``espeak_VOICE`` from speak_lib.h."""

    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_void_p),  # (priority byte, zero-terminated name)* then a zero byte
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass
class _Capture:
    """What one espeak_Synth call produced: audio chunks and (type, text_position, ms, phoneme) events."""

    chunks: list[np.ndarray] = field(default_factory=list)
    events: list[tuple[int, int, int, str]] = field(default_factory=list)


class _Library:
    """The process-wide libespeak-ng handle; created once, guarded by a lock."""

    def __init__(self) -> None:
        try:
            lib = ctypes.CDLL(LIBRARY)
        except OSError as exc:
            raise SynthesisError(f"cannot load {LIBRARY} (install the Debian package libespeak-ng1): {exc}") from None
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        lib.espeak_ListVoices.argtypes = [ctypes.POINTER(_Voice)]
        rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, None, ESPEAK_INITIALIZE_PHONEME_EVENTS)
        if rate <= 0:
            raise SynthesisError("espeak_Initialize failed (is espeak-ng-data installed?)")
        self.lib = lib
        self.libc = ctypes.CDLL(None)  # the process's C library, for srand
        self.libc.srand.argtypes = [ctypes.c_uint]
        self.native_rate = rate
        self.lock = threading.Lock()
        self._capture = _Capture()
        self._callback = _CALLBACK(self._on_synth)  # kept referenced: the C library holds the pointer
        lib.espeak_SetSynthCallback(self._callback)

    def _on_synth(self, wav: ctypes.POINTER(ctypes.c_short), count: int, events: ctypes.POINTER(_Event)) -> int:
        if wav and count > 0:
            self._capture.chunks.append(np.ctypeslib.as_array(wav, (count,)).copy())
        index = 0
        while events[index].type != EVENT_LIST_TERMINATED:
            ev = events[index]
            phoneme = ev.id.string.decode("utf-8", "replace") if ev.type == EVENT_PHONEME else ""
            self._capture.events.append((ev.type, ev.text_position, ev.audio_position, phoneme))
            index += 1
        return 0

    def synth(self, text: str, voice: str, rate: int, pitch: int, seed: int) -> _Capture:
        with self.lock:
            # espeak draws from the C library's rand() (Klatt noise, voice variation): seeding it
            # before every call makes the output depend on this call only, not on the calls before
            self.libc.srand(seed)
            if self.lib.espeak_SetVoiceByName(voice.encode("utf-8")) != 0:
                raise SynthesisError(f"unknown espeak voice '{voice}'")
            self.lib.espeak_SetParameter(ESPEAK_RATE, rate, 0)
            self.lib.espeak_SetParameter(ESPEAK_PITCH, pitch, 0)
            self._capture = _Capture()
            data = text.encode("utf-8") + b"\0"
            status = self.lib.espeak_Synth(data, len(data), 0, POS_CHARACTER, 0, ESPEAK_CHARS_UTF8, None, None)
            if status != 0:
                raise SynthesisError(f"espeak_Synth failed with status {status}")
            return self._capture

    def list_voices(self, language: str | None) -> list[tuple[str, str]]:
        """(identifier, first language) of each voice; ``language='variant'`` lists the variants."""
        spec = None
        if language is not None:
            spec = _Voice()
            spec.languages = ctypes.cast(ctypes.c_char_p(language.encode()), ctypes.c_void_p)
        with self.lock:
            array = self.lib.espeak_ListVoices(spec)
            out = []
            index = 0
            while array[index]:
                entry = array[index].contents
                # languages starts with a priority byte; the name follows up to the zero byte
                first = ctypes.string_at(entry.languages + 1).decode("utf-8") if entry.languages else ""
                out.append((entry.identifier.decode("utf-8"), first))
                index += 1
        return out


_LIBRARY: _Library | None = None


def _library() -> _Library:
    global _LIBRARY
    if _LIBRARY is None:
        _LIBRARY = _Library()
    return _LIBRARY


def _is_pause(phoneme: str) -> bool:
    # espeak's pause phonemes are "_" plus a length suffix; "_^_" marks a language switch, not silence
    return phoneme.startswith("_") and phoneme != "_^_"


# Characters espeak passes over in silence (default punctuation mode); a token made only of them
# ("-", "...", "—") is never spoken, and espeak then reports the NEXT word at that token's position.
_SILENT = set("-–—.,;:!?…\"'()[]{}“”‘’")


def _silent(text: str, span: tuple[int, int]) -> bool:
    return all(ch in _SILENT for ch in text[span[0] : span[1]])


@dataclass
class _Word:
    token: int | None  # None: espeak's position-0 marker words, which only bound their neighbours
    start: int  # ms
    phonemes: list[tuple[str, int]] = field(default_factory=list)


def word_spans_from_events(
    text: str, events: list[tuple[int, int, int, str]], tokens: list[tuple[int, int]], total_ms: float
) -> list[tuple[float, float] | None]:
    """Per-token (start, end) in seconds from espeak's event stream, by the rule in the module doc.

    Three corrections, checked on espeak-ng 1.51: (1) a word event that lands on a silent punctuation
    token moves to the next token; (2) espeak joins unstressed function words into the previous word
    ("in the", "of the": one event, no event for "the"); the skipped tokens then share that word's
    spoken phonemes in proportion to their character lengths, split at phoneme starts; (3) after some
    earlier utterances in the same process espeak reports text positions that point back into words
    already spoken, around clause breaks: either a stray extra event at the same time as the next
    word's event (dropped), or the next word's own event with a wrong position (it is given the next
    token, since word events advance through the text in order); a backward event after the last
    token only marks where the last word ends.
    """
    words: list[_Word] = []
    last = -1
    word_ms = [ms for kind, _, ms, _ in events if kind == EVENT_WORD]
    seen_words = 0
    for kind, text_position, ms, phoneme in events:
        if kind == EVENT_WORD:
            seen_words += 1
            token: int | None = None
            if text_position > 0:
                token = token_at(tokens, text_position - 1)
                if token <= last:
                    if seen_words < len(word_ms) and word_ms[seen_words] == ms:
                        continue  # a stray duplicate of the next word's event
                    token = last + 1 if last + 1 < len(tokens) else None
                while token is not None and token + 1 < len(tokens) and _silent(text, tokens[token]):
                    token += 1
                last = token if token is not None else last
            words.append(_Word(token, ms))
        elif kind == EVENT_PHONEME and words:
            words[-1].phonemes.append((phoneme, ms))
    spans: list[tuple[float, float] | None] = [None] * len(tokens)
    real = [w.token for w in words if w.token is not None]
    seen = 0
    for index, word in enumerate(words):
        if word.token is None:
            continue
        seen += 1
        end = float(words[index + 1].start) if index + 1 < len(words) else total_ms
        spoken: list[int] = []  # start ms of the spoken phonemes before the first pause
        for phoneme, ms in word.phonemes:
            if not _is_pause(phoneme):
                spoken.append(ms)
            elif spoken:
                end = min(end, ms)
                break
        end = max(end, word.start)
        following = real[seen] if seen < len(real) else len(tokens)
        joined = [word.token] + [t for t in range(word.token + 1, following) if not _silent(text, tokens[t])]
        for token, (a, b) in zip(joined, _split(word.start, end, spoken, [tokens[t] for t in joined]), strict=True):
            old = spans[token]
            spans[token] = (a / 1000.0, b / 1000.0) if old is None else (old[0], max(old[1], b / 1000.0))
    return spans


def _split(start: float, end: float, phonemes: list[int], pieces: list[tuple[int, int]]) -> list[tuple[float, float]]:
    """Cut [start, end] at phoneme starts into one span per piece, proportional to character counts."""
    if len(pieces) == 1 or len(phonemes) < len(pieces):
        return [(start, end)] + [(end, end)] * (len(pieces) - 1)
    total = sum(b - a for a, b in pieces)
    cuts = [start]
    chars = 0
    for a, b in pieces[:-1]:
        chars += b - a
        cut = min(max(round(len(phonemes) * chars / total), len(cuts)), len(phonemes) - 1)
        cuts.append(phonemes[cut])
    cuts.append(end)
    return list(zip(cuts[:-1], cuts[1:], strict=True))


class EspeakEngine(SynthEngine):
    """espeak-ng: many English accents and variants, fast, robotic; exact word event timing."""

    name = "espeak"
    default_voice = "en-us"
    rate_limits = RATE_LIMITS
    pitch_limits = PITCH_LIMITS

    def __init__(self) -> None:
        self._lib = _library()

    def voices(self) -> list[str]:
        """Every language voice (``en-gb``) plus ``LANG+VARIANT`` for the default language (``en-us+f3``)."""
        variants = sorted({ident.split("/", 1)[1] for ident, _ in self._lib.list_voices("variant")})
        return sorted(self._files()) + [f"{self.default_voice}+{v}" for v in variants]

    def _files(self) -> dict[str, str]:
        """Language name -> voice file name. espeak_SetVoiceByName matches file names ("en" for
        British English) while users know the language names espeak-ng --voices prints ("en-gb")."""
        out: dict[str, str] = {}
        for ident, language in self._lib.list_voices(None):
            if not ident.startswith("mb/") and language:  # mbrola voices need the mbrola program
                out.setdefault(language, ident.rsplit("/", 1)[-1])
        return out

    def _resolve(self, voice: str) -> str:
        base, plus, variant = voice.partition("+")
        return self._files().get(base.lower(), base) + plus + variant

    def sampling_voices(self) -> list[str]:
        return [f"{lang}+{v}" if v else lang for lang in SAMPLING_LANGUAGES for v in SAMPLING_VARIANTS]

    def synthesize(self, text: str, voice: VoiceSpec, seed: int | None = None) -> SynthResult:
        """Speak ``text``; ``seed`` seeds the C ``rand()`` that espeak's voice variation draws on."""
        tokens = text_tokens(text)
        if not tokens:
            raise SynthesisError("empty text")
        self.check_ranges(voice.rate, voice.pitch)
        rate = RATE_NORMAL if voice.rate is None else voice.rate
        pitch = 50 if voice.pitch is None else voice.pitch
        capture = self._lib.synth(text, self._resolve(voice.voice), rate, pitch, 0 if seed is None else seed % 2**32)
        if not capture.chunks:
            raise SynthesisError(f"espeak produced no audio for {text!r}")
        native = np.concatenate(capture.chunks).astype(np.float32) / 32768.0
        total_ms = 1000.0 * len(native) / self._lib.native_rate
        spans = word_spans_from_events(text, capture.events, tokens, total_ms)
        samples = soxr.resample(native, self._lib.native_rate, OUTPUT_SAMPLE_RATE).astype(np.float32)
        words = assemble_words(text, tokens, spans, len(samples) / OUTPUT_SAMPLE_RATE)
        return SynthResult(samples, OUTPUT_SAMPLE_RATE, words)


register_engine("espeak", EspeakEngine)

"""What the web demo does, without the web page: load the models once, transcribe an upload with its entities
marked, answer a question with text and speech as they are decoded.

Bad input (an unreadable or empty upload, an empty question) is an :class:`~speechbraid.errors.InputError` whose
message names the upload by its file name, fit to show in the page; :mod:`speechbraid.web.app` only shows it.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from speechbraid.corpora.lexicon import EntityLexicon, EntityMatcher, default_entity_lexicon, highlight
from speechbraid.errors import ConfigError, InputError

SAMPLE_RATE = 16000  # of the answers' speech (the unit vocoder's rate)
DEFAULT_PATTERN = "esi"
DEFAULT_MAX_STEPS = 512


@dataclass(frozen=True)
class Transcript:
    """One upload's transcript, cut into (piece, entity type or None) pairs for display."""

    text: str
    pieces: list[tuple[str, str | None]]
    audio_seconds: float
    wall_seconds: float
    warnings: tuple[str, ...] = ()

    @property
    def entities(self) -> int:
        return sum(1 for _, kind in self.pieces if kind is not None)


@dataclass(frozen=True)
class AnswerUpdate:
    """A step of a streamed answer: the text so far and the audio new since the previous update (or None);
    the last update has ``done`` set, the whole text and a one-line summary."""

    text: str
    audio: np.ndarray | None = None
    done: bool = False
    summary: str = ""


def _checked_audio(path: str | Path | None, what: str) -> tuple[Path, float]:
    """``path`` and its duration, or an InputError naming the upload by its file name (not the server's path)."""
    from speechbraid.data.audio import audio_info
    from speechbraid.inference.transcribe import MIN_AUDIO_SECONDS

    if path is None or not str(path):
        raise InputError(f"no {what}: record or upload one first")
    path = Path(path)
    if not path.is_file():
        raise InputError("the uploaded file is gone from the server; upload it again", path.name)
    try:
        _, duration = audio_info(path)
    except InputError as exc:
        raise InputError(exc.message, path.name) from None
    if duration < MIN_AUDIO_SECONDS:
        raise InputError(f"the audio is empty ({duration:.2f} s); record or upload at least {MIN_AUDIO_SECONDS} s "
                         "of speech", path.name)
    return path, duration


class Generator:
    """A joint text+speech model and its unit vocoder, answering one question at a time under one pattern."""

    def __init__(self, model_dir: str | Path, vocoder_dir: str | Path, pattern: str = DEFAULT_PATTERN,
                 device: str | None = None, max_steps: int = DEFAULT_MAX_STEPS, unit_chunk: int = 10) -> None:
        from speechbraid.api import SpeechLLM
        from speechbraid.evaluation.modality_gap import as_text_tokenizer
        from speechbraid.inference.settings import PatternDecodeConfig
        from speechbraid.patterns import ParallelPattern, get_pattern
        from speechbraid.units.vocoder import UnitVocoder

        try:
            self.pattern = get_pattern(pattern)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self.config = PatternDecodeConfig(max_steps=max_steps, unit_chunk=unit_chunk)
        loaded = SpeechLLM.from_pretrained(model_dir, device=device)
        self.model = loaded.module
        self.features = loaded.config.feature_config.extract_file
        self.tokenizer = as_text_tokenizer(loaded.tokenizer)
        # the decoder makes the same checks on the first question; at start-up they fail before the page is up
        if self.model.vocab.num_units < 1:
            raise ConfigError(f"{model_dir} is not a joint text+speech model: its vocabulary has no speech units")
        if isinstance(self.pattern, ParallelPattern) and self.model.speech_head is None:
            raise ConfigError(f"pattern {pattern!r} needs a model with a speech head (speech_head: true)")
        self.vocoder = UnitVocoder.load(vocoder_dir)
        if self.vocoder.config.n_units != self.model.vocab.num_units:
            raise ConfigError(f"the vocoder speaks {self.vocoder.config.n_units} units, the model "
                              f"{self.model.vocab.num_units}")

    def prompt(self, question: str | None, audio: str | Path | None = None) -> Any:
        """The prompt braid of a typed question, or of a spoken one (which wins when both are given)."""
        from speechbraid.data.questions import SQAQuestion
        from speechbraid.evaluation.generation import generation_prompt

        if audio is not None:
            path, duration = _checked_audio(audio, "spoken question")
            return generation_prompt(SQAQuestion("prompt", "speech", "", ("",), str(path), duration), "speech",
                                     self.tokenizer)
        if not question or not question.strip():
            raise InputError("the question is empty: type one or ask it aloud")
        return generation_prompt(SQAQuestion("prompt", "text", question.strip(), ("",)), "text", self.tokenizer)

    def answer(self, question: str | None, audio: str | Path | None = None) -> Iterator[AnswerUpdate]:
        """Decode the answer, yielding the text whenever it grows and each piece of speech as it is vocoded.

        Decoding runs in a worker thread (the decoder reports through callbacks, a web page wants a generator).
        Closing the generator early (the page went away) stops the decoder at its next chunk and waits for it.
        """
        from speechbraid.evaluation.generation import decode_streamed

        prompt = self.prompt(question, audio)  # bad input fails here, before any thread starts
        events: queue.Queue[tuple[str, Any]] = queue.Queue()
        stop = threading.Event()

        def checked(kind: str, value: Any) -> None:
            if stop.is_set():
                raise _Stopped
            events.put((kind, value))

        def work() -> None:
            try:
                responses, _, _, seconds = decode_streamed(
                    self.model, [prompt], self.pattern, self.vocoder, self.features, self.config,
                    on_text=lambda _, chunk: checked("text", chunk.tokens),
                    on_audio=lambda _, samples: checked("audio", samples))
                events.put(("done", (responses[0], seconds)))
            except _Stopped:
                pass
            except BaseException as exc:  # handed to the caller's thread, which raises it
                events.put(("error", exc))

        started = time.perf_counter()
        worker = threading.Thread(target=work, name="speechbraid-answer", daemon=True)
        worker.start()
        ids: list[int] = []
        samples = 0
        try:
            while True:
                kind, value = events.get()
                if kind == "text":
                    ids.extend(value)
                    text = self.tokenizer.decode(ids)
                    if not text.endswith("\ufffd"):  # a UTF-8 character split across tokens: wait for the rest
                        yield AnswerUpdate(text.strip())
                elif kind == "audio":
                    samples += len(value)
                    yield AnswerUpdate(self.tokenizer.decode(ids).strip(), np.asarray(value, dtype=np.float32))
                elif kind == "error":
                    raise value
                else:
                    response, seconds = value
                    total = time.perf_counter() - started
                    yield AnswerUpdate(self.tokenizer.decode(list(response.text)).strip(), done=True,
                                       summary=f"{samples / SAMPLE_RATE:.2f} s of speech from {len(response.units)} "
                                       f"units; {response.steps} decoding steps ({response.finish_reason}) in "
                                       f"{seconds:.2f} s, {total:.2f} s with the vocoder")
                    return
        finally:
            stop.set()
            worker.join()  # within a few decoding steps: the next chunk's callback sees ``stop``


class _Stopped(Exception):
    """Raised inside the decoder's callbacks once the consumer of :meth:`Generator.answer` has gone."""


class Demo:
    """The models behind the page: a transcriber, an entity matcher, and optionally a generator."""

    def __init__(self, transcriber: Any, lexicon: EntityLexicon | None = None,
                 generator: Generator | None = None) -> None:
        self.transcriber = transcriber
        self.lexicon = lexicon if lexicon is not None else EntityLexicon({})
        self.matcher = EntityMatcher(self.lexicon.names)
        self.generator = generator

    @classmethod
    def load(cls, model: str | Path, *, device: str | None = None, generator: str | Path | None = None,
             vocoder: str | Path | None = None, pattern: str = DEFAULT_PATTERN,
             max_steps: int = DEFAULT_MAX_STEPS, decoder: str = "llm", lm: str | Path | None = None) -> Demo:
        """Load the ASR model (a speech LLM, a Whisper checkpoint or a registered name; ``decoder``/``lm`` as for
        ``speechbraid transcribe``), the default corpus's entity lexicon and, with ``generator`` (and its
        ``vocoder``), the generation model."""
        from speechbraid.inference.transcribe import load_transcriber

        if (generator is None) != (vocoder is None):
            raise ConfigError("a generator needs its unit vocoder and a vocoder needs a generator: give both or "
                              "neither")
        transcriber = load_transcriber(model, device, decoder, lm)
        answerer = (Generator(generator, vocoder, pattern, device, max_steps)  # type: ignore[arg-type]
                    if generator is not None else None)
        return cls(transcriber, default_entity_lexicon(), answerer)

    def transcribe(self, path: str | Path | None) -> Transcript:
        """The transcript of one audio file (what ``SpeechLLM.transcribe`` gives) with its entities marked."""
        from speechbraid.inference.transcribe import audio_item

        path, duration = _checked_audio(path, "audio")
        run = self.transcriber.transcribe([audio_item(path, utt_id=path.stem)], progress=False)
        text = run.texts[0]
        return Transcript(text, highlight(text, self.matcher.find(text)), duration, run.wall_seconds,
                          tuple(run.warnings))

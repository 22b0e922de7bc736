"""KV-cached decoding of joint text-speech responses under the generation patterns (METHODS.md section 2).

A prompt is a braid prefix that ends BEFORE ``<|resp|>``; the decoder appends ``<|resp|>`` and lets the
model produce the response the way the pattern lays it out for training (``speechbraid.patterns``):

- interleaved / ESI: one token per step. Every step asks the row's :class:`InterleaveSchedule` - the same
  state machine the training builder replays - what may come next and restricts the logits to it
  (text: text ids + ``<|eot|>``, or only ``<|tpad|>`` once the text has ended in the plain pattern;
  speech: units + ``<|eos_speech|>``; switch: only ``<|S|>``). So a decoded response always replays
  through the schedule, whatever the model's quality.
- parallel: one text AND one speech token per step. The LM head picks the text token, the model's speech
  head on the last hidden state (``SpeechLLM.unit_logits``) picks the speech token (``<|spad|>`` is forced
  during the delay and after ``<|eos_speech|>``, ``<|tpad|>`` after ``<|eot|>``), and the next input is
  ``SpeechLLM.combine_streams`` of both - exactly the training input of a ``ParallelSpan`` position.

The LM runs in a :class:`~speechbraid.models.lm_state.LMState` (left-padded prompts, with the KV cache or -
the reference path - recomputing the whole sequence), as in ``inference.decode``. Finished rows leave the batch.

Streaming: ``on_chunk(index, chunk)`` receives a :class:`TextChunk` as soon as a text token is chosen and
a :class:`UnitChunk` every ``unit_chunk`` units (the rest at the end of speech), so a caller can vocode and
play audio while decoding goes on (:class:`VocoderStream`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from speechbraid.braid.spans import Braid, SpecialSpan
from speechbraid.braid.vocab import VocabLayout
from speechbraid.errors import ConfigError
from speechbraid.inference.decode import FinishReason, sampling_warpers
from speechbraid.inference.settings import PatternDecodeConfig
from speechbraid.models.lm_state import LMState
from speechbraid.models.speech_llm import SpeechLLM
from speechbraid.patterns.build import build_generation_braid, response_steps
from speechbraid.patterns.spec import (
    EOS_SPEECH,
    EOT,
    RESPONSE,
    SPEECH_PAD,
    SWITCH,
    TEXT_PAD,
    InterleavedPattern,
    ParallelPattern,
    Pattern,
)

FeatureFn = Callable[[str], torch.Tensor]


@dataclass(frozen=True)
class TextChunk:
    tokens: tuple[int, ...]  # text token ids (one per chunk: each is streamed as soon as it is chosen)
    step: int  # response step (1-based) that produced the last of them


@dataclass(frozen=True)
class UnitChunk:
    units: tuple[int, ...]  # raw unit ids (0..num_units-1)
    step: int
    last: bool  # no more units follow for this response


Chunk = TextChunk | UnitChunk
ChunkCallback = Callable[[int, Chunk], None]


@dataclass(frozen=True)
class Response:
    text: tuple[int, ...]  # text token ids, without <|eot|> and <|tpad|>
    units: tuple[int, ...]  # raw unit ids, without <|eos_speech|> and <|spad|>
    tokens: tuple[int, ...]  # the decoded response, vocabulary ids (parallel: the text stream)
    speech_stream: tuple[int, ...]  # parallel: the speech stream, vocabulary ids; () for interleaved patterns
    steps: int  # decoding steps = response positions
    length: int  # positions of the whole sequence: prompt + <|resp|> + response
    finish_reason: FinishReason  # "stop": the pattern is done (text and speech ended); "length": max_steps
    first_unit_step: int | None  # step that produced the first speech unit (None: no unit)
    first_unit_s: float | None  # seconds from the call's start until then (prompt pass included)


# Token rules: which ids a head may choose at a step. Index into the allowed-id table (_rule_table).
_TEXT, _TPAD, _SPEECH, _SWITCH, _SPAD = range(5)
Rule = int


def _rule_table(vocab: VocabLayout, width: int, device: torch.device) -> torch.Tensor:
    """(5, width) bool: row r marks the ids rule r allows."""
    table = torch.zeros(5, width, dtype=torch.bool, device=device)
    table[_TEXT, : vocab.text_size] = True
    table[_TEXT, vocab.special_id(EOT)] = True
    table[_TPAD, vocab.special_id(TEXT_PAD)] = True
    table[_SPEECH, vocab.unit_offset: vocab.size] = True
    table[_SPEECH, vocab.special_id(EOS_SPEECH)] = True
    table[_SWITCH, vocab.special_id(SWITCH)] = True
    table[_SPAD, vocab.special_id(SPEECH_PAD)] = True
    return table


@dataclass(frozen=True)
class _Context:
    """What every row of one call shares."""

    vocab: VocabLayout
    unit_chunk: int
    on_chunk: ChunkCallback | None
    start: float  # perf_counter() at the call's start


class _Row:
    """One response being decoded: what it produced so far, and its streaming buffer."""

    def __init__(self, index: int, context: _Context) -> None:
        self.index = index
        self.vocab = context.vocab
        self.unit_chunk = context.unit_chunk
        self.on_chunk = context.on_chunk
        self.start = context.start
        self.text: list[int] = []
        self.units: list[int] = []
        self.tokens: list[int] = []
        self.speech_stream: list[int] = []
        self.pending: list[int] = []  # units not yet streamed
        self.units_closed = False  # the chunk with last=True has been sent
        self.first_unit_step: int | None = None
        self.first_unit_s: float | None = None

    def add_text(self, token: int, step: int) -> None:
        self.text.append(token)
        if self.on_chunk is not None:
            self.on_chunk(self.index, TextChunk((token,), step))

    def add_unit(self, token: int, step: int) -> None:
        self.units.append(token - self.vocab.unit_offset)
        self.pending.append(self.units[-1])
        if self.first_unit_step is None:
            self.first_unit_step, self.first_unit_s = step, time.perf_counter() - self.start
        if len(self.pending) == self.unit_chunk:
            self.flush_units(step, last=False)

    def flush_units(self, step: int, last: bool) -> None:
        if self.on_chunk is not None and not self.units_closed and (self.pending or last):
            self.on_chunk(self.index, UnitChunk(tuple(self.pending), step, last))
        self.pending = []
        self.units_closed = self.units_closed or last

    def rules(self) -> tuple[Rule, Rule | None]:
        """(rule of the single/text head, rule of the speech head or None)."""
        raise NotImplementedError

    def push(self, token: int, speech: int | None, step: int) -> bool:
        """Record the step's chosen token(s); True when the response is complete."""
        raise NotImplementedError

    def finish(self, steps: int, prompt_length: int, reason: FinishReason) -> Response:
        self.flush_units(steps, last=True)
        return Response(tuple(self.text), tuple(self.units), tuple(self.tokens), tuple(self.speech_stream), steps,
                        prompt_length + steps, reason, self.first_unit_step, self.first_unit_s)


class _InterleavedRow(_Row):
    def __init__(self, pattern: InterleavedPattern, index: int, context: _Context) -> None:
        super().__init__(index, context)
        self.schedule = pattern.schedule()

    def rules(self) -> tuple[Rule, None]:
        expect = self.schedule.expect()
        if expect == "switch":
            return _SWITCH, None
        if expect == "speech":
            return _SPEECH, None
        # text expected after the text ended: only the plain pattern gets here (ESI switches instead)
        return (_TPAD if self.schedule.text_ended else _TEXT), None

    def push(self, token: int, speech: int | None, step: int) -> bool:
        self.tokens.append(token)
        expect = self.schedule.expect()
        if expect == "switch":
            self.schedule.advance("switch")
        elif expect == "text":
            self.schedule.advance("text", ended=token == self.vocab.special_id(EOT))
            if self.vocab.kind_of(token) == "text":
                self.add_text(token, step)
        else:
            ended = token == self.vocab.special_id(EOS_SPEECH)
            self.schedule.advance("speech", ended=ended)
            if ended:
                self.flush_units(step, last=True)
            else:
                self.add_unit(token, step)
        return self.schedule.expect() == "done"


class _ParallelRow(_Row):
    def __init__(self, pattern: ParallelPattern, index: int, context: _Context) -> None:
        super().__init__(index, context)
        self.delay = pattern.speech_delay
        self.text_ended = False
        self.speech_ended = False

    def rules(self) -> tuple[Rule, Rule]:
        waiting = len(self.speech_stream) < self.delay or self.speech_ended
        return (_TPAD if self.text_ended else _TEXT), (_SPAD if waiting else _SPEECH)

    def push(self, token: int, speech: int | None, step: int) -> bool:
        assert speech is not None  # the parallel loop always picks a speech token
        _, speech_rule = self.rules()
        self.tokens.append(token)
        self.speech_stream.append(speech)
        if not self.text_ended:
            if token == self.vocab.special_id(EOT):
                self.text_ended = True
            else:
                self.add_text(token, step)
        if speech_rule == _SPEECH:
            if speech == self.vocab.special_id(EOS_SPEECH):
                self.speech_ended = True
                self.flush_units(step, last=True)
            else:
                self.add_unit(speech, step)
        return self.text_ended and self.speech_ended


def _with_response_token(prompt: Braid) -> Braid:
    last = prompt.spans[-1] if prompt.spans else None
    if isinstance(last, SpecialSpan) and last.token == RESPONSE:
        raise ValueError(f"prompt {prompt.id!r} already ends with {RESPONSE}; pass it without, the decoder adds it")
    return dataclasses.replace(prompt, spans=(*prompt.spans, SpecialSpan(RESPONSE)))


def _check_model(model: SpeechLLM, pattern: Pattern) -> None:
    if model.vocab.num_units < 1:
        raise ConfigError("the model's vocabulary has no speech units (num_units = 0); it cannot speak")
    if isinstance(pattern, ParallelPattern):
        if not model.has_speech_head:
            raise ConfigError(f"pattern {pattern.name!r} needs a model with a speech head (speech_head: true)")
        if pattern.combine != model.stream_combine:
            raise ConfigError(f"pattern {pattern.name!r} combines streams by {pattern.combine!r} but the model "
                              f"was built with stream_combine={model.stream_combine!r}")


@torch.no_grad()
def generate_response(model: SpeechLLM, prompts: Sequence[Braid], pattern: Pattern, features: FeatureFn | None,
                      config: PatternDecodeConfig, on_chunk: ChunkCallback | None = None,
                      use_cache: bool = True) -> list[Response]:
    """Decode one response per prompt (in order) under ``pattern``; see the module docstring.

    ``features(path)`` gives ``(T, n_mels)`` for a prompt's audio (None if no prompt has speech).
    ``use_cache=False`` recomputes the full sequence each step: same tokens, for tests and benchmarks.
    """
    if not prompts:
        return []
    _check_model(model, pattern)
    start = time.perf_counter()
    device = next(model.parameters()).device
    vocab = model.vocab
    parallel = isinstance(pattern, ParallelPattern)
    lm = LMState.from_prompts(model, [_with_response_token(p) for p in prompts], features, use_cache, hidden=parallel)
    prompt_lengths = lm.mask.sum(dim=1).tolist()
    context = _Context(vocab, config.unit_chunk, on_chunk, start)
    rows: list[_Row] = [_ParallelRow(pattern, i, context) if isinstance(pattern, ParallelPattern)
                        else _InterleavedRow(pattern, i, context) for i in range(len(prompts))]
    results: list[Response | None] = [None] * len(prompts)
    warpers = sampling_warpers(config.sampling())
    generator = torch.Generator(device=device).manual_seed(config.seed) if config.do_sample else None
    tables: dict[int, torch.Tensor] = {}

    def pick(logits: torch.Tensor, rules: list[Rule]) -> torch.Tensor:
        width = logits.shape[-1]
        if width not in tables:
            tables[width] = _rule_table(vocab, width, device)
        allowed = tables[width][torch.tensor(rules, device=device)]
        scores = logits.float().masked_fill(~allowed, -math.inf)
        if generator is None:
            return scores.argmax(dim=-1)
        probs = torch.softmax(warpers(None, scores), dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)

    active = list(range(len(prompts)))  # prompt index of every row still decoding
    logits, hidden = lm.first()
    for step in range(1, config.max_steps + 1):
        rules = [rows[i].rules() for i in active]
        chosen = pick(logits, [r[0] for r in rules])
        speech = pick(model.unit_logits(hidden), [r[1] for r in rules]) if parallel else None
        keep: list[int] = []
        chosen_list = chosen.tolist()
        speech_list = speech.tolist() if speech is not None else [None] * len(active)
        for pos, (i, tok, sp) in enumerate(zip(active, chosen_list, speech_list, strict=True)):
            done = rows[i].push(tok, sp, step)
            if done or step == config.max_steps:
                results[i] = rows[i].finish(step, prompt_lengths[i], "stop" if done else "length")
            else:
                keep.append(pos)
        if not keep:
            break
        if len(keep) < len(active):
            index = torch.tensor(keep, device=device)
            lm.select(index)
            active = [active[k] for k in keep]
            chosen = chosen[index]
            speech = speech[index] if speech is not None else None
        # a parallel position's input is both streams' embeddings combined, as in training
        logits, hidden = lm.step(chosen if speech is None else
                                 model.combine_streams(model.embed_tokens(chosen[:, None]), speech[:, None])[:, 0])
    return [r for r in results if r is not None]


class AudioStream(Protocol):
    """Push-style unit-to-audio synthesis for one response (e.g. ``speechbraid.units.UnitStream``)."""

    def push(self, units: Sequence[int]) -> np.ndarray: ...

    def flush(self) -> np.ndarray: ...


class VocoderStream:
    """An ``on_chunk`` callback that turns every response's unit chunks into audio as they arrive.

    ``new_stream()`` makes one push-style synthesiser per response (``lambda: UnitStream(vocoder)``), so
    audio is continuous across chunk boundaries; its ``flush()`` runs at the response's last unit chunk.
    Chunks of different responses of one batch interleave. Audio goes to ``on_audio(index, samples)`` as
    soon as it exists (to play it) and is kept for :meth:`waveform`; text chunks go to ``on_text``.
    """

    def __init__(self, new_stream: Callable[[], AudioStream],
                 on_audio: Callable[[int, np.ndarray], None] | None = None,
                 on_text: Callable[[int, TextChunk], None] | None = None) -> None:
        self.new_stream = new_stream
        self.on_audio = on_audio
        self.on_text = on_text
        self.streams: dict[int, AudioStream] = {}
        self.chunks: defaultdict[int, list[np.ndarray]] = defaultdict(list)

    def __call__(self, index: int, chunk: Chunk) -> None:
        if isinstance(chunk, TextChunk):
            if self.on_text is not None:
                self.on_text(index, chunk)
            return
        stream = self.streams.setdefault(index, self.new_stream())
        pieces = [np.asarray(stream.push(chunk.units))] if chunk.units else []
        if chunk.last:
            pieces.append(np.asarray(stream.flush()))
        for samples in pieces:
            if len(samples):
                self.chunks[index].append(samples)
                if self.on_audio is not None:
                    self.on_audio(index, samples)

    def waveform(self, index: int) -> np.ndarray:
        """All audio of response ``index`` so far, concatenated."""
        parts = self.chunks.get(index)
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


# ----------------------------------------------------------------------------------------------------------------
# Measurements.


def teacher_forced_lengths(pattern: Pattern, responses: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[int]:
    """Response positions (decoding steps) ``pattern`` NEEDS for each reference ``(text ids, unit ids)`` pair.

    Independent of any model: the training builder lays the reference out and counts its positions, so the
    ratio between patterns (ESI vs plain interleaved) is the pattern's own cost.
    """
    return [response_steps(build_generation_braid(pattern, [], text, units)) for text, units in responses]


def _timed_decode(model: SpeechLLM, prompts: Sequence[Braid], pattern: Pattern, features: FeatureFn | None,
                  config: PatternDecodeConfig) -> tuple[list[Response], float, dict[int, float]]:
    """(responses, wall seconds, seconds from the start to each response's first non-empty unit chunk)."""
    device = next(model.parameters()).device
    first_chunk: dict[int, float] = {}

    def on_chunk(index: int, chunk: Chunk) -> None:
        if isinstance(chunk, UnitChunk) and chunk.units and index not in first_chunk:
            first_chunk[index] = time.perf_counter() - start

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    responses = generate_response(model, prompts, pattern, features, config, on_chunk)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return responses, time.perf_counter() - start, first_chunk


def measure_pattern_decoding(model: SpeechLLM, prompts: Sequence[Braid], patterns: Sequence[Pattern],
                             features: FeatureFn | None, config: PatternDecodeConfig,
                             ) -> list[dict[str, float | int | str | None]]:
    """Decode the same prompts with the same model under every pattern (KV cache, after a warm-up run).

    Per pattern: mean decoding steps, mean sequence length (prompt + response positions), wall seconds,
    speech units per second, mean time to the first unit chunk (the first audio a player could get), and
    how many responses hit ``max_steps``. An untrained model's lengths are arbitrary: compare patterns'
    sequence lengths with :func:`teacher_forced_lengths` on reference responses instead.
    """
    report: list[dict[str, float | int | str | None]] = []
    for pattern in patterns:
        generate_response(model, prompts[:1], pattern, features, dataclasses.replace(config, max_steps=2))  # warm-up
        responses, wall, first_chunk = _timed_decode(model, prompts, pattern, features, config)
        n = len(responses)
        units = sum(len(r.units) for r in responses)
        report.append({
            "pattern": pattern.name,
            "responses": n,
            "steps_mean": sum(r.steps for r in responses) / n,
            "sequence_length_mean": sum(r.length for r in responses) / n,
            "text_tokens": sum(len(r.text) for r in responses),
            "units": units,
            "wall_s": wall,
            "units_per_s": units / wall,
            "first_chunk_s_mean": sum(first_chunk.values()) / len(first_chunk) if first_chunk else None,
            "hit_max_steps": sum(r.finish_reason == "length" for r in responses),
        })
    return report


__all__ = [
    "Chunk",
    "ChunkCallback",
    "PatternDecodeConfig",
    "Response",
    "TextChunk",
    "UnitChunk",
    "VocoderStream",
    "generate_response",
    "measure_pattern_decoding",
    "teacher_forced_lengths",
]

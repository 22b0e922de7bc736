"""Training braids for the generation patterns: ``prompt <|resp|> response``, laid out by the pattern.

The response is the text (tokens, then ``<|eot|>``) and its speech (units, then ``<|eos_speech|>``).
Every response position is a target, control and padding tokens included: the decoder must produce
exactly this sequence, so the model learns to emit the pads and switches too. The prompt carries no loss.
"""

from __future__ import annotations

from collections.abc import Sequence

from speechbraid.braid.spans import Braid, ParallelSpan, Span, SpecialSpan, StreamToken, TextSpan, UnitSpan
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


def interleave_response(pattern: InterleavedPattern, text: Sequence[int], units: Sequence[int]) -> list[Span]:
    """Replay the pattern's schedule over a known response; consecutive same-kind tokens share a span."""
    schedule = pattern.schedule()
    text_queue: list[StreamToken] = [*text, EOT]
    unit_queue: list[StreamToken] = [*units, EOS_SPEECH]
    spans: list[Span] = []
    run: list[int] = []
    run_kind = ""

    def flush() -> None:
        if run:
            spans.append(TextSpan(tuple(run), True) if run_kind == "text" else UnitSpan(tuple(run), True))
            run.clear()

    while (expect := schedule.expect()) != "done":
        if expect == "switch":
            token: StreamToken = SWITCH
        elif expect == "text":
            token = text_queue.pop(0) if text_queue else TEXT_PAD
        else:
            token = unit_queue.pop(0)
        schedule.advance(expect, ended=token in (EOT, EOS_SPEECH))
        if isinstance(token, str):
            flush()
            spans.append(SpecialSpan(token, loss=True))
        else:
            if run_kind != expect:
                flush()
                run_kind = expect
            run.append(token)
    flush()
    return spans


def parallel_response(pattern: ParallelPattern, text: Sequence[int], units: Sequence[int]) -> ParallelSpan:
    text_stream: list[StreamToken] = [*text, EOT]
    speech_stream: list[StreamToken] = [SPEECH_PAD] * pattern.speech_delay + [*units, EOS_SPEECH]
    length = max(len(text_stream), len(speech_stream))
    text_stream += [TEXT_PAD] * (length - len(text_stream))
    speech_stream += [SPEECH_PAD] * (length - len(speech_stream))
    return ParallelSpan(tuple(text_stream), tuple(speech_stream), loss=True)


def build_generation_braid(
    pattern: Pattern,
    prompt: Sequence[Span],
    text: Sequence[int],
    units: Sequence[int],
    *,
    id: str = "",
    audio: str | None = None,
    duration: float | None = None,
) -> Braid:
    """``prompt`` (spans without loss: text, continuous speech or units) + ``<|resp|>`` + the response."""
    if any(span.loss for span in prompt):
        raise ValueError(f"{id!r}: prompt spans must not carry loss")
    if not units:
        raise ValueError(f"{id!r}: the response has no speech units")
    if isinstance(pattern, InterleavedPattern):
        response: list[Span] = interleave_response(pattern, text, units)
    else:
        response = [parallel_response(pattern, text, units)]
    spans = (*prompt, SpecialSpan(RESPONSE), *response)
    return Braid(spans, id=id, audio=audio, duration=duration, layout=f"gen:{pattern.name}")


def response_steps(braid: Braid) -> int:
    """Decoding steps the response takes (positions after ``<|resp|>``): the sequence-length figure."""
    steps, seen = 0, False
    for span in braid.spans:
        if seen:
            if isinstance(span, TextSpan):
                steps += len(span.tokens)
            elif isinstance(span, UnitSpan):
                steps += len(span.units)
            elif isinstance(span, ParallelSpan):
                steps += len(span.text)
            else:
                steps += 1
        seen = seen or (isinstance(span, SpecialSpan) and span.token == RESPONSE)
    return steps

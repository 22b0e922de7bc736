"""Questions as braids: the prompt layouts the modality-gap, spoken-QA and generation evaluations share.

``question_braid`` lays out ``<BOS> before [QUESTION] after`` with no loss anywhere, where ``[QUESTION]`` is
the question as text or a speech span over its whole audio; the text around it is tokenised separately in
both conditions, so the text and speech braids of one question differ in that span only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from speechbraid.braid.spans import Braid, SpeechSpan, TextSpan
from speechbraid.data.questions import Question
from speechbraid.errors import ConfigError, InputError
from speechbraid.layouts.tokenizer import TextTokenizer

Modality = Literal["text", "speech"]


def question_span(question: Question, modality: Modality, tokenizer: TextTokenizer) -> TextSpan | SpeechSpan:
    """The question as text (``" " + question``) or as a speech span over its whole audio."""
    if modality == "text":
        text = " " + question.question
        return TextSpan(tuple(tokenizer.encode(text)), False, text)
    if modality != "speech":
        raise ConfigError(f"modality must be 'text' or 'speech', got {modality!r}")
    if question.audio is None or question.duration is None:
        raise InputError(f"question '{question.id}' has no audio; build the set with synth=True for speech")
    return SpeechSpan(0.0, question.duration)


def question_braid(question: Question, modality: Modality, tokenizer: TextTokenizer, before: str, after: str,
                   after_tokens: Sequence[int] = (), layout: str = "") -> Braid:
    """``<BOS> before [QUESTION] after`` with no loss anywhere; ``after_tokens`` are appended to ``after``'s tokens."""
    spans = (
        TextSpan((tokenizer.bos_id,), False),
        TextSpan(tuple(tokenizer.encode(before)), False, before),
        question_span(question, modality, tokenizer),
        TextSpan((*tokenizer.encode(after), *after_tokens), False, after),
    )
    speech = modality == "speech"
    return Braid(spans, id=question.id, audio=question.audio if speech else None,
                 duration=question.duration if speech else None, layout=f"{layout}:{modality}")

"""ASR-only and text-only layouts (METHODS.md section 1): the baselines every other layout is compared with.

- ``asr``: ``[speech][<|asr|>][transcript EOS]`` - loss on the transcript and its EOS only;
- ``text``: ``[text EOS]`` - loss on every text token (domain text without audio).
"""

from __future__ import annotations

from speechbraid.braid.spans import Braid, SpecialSpan, SpeechSpan, TextSpan
from speechbraid.data.records import Utterance
from speechbraid.layouts.tokenizer import TextTokenizer


def build_asr(record: Utterance, tokenizer: TextTokenizer) -> Braid:
    if record.audio is None or record.duration is None:
        raise ValueError(f"utterance {record.id!r} has no audio/duration; the asr layout needs speech")
    tokens = (*tokenizer.encode(record.text), tokenizer.eos_id)
    return Braid(
        spans=(SpeechSpan(0.0, record.duration), SpecialSpan("<|asr|>"), TextSpan(tokens, True, record.text)),
        id=record.id,
        audio=record.audio,
        duration=record.duration,
        layout="asr",
    )


def build_text(record: Utterance, tokenizer: TextTokenizer) -> Braid:
    # The leading BOS carries no loss; it gives the first real token a context to be predicted from.
    tokens = (*tokenizer.encode(record.text), tokenizer.eos_id)
    spans = (TextSpan((tokenizer.bos_id,), False), TextSpan(tokens, True, record.text))
    return Braid(spans=spans, id=record.id, layout="text")

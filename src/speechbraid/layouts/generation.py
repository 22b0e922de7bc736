"""Generation layouts (METHODS.md section 2): a question as prompt, then the answer text and its speech units
laid out by a decoding pattern (``patterns``) -- the training examples of ``gen-interleaved``, ``gen-esi`` and
``gen-parallel``, and the prompts their decoders start from.

Prompt (no loss anywhere): ``<BOS>Question: [QUESTION]\\nAnswer:`` with the question as text or as a speech span
over its audio (``layouts.question``); training appends ``<|resp|>`` and the patterned response, the decoder
appends ``<|resp|>`` and generates the response.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from speechbraid.braid.spans import Braid
from speechbraid.data.questions import SQAQuestion
from speechbraid.errors import InputError
from speechbraid.layouts.question import Modality, question_braid
from speechbraid.layouts.tokenizer import TextTokenizer
from speechbraid.patterns import build_generation_braid, get_pattern

if TYPE_CHECKING:
    from speechbraid.data.questions import SpokenQA

PROMPT_BEFORE = "Question:"
PROMPT_AFTER = "\nAnswer:"


def generation_prompt(question: SQAQuestion, modality: Modality, tokenizer: TextTokenizer) -> Braid:
    """The prompt braid of one question; used for training and decoding alike."""
    return question_braid(question, modality, tokenizer, PROMPT_BEFORE, PROMPT_AFTER, layout="gen-prompt")


def qa_generation_braid(pair: SpokenQA, pattern_name: str, modality: Modality, tokenizer: TextTokenizer) -> Braid:
    """Prompt (question as text or speech) + ``<|resp|>`` + answer text and units laid out by the pattern."""
    if pair.units is None:
        raise InputError(f"spoken QA pair {pair.id!r} has no answer units; build the set with a unit tokenizer")
    prompt = generation_prompt(pair.as_question(), modality, tokenizer)
    answer = tokenizer.encode(" " + pair.answer_text)
    return build_generation_braid(get_pattern(pattern_name), prompt.spans, answer, pair.units,
                                  id=f"{pair.id}:{modality}", audio=prompt.audio, duration=prompt.duration)

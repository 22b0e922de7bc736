"""Zero-shot spoken question answering (METHODS.md section 1): short answers to questions given as speech.

Prompt, one braid per question (no examples, no SQA training)::

    <BOS>Answer the question in a few words.
    Question:[QUESTION]
    Answer:

``[QUESTION]`` is a speech span over the question audio (S2T, the paper's condition) or the text
span ``" " + question`` (T2T, the reference). The model continues greedily (:func:`generate`, KV
cache) for at most ``max_new_tokens`` (default 8) tokens, stopping at EOS or a newline, but not before its
first token: a model fine-tuned on ASR ends any prompt at once (SmolLM2 after 50 LoRA steps: EOS first on all
30 questions, so every row scored 0 whatever it knew). The hypothesis is the decoded text up to the first newline.

Scoring (:func:`answer_matches`): the hypothesis and every accepted answer are normalised with
:func:`normalize_for_wer` (case, punctuation and Unicode forms ignored; hyphens inside words kept).
The answer is right when some non-empty normalised alias occurs in the normalised hypothesis as a
run of WHOLE words: equality counts, and so does containment ("a bird" and "it is a bird" both
contain "bird"), but "scold" does not contain "cold". This is the containment rule of LLaMA-QA /
TriviaQA-style spoken QA evaluation; the short decoding budget keeps a model from listing many
guesses to hit one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from speechbraid.braid.spans import Braid
from speechbraid.data.normalize import normalize_for_wer
from speechbraid.data.questions import SQAQuestion
from speechbraid.errors import ConfigError
from speechbraid.evaluation.modality_gap import Features, accuracy_by_kind, as_text_tokenizer, require_features
from speechbraid.inference.decode import generate
from speechbraid.inference.settings import DecodeConfig
from speechbraid.layouts.question import Modality, question_braid
from speechbraid.layouts.tokenizer import TextTokenizer
from speechbraid.models.speech_llm import SpeechLLM

SQA_BEFORE = "Answer the question in a few words.\nQuestion:"
SQA_AFTER = "\nAnswer:"


def answer_matches(hypothesis: str, answers: Sequence[str]) -> bool:
    """True when a normalised answer alias equals or is contained, as whole words, in the normalised hypothesis."""
    padded = f" {normalize_for_wer(hypothesis)} "
    for alias in answers:
        key = normalize_for_wer(alias)
        if key and f" {key} " in padded:
            return True
    return False


def sqa_prompt(question: SQAQuestion, modality: Modality, tokenizer: TextTokenizer) -> Braid:
    """The zero-shot prompt braid of one question (module docstring)."""
    return question_braid(question, modality, tokenizer, SQA_BEFORE, SQA_AFTER, layout="sqa")


def _stop_ids(tokenizer: TextTokenizer) -> tuple[int, ...]:
    newline = tokenizer.encode("\n")
    # a newline that is its own token ends the answer line; otherwise the line is cut after decoding
    return (tokenizer.eos_id, *newline) if len(newline) == 1 else (tokenizer.eos_id,)


def sqa_accuracy(model: SpeechLLM, tokenizer: Any, questions: Sequence[SQAQuestion], *,
                 modality: Modality = "speech", features: Features | None = None, max_new_tokens: int = 8,
                 batch_size: int = 16) -> dict[str, Any]:
    """Greedy answers to ``questions`` asked in ``modality``, scored by :func:`answer_matches`.

    Returns ``accuracy``, ``n``, ``correct``, ``modality``, per-kind accuracy ``by_kind`` and the
    ``hypotheses`` (answer lines, in question order).
    """
    if not questions:
        raise ConfigError("no spoken QA questions to evaluate")
    require_features(modality, features)
    tok = as_text_tokenizer(tokenizer)
    config = DecodeConfig(max_new_tokens=max_new_tokens, min_new_tokens=1, stop_ids=_stop_ids(tok))
    hypotheses: list[str] = []
    for start in range(0, len(questions), batch_size):
        chunk = questions[start:start + batch_size]
        results = generate(model, [sqa_prompt(q, modality, tok) for q in chunk], features, config)
        hypotheses += [tok.decode(list(r.tokens)).split("\n")[0].strip() for r in results]
    correct = [answer_matches(h, q.answers) for h, q in zip(hypotheses, questions, strict=True)]
    return {
        "accuracy": sum(correct) / len(correct),
        "n": len(correct),
        "correct": sum(correct),
        "modality": modality,
        "by_kind": accuracy_by_kind(questions, correct),
        "hypotheses": hypotheses,
    }


def spoken_qa(model: SpeechLLM, tokenizer: Any, questions: Sequence[SQAQuestion], *, features: Features,
              max_new_tokens: int = 8, batch_size: int = 16) -> dict[str, Any]:
    """``{"s2t", "t2t", "n", "hypotheses"}``: zero-shot accuracy with the question spoken, and as text for
    reference; the answers per modality (``{"speech": [...], "text": [...]}``, in question order)."""
    common = {"features": features, "max_new_tokens": max_new_tokens, "batch_size": batch_size}
    s2t = sqa_accuracy(model, tokenizer, questions, modality="speech", **common)
    t2t = sqa_accuracy(model, tokenizer, questions, modality="text", **common)
    return {"s2t": s2t["accuracy"], "t2t": t2t["accuracy"], "n": s2t["n"],
            "hypotheses": {"speech": s2t["hypotheses"], "text": t2t["hypotheses"]}}

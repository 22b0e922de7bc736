"""Modality gap (METHODS.md section 1): the same multiple-choice questions asked as text (T2T) and as speech (S2T).

Prompt (MMLU-style, as in the usual 5-shot harnesses), one braid per question::

    <BOS>The following are multiple choice questions (with answers).

    Question: <shot question>          \\
    A. <option>                         |  k times, always TEXT
    ...                                 |
    Answer: <letter>                   /

    Question:[QUESTION]
    A. <option>
    B. <option>
    C. <option>
    D. <option>
    Answer:

``[QUESTION]`` is the text span ``" " + question`` (T2T) or a speech span over the whole question audio
(S2T). The text before and after it is tokenised separately in both conditions, so the two braids
differ in that span only. The options stay text: only the question is spoken.

With ``scoring="letter"`` the answer is the letter whose continuation token has the highest logit after
``Answer:``. The continuations are the tokenizer's encodings of ``" A"`` ... ``" D"``: when these are single distinct
tokens (byte-level BPE: ``"ĠA"``...) those tokens are compared; when they share leading tokens
(a tokenizer that splits off the space, SentencePiece's lone ``"▁"``), the shared tokens are appended to
the prompt and the first token where the letters differ is compared. A tokenizer that cannot tell the
letters apart at any single position is a configuration error. Only those four logits are compared
(no renormalisation over the vocabulary), so a model that would rather say something else still
picks a letter, as in MMLU's log-likelihood scoring.

Small LMs answer the lettered format with one letter whatever is asked (SmolLM2-135M: "A" to all 40 questions,
chance accuracy), so ``scoring="cloze"`` (the cloze formulation small-model evaluations use, e.g. SmolLM's MMLU
cloze) asks without options and scores each option as the answer itself::

    <BOS>Question: <shot question>        \\  k times, always TEXT
    Answer: <shot's correct option>         /  (blank line after each)
    Question:[QUESTION]
    Answer: <option>                         <- one braid per option, loss on the option's tokens only

and picks the option with the highest log-likelihood per byte of ``" " + option`` (lm-eval-harness's
``acc_norm``), so a longer option is not penalised for its length.

All prompts go through :meth:`SpeechLLM.prepare_inputs` (the one embedding-assembly place) in
batches; for letters the LM computes logits only at each row's last prompt position, for cloze at every position.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any, Literal

import torch

from speechbraid.batching.collate import IGNORE_INDEX, collate, flatten_braid
from speechbraid.braid.spans import Braid, TextSpan
from speechbraid.data.questions import LETTERS, MCQuestion, Question
from speechbraid.errors import ConfigError, InputError
from speechbraid.layouts.question import Modality, question_braid
from speechbraid.layouts.tokenizer import HFTextTokenizer, TextTokenizer
from speechbraid.models.speech_llm import SpeechLLM

Features = Callable[[str], torch.Tensor]
MCScoring = Literal["letter", "cloze"]

MC_HEADER = "The following are multiple choice questions (with answers).\n\n"


def as_text_tokenizer(tokenizer: Any) -> TextTokenizer:
    """Accept either speechbraid's :class:`TextTokenizer` or the HF tokenizer ``load_speech_llm`` returns."""
    return tokenizer if hasattr(tokenizer, "eos_id") else HFTextTokenizer(tokenizer)


def letter_tokens(tokenizer: TextTokenizer) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(shared, ids)``: tokens all of ``" A"``..``" D"`` start with, then each letter's deciding token."""
    encoded = [tokenizer.encode(" " + letter) for letter in LETTERS]
    shared: list[int] = []
    for column in zip(*encoded, strict=False):
        if len(set(column)) > 1:
            break
        shared.append(column[0])
    if any(len(e) <= len(shared) for e in encoded):
        raise ConfigError(f"the tokenizer encodes the answer letters as {encoded}; they do not differ at one token")
    ids = tuple(e[len(shared)] for e in encoded)
    if len(set(ids)) != len(ids):  # e.g. "A" and "B" share a token where "C" already differs
        raise ConfigError(f"answer letters share a deciding token: {encoded}")
    return tuple(shared), ids


def _options_text(question: MCQuestion) -> str:
    return "".join(f"{letter}. {option}\n" for letter, option in zip(LETTERS, question.options, strict=True))


def mc_prompt(question: MCQuestion, shots: Sequence[MCQuestion], modality: Modality,
              tokenizer: TextTokenizer) -> Braid:
    """The k-shot prompt braid of one question (module docstring), ending where the answer letter goes."""
    context = MC_HEADER + "".join(
        f"Question: {s.question}\n{_options_text(s)}Answer: {s.answer_letter}\n\n" for s in shots
    )
    shared, _ = letter_tokens(tokenizer)
    return question_braid(question, modality, tokenizer, context + "Question:",
                          "\n" + _options_text(question) + "Answer:", shared, layout="mc")


def cloze_prompts(question: MCQuestion, shots: Sequence[MCQuestion], modality: Modality,
                  tokenizer: TextTokenizer) -> list[Braid]:
    """One braid per option for cloze scoring (module docstring): the option's tokens carry the loss mask."""
    context = "".join(f"Question: {s.question}\nAnswer: {s.options[s.answer]}\n\n" for s in shots)
    prompt = question_braid(question, modality, tokenizer, context + "Question:", "\nAnswer:", layout="mc-cloze")
    return [replace(prompt, spans=(*prompt.spans, TextSpan(tuple(tokenizer.encode(" " + option)), True, option)))
            for option in question.options]


def _batches(model: SpeechLLM, prompts: Sequence[Braid], features: Features | None,
             batch_size: int) -> Iterator[tuple[list[int], Any]]:
    """``(indices, batch)`` over ``prompts`` on the model's device, similar lengths together (one braid per row)."""
    device = next(model.parameters()).device
    select = model.frame_selector(features) if features is not None else None
    flats = [flatten_braid(p, model.vocab, model.frame_rate, select) for p in prompts]
    order = sorted(range(len(flats)), key=lambda i: -len(flats[i]))  # similar lengths share a batch
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        yield rows, collate([[flats[i]] for i in rows], features).to(device)


@torch.no_grad()
def continuation_log_likelihoods(model: SpeechLLM, prompts: Sequence[Braid], features: Features | None,
                                 batch_size: int = 8) -> torch.Tensor:
    """``(N,)``: the summed log-probability of each prompt's loss-masked tokens given what precedes them."""
    out = torch.zeros(len(prompts))
    for rows, batch in _batches(model, prompts, features, batch_size):
        inputs = model.prepare_inputs(batch)
        logits = model.lm_forward(inputs.inputs_embeds, inputs.attention_mask, inputs.position_ids).logits
        targets = inputs.labels
        scored = targets != IGNORE_INDEX
        log_probs = logits.float().log_softmax(-1).gather(-1, targets.clamp(min=0)[..., None])[..., 0]
        out[rows] = (log_probs * scored).sum(dim=1).cpu()
    return out


@torch.no_grad()
def next_token_logits(model: SpeechLLM, prompts: Sequence[Braid], features: Features | None,
                      batch_size: int = 8) -> torch.Tensor:
    """Next-token logits ``(N, V)`` after each prompt, batched (right padding, logits at each row's last position)."""
    out: list[torch.Tensor | None] = [None] * len(prompts)
    for rows, batch in _batches(model, prompts, features, batch_size):
        inputs = model.prepare_inputs(batch)
        last = (batch.example_ids > 0).sum(dim=1) - 1
        logits = model.lm_forward(inputs.inputs_embeds, inputs.attention_mask, inputs.position_ids,
                                  keep=last[:, None]).logits
        for row, i in enumerate(rows):
            out[i] = logits[row, 0].float().cpu()
    return torch.stack(out) if out else torch.empty(0)


def accuracy_by_kind(questions: Sequence[Question], correct: Sequence[bool]) -> dict[str, float]:
    """Accuracy per question kind ("definition", "antonym", ...), kinds sorted by name."""
    kinds: dict[str, list[bool]] = {}
    for q, ok in zip(questions, correct, strict=True):
        kinds.setdefault(q.kind, []).append(ok)
    return {k: sum(v) / len(v) for k, v in sorted(kinds.items())}


def require_features(modality: Modality, features: Features | None) -> None:
    """Speech prompts cannot be embedded without a features function; fail before any work is done."""
    if modality == "speech" and features is None:
        raise ConfigError("speech questions need a features function (e.g. ModelConfig.feature_config.extract_file)")


def mc_accuracy(model: SpeechLLM, tokenizer: Any, questions: Sequence[MCQuestion], *, modality: Modality = "text",
                shots: Sequence[MCQuestion] = (), k_shot: int = 5, features: Features | None = None,
                batch_size: int = 8, scoring: MCScoring = "letter") -> dict[str, Any]:
    """Accuracy on ``questions`` asked in ``modality`` with the first ``k_shot`` shots, by next-letter choice or
    by cloze log-likelihood (``scoring``, module docstring).

    Returns ``accuracy``, ``n``, ``correct``, ``modality``, ``k_shot``, ``scoring``, per-kind accuracy ``by_kind``
    and the chosen ``predictions`` (the chosen options' letters, in question order).
    """
    if scoring not in ("letter", "cloze"):
        raise ConfigError(f"multiple-choice scoring must be 'letter' or 'cloze', got {scoring!r}")
    if not questions:
        raise ConfigError("no multiple-choice questions to evaluate")
    if k_shot > len(shots):
        raise ConfigError(f"{k_shot}-shot prompts need {k_shot} shot examples, got {len(shots)}")
    require_features(modality, features)
    shot_keys = {(s.question, s.options) for s in shots[:k_shot]}
    for q in questions:
        if (q.question, q.options) in shot_keys:
            raise InputError(f"question '{q.id}' is also a k-shot example; shots must come from a disjoint pool")
    tok = as_text_tokenizer(tokenizer)
    if scoring == "letter":
        _, letter_ids = letter_tokens(tok)
        prompts = [mc_prompt(q, shots[:k_shot], modality, tok) for q in questions]
        logits = next_token_logits(model, prompts, features, batch_size)
        chosen = logits[:, list(letter_ids)].argmax(dim=1).tolist()
    else:
        prompts = [p for q in questions for p in cloze_prompts(q, shots[:k_shot], modality, tok)]
        scores = continuation_log_likelihoods(model, prompts, features, batch_size)
        per_byte = torch.tensor([len((" " + o).encode()) for q in questions for o in q.options], dtype=torch.float)
        chosen = (scores / per_byte).view(len(questions), len(LETTERS)).argmax(dim=1).tolist()
    correct = [c == q.answer for c, q in zip(chosen, questions, strict=True)]
    return {
        "accuracy": sum(correct) / len(correct),
        "n": len(correct),
        "correct": sum(correct),
        "modality": modality,
        "k_shot": k_shot,
        "scoring": scoring,
        "by_kind": accuracy_by_kind(questions, correct),
        "predictions": [LETTERS[c] for c in chosen],
    }


def modality_gap(model: SpeechLLM, tokenizer: Any, questions: Sequence[MCQuestion], *,
                 shots: Sequence[MCQuestion] = (), k_shot: int = 5, features: Features | None = None,
                 batch_size: int = 8, scoring: MCScoring = "letter") -> dict[str, Any]:
    """``{"t2t", "s2t", "gap" = s2t - t2t, "n", "k_shot", "scoring", "predictions", "majority_share"}``: accuracies in
    [0, 1] on the same questions and shots; the chosen letters per modality, and per modality the share of
    the most chosen letter (1.0: the model answers one letter whatever is asked - accuracy then says
    nothing about the question, let alone its modality)."""
    common = {"shots": shots, "k_shot": k_shot, "features": features, "batch_size": batch_size, "scoring": scoring}
    t2t = mc_accuracy(model, tokenizer, questions, modality="text", **common)
    s2t = mc_accuracy(model, tokenizer, questions, modality="speech", **common)
    predictions = {"text": t2t["predictions"], "speech": s2t["predictions"]}
    majority = {m: max(p.count(letter) for letter in set(p)) / len(p) for m, p in predictions.items()}
    return {"t2t": t2t["accuracy"], "s2t": s2t["accuracy"], "gap": s2t["accuracy"] - t2t["accuracy"],
            "n": t2t["n"], "k_shot": k_shot, "scoring": scoring, "predictions": predictions, "majority_share": majority}

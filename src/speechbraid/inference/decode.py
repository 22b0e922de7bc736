"""Batched autoregressive decoding for :class:`~speechbraid.models.speech_llm.SpeechLLM`: greedy, sampling, beam search.

A prompt is a braid prefix (e.g. ASR: ``[speech][<|asr|>]``). The LM runs in a
:class:`~speechbraid.models.lm_state.LMState` (left-padded rows, with the KV cache or recomputing the whole
sequence); this module picks the tokens. Rows that finish leave the batch so they stop costing compute;
beam search reorders and repeats rows with the same ``select``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch
from transformers.generation.logits_process import (
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from speechbraid.braid.spans import Braid, SpecialSpan, SpeechSpan, TextSpan
from speechbraid.data.records import Utterance
from speechbraid.inference.settings import DecodeConfig
from speechbraid.layouts.tokenizer import TextTokenizer
from speechbraid.models.lm_state import LMState
from speechbraid.models.speech_llm import SpeechLLM

FinishReason = Literal["stop", "length"]


class PrefixScorer(Protocol):
    """Scores a prompt's partial outputs beside the LM (joint decoding), e.g. by a CTC bridge's posteriors."""

    def step_scores(self, tokens: Sequence[int], candidates: Sequence[int], stop_ids: Sequence[int]) -> list[float]:
        """The score change of each candidate next token after ``tokens`` (a stop id: of ending there)."""
        ...

    def proposals(self, tokens: Sequence[int]) -> Sequence[int]:
        """Next tokens to try after ``tokens`` besides the LM's likeliest (may be none)."""
        ...


@dataclass(frozen=True)
class Hypothesis:
    tokens: tuple[int, ...]  # generated ids without the prompt and without the stop token
    score: float  # length-normalised, see DecodeConfig
    log_prob: float  # summed log-probability of the generated tokens (stop token included)
    finish_reason: FinishReason


@dataclass(frozen=True)
class GenerationResult:
    tokens: tuple[int, ...]  # the best hypothesis, without prompt and stop token
    score: float
    log_prob: float
    steps: int  # decoder steps spent on this prompt (one forward per step, prompt pass included)
    finish_reason: FinishReason
    n_best: tuple[Hypothesis, ...] = field(default=())  # best first; only the best one unless beam search


def asr_prompt(record: Utterance, context: str | None = None, tokenizer: TextTokenizer | None = None) -> Braid:
    """The ASR decoding prefix ``[context text][speech][<|asr|>]`` - the ``asr`` training layout minus its transcript.

    ``context`` (e.g. a domain hint or the previous utterance's transcript) goes BEFORE the speech as a
    text span without loss; it needs ``tokenizer``. The model then continues with the transcript,
    which ends at the tokenizer's EOS (pass ``tokenizer.eos_id`` in ``DecodeConfig.stop_ids``).
    """
    if record.audio is None or record.duration is None:
        raise ValueError(f"utterance {record.id!r} has no audio/duration; an ASR prompt needs speech")
    spans: list[TextSpan | SpeechSpan | SpecialSpan] = []
    if context:
        if tokenizer is None:
            raise ValueError("a text context needs the tokenizer to encode it")
        spans.append(TextSpan(tuple(tokenizer.encode(context)), False, context))
    spans += [SpeechSpan(0.0, record.duration), SpecialSpan("<|asr|>")]
    return Braid(tuple(spans), id=record.id, audio=record.audio, duration=record.duration, layout="asr-prompt")


# ----------------------------------------------------------------------------------------------------------------
# Search.


def _normalised(log_prob: float, steps: int, length_penalty: float) -> float:
    return log_prob / (steps ** length_penalty)


def sampling_warpers(config: DecodeConfig) -> LogitsProcessorList:
    warpers = LogitsProcessorList()
    if config.temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(config.temperature))
    if config.top_k > 0:
        warpers.append(TopKLogitsWarper(config.top_k))
    if config.top_p < 1.0:
        warpers.append(TopPLogitsWarper(config.top_p))
    return warpers


def _allowed(logits: torch.Tensor, config: DecodeConfig, step: int) -> torch.Tensor:
    """The logits with the stop ids ruled out while fewer than ``min_new_tokens`` tokens have been chosen."""
    if step > config.min_new_tokens or not config.stop_ids:
        return logits
    logits = logits.clone()
    logits[:, list(config.stop_ids)] = -math.inf
    return logits


def _greedy_or_sample(stepper: LMState, n: int, config: DecodeConfig, device: torch.device) -> list[GenerationResult]:
    stop = torch.tensor(config.stop_ids, dtype=torch.long, device=device)
    warpers = sampling_warpers(config)
    generator = torch.Generator(device=device).manual_seed(config.seed) if config.do_sample else None
    tokens: list[list[int]] = [[] for _ in range(n)]
    log_probs = [0.0] * n
    results: list[GenerationResult | None] = [None] * n
    active = torch.arange(n, device=device)  # prompt index of every row still decoding
    logits, _ = stepper.first()
    for step in range(1, config.max_new_tokens + 1):
        logits = _allowed(logits, config, step)
        logp = torch.log_softmax(logits.float(), dim=-1)
        if generator is None:
            chosen = logp.argmax(dim=-1)
        else:
            probs = torch.softmax(warpers(None, logits.float()), dim=-1)
            chosen = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        chosen_logp = logp.gather(1, chosen[:, None]).squeeze(1)
        stopped = torch.isin(chosen, stop)
        for idx, tok, lp, is_stop in zip(active.tolist(), chosen.tolist(), chosen_logp.tolist(), stopped.tolist(),
                                         strict=True):
            log_probs[idx] += lp
            if not is_stop:
                tokens[idx].append(tok)
            if is_stop or step == config.max_new_tokens:
                reason: FinishReason = "stop" if is_stop else "length"
                hyp = Hypothesis(tuple(tokens[idx]), _normalised(log_probs[idx], step, config.length_penalty),
                                 log_probs[idx], reason)
                results[idx] = GenerationResult(hyp.tokens, hyp.score, hyp.log_prob, step, reason, (hyp,))
        keep = ~stopped
        if step == config.max_new_tokens or not bool(keep.any()):
            break
        if not bool(keep.all()):
            rows = keep.nonzero().squeeze(1)
            stepper.select(rows)
            active, chosen = active[rows], chosen[rows]
        logits, _ = stepper.step(chosen)
    return [r for r in results if r is not None]


@dataclass
class _BeamHyps:
    """Finished hypotheses of one prompt: the best ``size`` by normalised score."""

    size: int
    hyps: list[Hypothesis] = field(default_factory=list)

    def add(self, hyp: Hypothesis) -> None:
        self.hyps.append(hyp)
        self.hyps.sort(key=lambda h: h.score, reverse=True)
        del self.hyps[self.size:]

    def worst(self) -> float:
        return self.hyps[-1].score if len(self.hyps) >= self.size else -math.inf


def _fused(logp: torch.Tensor, beam_logp: torch.Tensor, beam_tokens: torch.Tensor, scorers: Sequence[PrefixScorer],
           active: Sequence[int], config: DecodeConfig) -> torch.Tensor:
    """Step scores ``(1 - w) * log p_llm + w * prefix scorer's change`` for each live row's ``pre_beam`` likeliest
    tokens, the scorer's proposals and the stop ids; every other token is ruled out (-inf)."""
    k, w = config.beam_size, config.ctc_weight
    fused = torch.full_like(logp, -math.inf)
    width = min(config.pre_beam, logp.shape[-1])
    top = logp.topk(width, dim=-1).indices.tolist()
    alive = torch.isfinite(beam_logp).view(-1).tolist()
    for row, live in enumerate(alive):
        if not live:
            continue
        scorer, tokens = scorers[active[row // k]], beam_tokens[row].tolist()
        candidates = list(dict.fromkeys([*top[row], *scorer.proposals(tokens), *config.stop_ids]))
        changes = scorer.step_scores(tokens, candidates, config.stop_ids)
        index = torch.tensor(candidates, device=logp.device)
        change = torch.tensor(changes, dtype=logp.dtype, device=logp.device)
        # w = 0 keeps the LM's scores (and no 0 * -inf) but still rules out what the scorer finds impossible
        fused[row, index] = torch.where(change > -math.inf, (1 - w) * logp[row, index] + w * change, -math.inf)
    return fused


def _beam_search(stepper: LMState, n: int, config: DecodeConfig, device: torch.device,
                 scorers: Sequence[PrefixScorer] | None = None) -> list[GenerationResult]:
    """Beam search over ``n`` prompts x ``k`` beams, rows ``prompt * k + beam`` among the active prompts.

    At each step the top continuations per prompt are ranked: one ending in a stop id becomes a
    finished hypothesis (only if it ranks within the top ``k``, as in HF), the others fill the ``k``
    live beams. A prompt is done once it holds ``k`` finished hypotheses and its best live beam, scored at
    the current length, cannot beat the worst of them (HF's default ``early_stopping=False`` heuristic);
    at ``max_new_tokens`` the live beams are finished with reason "length". With ``scorers`` (one per prompt)
    each step's scores are fused with theirs (:func:`_fused`) and the hypotheses' log-probabilities are the fused
    scores.
    """
    k, lp = config.beam_size, config.length_penalty
    stop = set(config.stop_ids)
    finished = [_BeamHyps(k) for _ in range(n)]
    steps_of = [0] * n
    logits, _ = stepper.first()
    stepper.select(torch.arange(n, device=device).repeat_interleave(k))
    logits = logits.repeat_interleave(k, dim=0)
    # only beam 0 is live at first, so the k initial beams are k different tokens
    beam_logp = torch.full((n, k), -math.inf, device=device)
    beam_logp[:, 0] = 0.0
    beam_tokens = torch.zeros((n * k, 0), dtype=torch.long, device=device)
    active = list(range(n))
    for step in range(1, config.max_new_tokens + 1):
        vocab = logits.shape[-1]
        logits = _allowed(logits, config, step)
        logp = torch.log_softmax(logits.float(), dim=-1)
        if scorers is not None:
            logp = _fused(logp, beam_logp, beam_tokens, scorers, active, config)
        cand = beam_logp[:, :, None] + logp.view(len(active), k, vocab)
        # enough candidates that k of them are not stop tokens even if every beam's stop ids rank first
        width = min(k * (1 + len(stop)), k * vocab)
        top_logp, top_idx = cand.view(len(active), k * vocab).topk(width, dim=1)
        src_beam, top_tok = top_idx // vocab, top_idx % vocab
        next_rows: list[int] = []
        next_tok: list[int] = []
        next_logp: list[float] = []
        still: list[int] = []
        for a, prompt in enumerate(active):
            steps_of[prompt] = step
            chosen = 0
            for rank, (score, beam, tok) in enumerate(zip(top_logp[a].tolist(), src_beam[a].tolist(),
                                                          top_tok[a].tolist(), strict=True)):
                row = a * k + beam
                if tok in stop:
                    if rank < k:
                        finished[prompt].add(Hypothesis(tuple(beam_tokens[row].tolist()),
                                                        _normalised(score, step, lp), score, "stop"))
                    continue
                next_rows.append(row)
                next_tok.append(tok)
                next_logp.append(score)
                chosen += 1
                if chosen == k:
                    break
            if step == config.max_new_tokens:
                for row, tok, score in zip(next_rows[-k:], next_tok[-k:], next_logp[-k:], strict=True):
                    finished[prompt].add(Hypothesis((*beam_tokens[row].tolist(), tok),
                                                    _normalised(score, step, lp), score, "length"))
            elif finished[prompt].worst() < _normalised(max(next_logp[-k:]), step, lp):
                still.append(a)  # a live beam may still enter the n-best
        if not still:
            break
        # keep the beams of prompts still searching, reordered to their source rows
        keep = [i for a in still for i in range(a * k, a * k + k)]
        rows = torch.tensor([next_rows[i] for i in keep], dtype=torch.long, device=device)
        toks = torch.tensor([next_tok[i] for i in keep], dtype=torch.long, device=device)
        beam_logp = torch.tensor([next_logp[i] for i in keep], device=device).view(len(still), k)
        beam_tokens = torch.cat([beam_tokens[rows], toks[:, None]], dim=1)
        active = [active[a] for a in still]
        stepper.select(rows)
        logits, _ = stepper.step(toks)
    results = []
    for prompt in range(n):
        best = finished[prompt].hyps[0]
        results.append(GenerationResult(best.tokens, best.score, best.log_prob, steps_of[prompt], best.finish_reason,
                                        tuple(finished[prompt].hyps)))
    return results


@torch.no_grad()
def generate(model: SpeechLLM, prompts: Sequence[Braid], features: Callable[[str], torch.Tensor] | None,
             config: DecodeConfig, use_cache: bool = True,
             scorers: Sequence[PrefixScorer] | None = None) -> list[GenerationResult]:
    """Continue every prompt braid; one result per prompt, in order.

    ``features(path)`` gives ``(T, n_mels)`` for a prompt's audio (None if no prompt has speech).
    ``use_cache=False`` recomputes the full sequence each step: same results, for tests and benchmarks.
    ``scorers`` (one per prompt, e.g. :class:`~speechbraid.inference.ctc_prefix.CTCPrefixScorer`) score every
    step beside the LM with weight ``config.ctc_weight``; decoding is then a beam search (greedy at beam size 1).
    """
    if not prompts:
        return []
    if scorers is not None and (len(scorers) != len(prompts) or config.do_sample):
        raise ValueError("prefix scorers need one scorer per prompt and beam search (not sampling)")
    device = next(model.parameters()).device
    stepper = LMState.from_prompts(model, prompts, features, use_cache)
    if config.beam_size > 1 or scorers is not None:
        return _beam_search(stepper, len(prompts), config, device, scorers)
    return _greedy_or_sample(stepper, len(prompts), config, device)


def measure_decode_speed(model: SpeechLLM, prompts: Sequence[Braid], features: Callable[[str], torch.Tensor] | None,
                         config: DecodeConfig, repeats: int = 1) -> dict[str, float | int | bool]:
    """Wall time of :func:`generate` with and without the KV cache (best of ``repeats``), and the speed-up.

    ``same_tokens`` reports whether both paths produced identical outputs (they should, up to float ties).
    """
    device = next(model.parameters()).device

    def timed(use_cache: bool) -> tuple[float, list[GenerationResult]]:
        best, results = math.inf, []
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            results = generate(model, prompts, features, config, use_cache=use_cache)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            best = min(best, time.perf_counter() - start)
        return best, results

    generate(model, prompts[:1], features, config)  # warm-up: lazy inits and kernel selection
    cached_s, cached = timed(True)
    uncached_s, uncached = timed(False)
    new_tokens = sum(r.steps for r in cached)
    return {
        "cached_s": cached_s,
        "uncached_s": uncached_s,
        "speedup": uncached_s / cached_s,
        "new_tokens": new_tokens,
        "cached_tokens_per_s": new_tokens / cached_s,
        "uncached_tokens_per_s": new_tokens / uncached_s,
        "same_tokens": [r.tokens for r in cached] == [r.tokens for r in uncached],
    }

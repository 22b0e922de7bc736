"""Joint text-speech decoding figures per generation pattern (METHODS.md section 2), from one run on one
model and one prompt set:

- per pattern: decoding steps, sequence length, wall seconds, speech units per second and time to the first
  unit chunk (``measure_pattern_decoding``: KV cache, after a warm-up);
- teacher-forced response lengths of the REFERENCE answers under each pattern and their ratios (ESI /
  interleaved, parallel / interleaved): the patterns' own cost, independent of the model;
- KV cache against full recomputation (speed-up, same tokens) per pattern, on a fixed step budget;
- batched decoding throughput (response positions per second) against batch size.

Prompts are the spoken QA questions as text (``evaluation.generation.generation_prompt``); reference
answers come from a spoken QA file with units (``--qa``) or, without one, from candidate QA pairs whose
answer sentences espeak-ng speaks to count their units (``ceil(seconds * 25)``, the unit tokenizer's rule;
the ids do not matter for lengths). With no trained model an untrained stand-in with a speech head is
built: it rarely stops by itself, so its per-pattern lengths reflect ``max_steps``, not the patterns - read
the teacher-forced ratios for those.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from speechbraid.benchmarks.common import DEFAULT_CORPUS, bench_setup, format_table, synchronize
from speechbraid.errors import ConfigError

STAND_IN_UNITS = 500
UNIT_RATE = 25.0


def _references(qa: Path | None, n: int) -> tuple[list[Any], str]:
    """(spoken QA pairs with units, where they come from)."""
    from dataclasses import replace

    from speechbraid.corpora.spoken_qa import make_qa_candidates
    from speechbraid.data.questions import load_spoken_qa
    from speechbraid.synth import get_engine

    if qa is not None:
        pairs = [p for p in load_spoken_qa(qa) if p.units][:n]
        if not pairs:
            raise ConfigError(f"{qa} holds no spoken QA pair with units")
        return pairs, f"spoken QA file {qa}"
    engine = get_engine("espeak")
    voice = engine.voice()
    pairs = [replace(p, units=(0,) * math.ceil(engine.synthesize(p.answer_text, voice).duration * UNIT_RATE))
             for p in make_qa_candidates(n)]
    return pairs, "candidate QA pairs, answer units counted from espeak-ng audio (25 Hz)"


def bench_decode(model_dir: str | Path | None = None, patterns: Sequence[str] = ("interleaved", "esi", "parallel"),
                 *, qa: str | Path | None = None, prompts: int = 8, max_steps: int = 160, kv_steps: int = 48,
                 batch_sizes: Sequence[int] = (1, 2, 4, 8), corpus_dir: str | Path = DEFAULT_CORPUS,
                 device: str | None = None, seed: int = 0) -> dict[str, Any]:
    """All figures (module docstring) as one JSON-able dict."""
    from speechbraid.device import pick_device
    from speechbraid.evaluation.generation import generation_prompt
    from speechbraid.inference.patterns import (
        PatternDecodeConfig,
        generate_response,
        measure_pattern_decoding,
        teacher_forced_lengths,
    )
    from speechbraid.layouts.tokenizer import HFTextTokenizer
    from speechbraid.models.build import load_speech_llm
    from speechbraid.patterns import get_pattern
    from speechbraid.training.runtime import seed_everything

    if prompts < 1 or max_steps < 1 or kv_steps < 1 or not batch_sizes or min(batch_sizes) < 1:
        raise ConfigError("prompts, max_steps, kv_steps and batch sizes must be >= 1")
    try:
        chosen = [get_pattern(name) for name in patterns]
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    dev = pick_device(device)
    seed_everything(seed)
    with tempfile.TemporaryDirectory(prefix="speechbraid-bench-") as tmp:
        if model_dir is not None:
            model, hf_tokenizer, _ = load_speech_llm(model_dir, dev)
            model_note = f"trained model {model_dir}"
        else:
            setup = bench_setup(corpus_dir, tmp, llm=None, conformer=None, device=dev, seed=seed,
                                num_units=STAND_IN_UNITS, speech_head=True)
            model, hf_tokenizer, llm_note = setup.model.eval(), setup.tokenizer, setup.llm_note
            model_note = (f"UNTRAINED stand-in ({llm_note} + {STAND_IN_UNITS} units + speech head): decoded lengths "
                          "follow max_steps, not the patterns; compare the teacher-forced lengths")
    tokenizer = HFTextTokenizer(hf_tokenizer)
    pairs, reference_note = _references(Path(qa) if qa else None, max(prompts, max(batch_sizes)))
    braids = [generation_prompt(p.as_question(), "text", tokenizer) for p in pairs]
    skipped = [p.name for p in chosen if getattr(p, "speech_delay", None) is not None and model.speech_head is None]
    usable = [p for p in chosen if p.name not in skipped]
    config = PatternDecodeConfig(max_steps=max_steps)
    per_pattern = measure_pattern_decoding(model, braids[:prompts], usable, None, config)

    responses = [(tokenizer.encode(" " + p.answer_text), list(p.units or ())) for p in pairs]
    lengths = {p.name: sum(teacher_forced_lengths(p, responses)) / len(responses) for p in chosen}
    ratios = {f"{p.name}/interleaved": lengths[p.name] / lengths["interleaved"]
              for p in chosen if "interleaved" in lengths and p.name != "interleaved"}

    kv = []
    fixed = PatternDecodeConfig(max_steps=kv_steps)
    for pattern in usable:
        timings = {}
        outputs = {}
        for cache in (True, False):
            synchronize(dev)
            start = time.perf_counter()
            outputs[cache] = generate_response(model, braids[:prompts], pattern, None, fixed, use_cache=cache)
            synchronize(dev)
            timings[cache] = time.perf_counter() - start
        kv.append({"pattern": pattern.name, "batch": prompts, "max_steps": kv_steps,
                   "cached_s": timings[True], "uncached_s": timings[False], "speedup": timings[False] / timings[True],
                   "same_tokens": [r.tokens for r in outputs[True]] == [r.tokens for r in outputs[False]]})

    throughput = []
    for pattern in usable:
        for size in batch_sizes:
            synchronize(dev)
            start = time.perf_counter()
            out = generate_response(model, braids[:size], pattern, None, fixed)
            synchronize(dev)
            wall = time.perf_counter() - start
            positions = sum(r.steps for r in out)
            throughput.append({"pattern": pattern.name, "batch": size, "positions": positions, "wall_s": wall,
                               "positions_per_s": positions / wall,
                               "units_per_s": sum(len(r.units) for r in out) / wall})
    return {"device": str(dev), "model": model_note, "references": reference_note, "prompts": prompts,
            "max_steps": max_steps, "skipped_patterns": skipped, "patterns": per_pattern,
            "teacher_forced": {"steps_mean": lengths, "ratios": ratios}, "kv_cache": kv, "batched": throughput}


def format_decode(result: dict[str, Any]) -> str:
    tf = result["teacher_forced"]
    lines = [f"Device {result['device']}; model: {result['model']}", f"References: {result['references']}"]
    if result["skipped_patterns"]:
        lines.append(f"Skipped (the model has no speech head): {', '.join(result['skipped_patterns'])}")
    return "\n\n".join([
        "\n".join(lines),
        f"Decoding {result['prompts']} prompts per pattern (KV cache, greedy, max_steps {result['max_steps']})\n"
        + format_table(result["patterns"], ["pattern", "responses", "steps_mean", "sequence_length_mean", "wall_s",
                                            "units_per_s", "first_chunk_s_mean", "hit_max_steps"]),
        "Teacher-forced response length of the reference answers (positions)\n"
        + format_table([{"pattern": k, "steps_mean": v} for k, v in tf["steps_mean"].items()],
                       ["pattern", "steps_mean"])
        + "\n" + "; ".join(f"{k} = {v:.3f}" for k, v in tf["ratios"].items()),
        "KV cache vs full recompute (fixed step budget; speedup = uncached / cached)\n"
        + format_table(result["kv_cache"], ["pattern", "batch", "max_steps", "cached_s", "uncached_s", "speedup",
                                            "same_tokens"]),
        "Batched decoding throughput\n"
        + format_table(result["batched"], ["pattern", "batch", "positions", "wall_s", "positions_per_s",
                                           "units_per_s"]),
    ])

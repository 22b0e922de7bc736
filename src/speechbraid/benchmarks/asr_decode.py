"""Decoding figures: greedy decoding with the KV cache against full recomputation (speed-up, same tokens),
and the real-time factor of transcribing test utterances with the speech LLM on CPU.

The model is untrained (speed does not depend on the weights), so it never chooses to stop: the
KV-cache comparison generates a fixed number of tokens, and the real-time factor lets each utterance
generate as many tokens as its reference transcript has, plus the stop step - the work a trained model
that transcribes correctly would do.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from speechbraid.benchmarks.common import DEFAULT_CORPUS, bench_setup, format_table, timed
from speechbraid.data.features import FeatureConfig
from speechbraid.data.manifest import read_manifest
from speechbraid.data.records import Utterance
from speechbraid.device import autocast, autocast_dtype, pick_device
from speechbraid.inference.decode import asr_prompt, generate, measure_decode_speed
from speechbraid.inference.settings import DecodeConfig
from speechbraid.layouts.tokenizer import HFTextTokenizer, TextTokenizer
from speechbraid.models.encoders import ConformerConfig
from speechbraid.models.speech_llm import SpeechLLM
from speechbraid.training.trainer import FeatureCache


def kv_cache_speedup(model: SpeechLLM, records: Sequence[Utterance], features: FeatureCache, max_new_tokens: int,
                     device: torch.device, repeats: int = 3) -> dict[str, Any]:
    """:func:`measure_decode_speed` (best of ``repeats``, which filters load spikes on a shared machine) on
    the ASR prompts of ``records`` as one batch; features are cached first, so both paths time decoding only."""
    prompts = [asr_prompt(r) for r in records]
    for prompt in prompts:
        features(prompt.audio)
    with autocast(device, autocast_dtype(device)):
        speed = measure_decode_speed(model, prompts, features, DecodeConfig(max_new_tokens=max_new_tokens),
                                     repeats=repeats)
    return {"batch": len(prompts), "max_new_tokens": max_new_tokens, **speed}


def transcription_rtf(model: SpeechLLM, records: Sequence[Utterance], tokenizer: TextTokenizer,
                      feature_config: FeatureConfig, device: torch.device) -> dict[str, Any]:
    """Real-time factor (compute seconds per audio second; < 1 is faster than real time) of transcribing
    ``records`` one at a time: feature extraction from the file, encoder, prompt pass and KV-cached greedy
    decoding of the reference's token count plus the stop step."""
    model.to(device)
    amp = autocast_dtype(device)

    def transcribe(record: Utterance) -> None:
        config = DecodeConfig(max_new_tokens=len(tokenizer.encode(record.text)) + 1)
        with autocast(device, amp):
            generate(model, [asr_prompt(record)], feature_config.extract_file, config)

    transcribe(records[0])  # warm-up: lazy inits and kernel selection
    times = [timed(lambda r=r: transcribe(r), device) for r in records]
    audio_s = sum(r.duration or 0.0 for r in records)
    compute_s = sum(t.wall for t in times)
    return {"device": str(device), "utterances": len(records), "audio_s": audio_s, "compute_s": compute_s,
            "rtf": compute_s / audio_s, "rtf_cpu_time": sum(t.cpu for t in times) / audio_s}


def bench_asr_decode(corpus_dir: str | Path = DEFAULT_CORPUS, *, utterances: int = 8, max_new_tokens: int = 32,
                     llm: str | Path | None = None, conformer: ConformerConfig | None = None,
                     device: str | None = None, repeats: int = 3, seed: int = 0) -> dict[str, Any]:
    """All decoding figures on the first ``utterances`` of the test split. The real-time factor is measured
    on CPU, and also on the accelerator when there is one."""
    if utterances < 1 or max_new_tokens < 1:
        raise ValueError("need utterances >= 1 and max_new_tokens >= 1")
    dev = pick_device(device)
    with tempfile.TemporaryDirectory(prefix="speechbraid-bench-") as tmp:
        setup = bench_setup(corpus_dir, tmp, llm=llm, conformer=conformer, device=dev, seed=seed)
        corpus, config, model, tokenizer, llm_note = (setup.corpus, setup.config, setup.model.eval(), setup.tokenizer,
                                                      setup.llm_note)
        records = [r for r in read_manifest(corpus.test) if r.audio and r.duration][:utterances]
        if not records:
            raise ValueError(f"{corpus.test} holds no utterance with audio")
        features = FeatureCache(config.feature_config)
        model.to(dev)
        kv = [kv_cache_speedup(model, records[:n], features, max_new_tokens, dev, repeats)
              for n in sorted({1, len(records)})]
        devices = [torch.device("cpu")] + ([dev] if dev.type != "cpu" else [])
        text_tokenizer = HFTextTokenizer(tokenizer)
        rtf = [transcription_rtf(model, records, text_tokenizer, config.feature_config, d) for d in devices]
    return {"device": str(dev), "corpus": corpus.source, "llm": llm_note, "kv_cache": kv, "rtf": rtf}


def format_asr_decode(result: dict[str, Any]) -> str:
    return "\n\n".join([
        f"Device {result['device']}; corpus: {result['corpus']}\nLLM: {result['llm']}; default Conformer",
        "Greedy decoding, KV cache vs full recompute (fixed length, best of repeats; speedup = uncached / cached)\n"
        + format_table(result["kv_cache"], ["batch", "max_new_tokens", "cached_tokens_per_s", "uncached_tokens_per_s",
                                            "speedup", "same_tokens"]),
        "Transcription real-time factor (one utterance at a time, features from the file included; "
        "rtf = compute s / audio s)\n"
        + format_table(result["rtf"], ["device", "utterances", "audio_s", "compute_s", "rtf", "rtf_cpu_time"]),
    ])

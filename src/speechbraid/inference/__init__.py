"""Decoding: KV-cached batched greedy/sampling/beam search over braid prompts."""

from speechbraid.inference.decode import (
    DecodeConfig,
    GenerationResult,
    Hypothesis,
    asr_prompt,
    generate,
    measure_decode_speed,
)

__all__ = ["DecodeConfig", "GenerationResult", "Hypothesis", "asr_prompt", "generate", "measure_decode_speed"]

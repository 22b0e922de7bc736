"""Decoding: KV-cached batched greedy/sampling/beam search over braid prompts, and the generation patterns."""

from speechbraid.inference.decode import (
    GenerationResult,
    Hypothesis,
    asr_prompt,
    generate,
    measure_decode_speed,
)
from speechbraid.inference.patterns import (
    Response,
    TextChunk,
    UnitChunk,
    VocoderStream,
    generate_response,
    measure_pattern_decoding,
    teacher_forced_lengths,
)
from speechbraid.inference.settings import DecodeConfig, PatternDecodeConfig

__all__ = [
    "DecodeConfig",
    "GenerationResult",
    "Hypothesis",
    "PatternDecodeConfig",
    "Response",
    "TextChunk",
    "UnitChunk",
    "VocoderStream",
    "asr_prompt",
    "generate",
    "generate_response",
    "measure_decode_speed",
    "measure_pattern_decoding",
    "teacher_forced_lengths",
]

"""Decoding: KV-cached batched greedy/sampling/beam search over braid prompts, and the generation patterns.

The names below load on first use (PEP 562), so importing a torch-free submodule such as
:mod:`speechbraid.inference.settings` (what the CLI's option parsing needs) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "DecodeConfig": "settings",
    "PatternDecodeConfig": "settings",
    "GenerationResult": "decode",
    "Hypothesis": "decode",
    "asr_prompt": "decode",
    "generate": "decode",
    "measure_decode_speed": "decode",
    "Response": "patterns",
    "TextChunk": "patterns",
    "UnitChunk": "patterns",
    "VocoderStream": "patterns",
    "generate_response": "patterns",
    "measure_pattern_decoding": "patterns",
    "teacher_forced_lengths": "patterns",
}

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)


__all__ = [  # the keys of _EXPORTS (a literal, so linters and type checkers read it)
    "DecodeConfig", "GenerationResult", "Hypothesis", "PatternDecodeConfig", "Response", "TextChunk", "UnitChunk",
    "VocoderStream", "asr_prompt", "generate", "generate_response", "measure_decode_speed", "measure_pattern_decoding",
    "teacher_forced_lengths",
]

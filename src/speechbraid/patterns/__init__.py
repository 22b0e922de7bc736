"""Joint text-speech generation patterns: interleaved, ESI (early-stop interleaved) and parallel."""

from speechbraid.patterns.build import build_generation_braid, interleave_response, parallel_response, response_steps
from speechbraid.patterns.spec import (
    PATTERNS,
    InterleavedPattern,
    InterleaveSchedule,
    ParallelPattern,
    Pattern,
    get_pattern,
)

__all__ = [
    "PATTERNS",
    "InterleaveSchedule",
    "InterleavedPattern",
    "ParallelPattern",
    "Pattern",
    "build_generation_braid",
    "get_pattern",
    "interleave_response",
    "parallel_response",
    "response_steps",
]

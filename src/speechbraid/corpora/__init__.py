"""Embedded default corpora built offline: general English, medical and banking, with held-out entities."""

from speechbraid.corpora.build import (
    DEFAULT_PIPER_SHARE,
    SIZES,
    CorpusSummary,
    SplitStats,
    build_default_corpus,
    piper_ids,
    summarize_corpus,
)
from speechbraid.corpora.splits import HELD_OUT_TYPES, Leak, check_held_out, find_leaks

__all__ = [
    "DEFAULT_PIPER_SHARE",
    "HELD_OUT_TYPES",
    "SIZES",
    "CorpusSummary",
    "Leak",
    "SplitStats",
    "build_default_corpus",
    "check_held_out",
    "find_leaks",
    "piper_ids",
    "summarize_corpus",
]

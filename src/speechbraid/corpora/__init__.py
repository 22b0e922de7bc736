"""Embedded default corpora built offline: general English, medical and banking, with held-out entities."""

from speechbraid.corpora.build import SIZES, CorpusSummary, SplitStats, build_default_corpus, summarize_corpus
from speechbraid.corpora.splits import HELD_OUT_TYPES, Leak, check_held_out, find_leaks

__all__ = [
    "HELD_OUT_TYPES",
    "SIZES",
    "CorpusSummary",
    "Leak",
    "SplitStats",
    "build_default_corpus",
    "check_held_out",
    "find_leaks",
    "summarize_corpus",
]

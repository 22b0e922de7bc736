"""Layouts: pure functions that turn a record into a braid, declared by name."""

from speechbraid.layouts.asr import build_asr, build_text
from speechbraid.layouts.tokenizer import HFTextTokenizer, TextTokenizer

__all__ = ["HFTextTokenizer", "TextTokenizer", "build_asr", "build_text"]

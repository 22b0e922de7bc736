"""The braided sequence (spans), the vocabulary layout and the time <-> frame rule."""

from speechbraid.braid.frames import frame_range, num_frames_for
from speechbraid.braid.spans import Braid, ParallelSpan, SpecialSpan, SpeechSpan, TextSpan, UnitSpan
from speechbraid.braid.vocab import SPECIAL_TOKENS, VocabLayout

__all__ = [
    "SPECIAL_TOKENS",
    "Braid",
    "ParallelSpan",
    "SpecialSpan",
    "SpeechSpan",
    "TextSpan",
    "UnitSpan",
    "VocabLayout",
    "frame_range",
    "num_frames_for",
]

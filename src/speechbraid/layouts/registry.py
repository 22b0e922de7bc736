"""Every layout by name: the single entry point data builders, the trainer and ``speechbraid layout`` use.

``choice`` is a deterministic integer (the sampler derives it from the utterance and the epoch) that
picks among a layout's alternatives: the alternation variant when ``variant="both"``, and word- vs
segment-level for ``mixed-il``. Same record + same choice -> same braid.
"""

from __future__ import annotations

from speechbraid.braid.spans import Braid
from speechbraid.data.records import Utterance
from speechbraid.layouts.asr import build_asr, build_text
from speechbraid.layouts.interleave import INTERLEAVE_LAYOUTS, VARIANTS, build_interleaved
from speechbraid.layouts.tokenizer import TextTokenizer

LAYOUT_NAMES: tuple[str, ...] = ("asr", "text", "word-il", "segment-il", "mixed-il")
VARIANT_CHOICES: tuple[str, ...] = (*VARIANTS, "both")


def needs_audio(layout: str) -> bool:
    return layout != "text"


def needs_alignment(layout: str) -> bool:
    return layout.endswith("-il")


def build_braid(
    record: Utterance,
    layout: str,
    tokenizer: TextTokenizer,
    *,
    variant: str = "both",
    segment_by: str = "silence",
    choice: int = 0,
) -> Braid:
    if layout == "asr":
        return build_asr(record, tokenizer)
    if layout == "text":
        return build_text(record, tokenizer)
    if layout not in LAYOUT_NAMES:
        raise ValueError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUT_NAMES)}")
    if variant not in VARIANT_CHOICES:
        raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANT_CHOICES)}")
    chosen_variant = VARIANTS[choice % 2] if variant == "both" else variant
    if layout == "mixed-il":
        layout = ("word-il", "segment-il")[(choice // 2) % 2]
    assert layout in INTERLEAVE_LAYOUTS
    return build_interleaved(record, tokenizer, layout, chosen_variant, segment_by=segment_by)  # type: ignore[arg-type]

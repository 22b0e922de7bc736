"""Every layout by name: the single entry point data builders, the trainer and ``speechbraid layout`` use.

``choice`` is a deterministic integer (the sampler derives it from the utterance and the epoch) that
picks among a layout's alternatives: the alternation variant when ``variant="both"``, and word- vs
segment-level for ``mixed-il``. Same record + same choice -> same braid.

Generation layouts (``gen-<pattern>``) take spoken QA pairs (``corpora.spoken_qa``) instead of utterances;
their variant is the prompt's modality: ``text``, ``speech`` or ``both`` (alternating by ``choice``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from speechbraid.braid.spans import Braid
from speechbraid.data.records import Utterance
from speechbraid.layouts.asr import build_asr, build_text
from speechbraid.layouts.generation import qa_generation_braid
from speechbraid.layouts.interleave import INTERLEAVE_LAYOUTS, VARIANTS, build_interleaved
from speechbraid.layouts.tokenizer import TextTokenizer
from speechbraid.patterns import PATTERNS

if TYPE_CHECKING:
    from speechbraid.data.questions import SpokenQA

GENERATION_LAYOUTS: dict[str, str] = {f"gen-{name}": name for name in PATTERNS}  # layout -> decoding pattern
# records: Utterance; random-il is an extra (SpiritLM-style random boundaries), not the paper's JSTIP
UTTERANCE_LAYOUTS: tuple[str, ...] = ("asr", "text", "word-il", "segment-il", "mixed-il", "random-il")
LAYOUT_NAMES: tuple[str, ...] = (*UTTERANCE_LAYOUTS, *GENERATION_LAYOUTS)
VARIANT_CHOICES: tuple[str, ...] = (*VARIANTS, "both")
PROMPT_MODALITIES: tuple[str, ...] = ("text", "speech")


def variant_choices(layout: str) -> tuple[str, ...]:
    """The variants ``layout`` accepts (``both`` alternates between the first two)."""
    return (*PROMPT_MODALITIES, "both") if is_generation(layout) else VARIANT_CHOICES


def is_generation(layout: str) -> bool:
    """Whether ``layout`` reads spoken QA pairs (prompt + patterned response) rather than utterances."""
    return layout in GENERATION_LAYOUTS


def needs_audio(layout: str) -> bool:
    """Whether every utterance needs its audio (generation layouts check their question audio per variant)."""
    return layout != "text" and not is_generation(layout)


def needs_alignment(layout: str) -> bool:
    return layout.endswith("-il")


def build_braid(
    record: Utterance | SpokenQA,
    layout: str,
    tokenizer: TextTokenizer,
    *,
    variant: str = "both",
    segment_by: str = "silence",
    choice: int = 0,
) -> Braid:
    if layout not in LAYOUT_NAMES:
        raise ValueError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUT_NAMES)}")
    if variant not in variant_choices(layout):
        raise ValueError(f"unknown variant {variant!r} for layout {layout!r}; choose one of "
                         f"{', '.join(variant_choices(layout))}")
    if is_generation(layout):
        modality = PROMPT_MODALITIES[choice % 2] if variant == "both" else variant
        return qa_generation_braid(record, GENERATION_LAYOUTS[layout], modality, tokenizer)  # type: ignore[arg-type]
    assert isinstance(record, Utterance)
    if layout == "asr":
        return build_asr(record, tokenizer)
    if layout == "text":
        return build_text(record, tokenizer)
    chosen_variant = VARIANTS[choice % 2] if variant == "both" else variant
    if layout == "mixed-il":
        layout = ("word-il", "segment-il")[(choice // 2) % 2]
    assert layout in INTERLEAVE_LAYOUTS
    return build_interleaved(record, tokenizer, layout, chosen_variant,  # type: ignore[arg-type]
                             segment_by=segment_by, seed=choice)

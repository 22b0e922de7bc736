"""Every layout by name, each declared as data with what it needs and makes (as ESPnet's
``speechlm/definitions.py`` declares its tasks): the one entry point data builders, the trainer, the benchmarks
and ``speechbraid layout`` use. Callers ask an entry's properties, never compare layout names.

``choice`` is a deterministic integer (the sampler derives it from the utterance and the epoch) that
picks among a layout's alternatives: ``choice % 2`` the alternation variant when ``variant="both"``,
``choice // 2`` the form (word- vs segment-level for ``mixed-il``) and random-il's boundaries.
Same record + same choice -> same braid.

Generation layouts (``gen-<pattern>``) take spoken QA pairs (``corpora.spoken_qa``) instead of utterances;
their variant is the prompt's modality: ``text``, ``speech`` or ``both`` (alternating by ``choice``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from speechbraid.braid.spans import Braid, Modality
from speechbraid.data.records import Utterance
from speechbraid.layouts.asr import build_asr, build_text
from speechbraid.layouts.generation import qa_generation_braid
from speechbraid.layouts.interleave import INTERLEAVE_LAYOUTS, VARIANTS, InterleaveLayout, build_interleaved
from speechbraid.layouts.tokenizer import TextTokenizer
from speechbraid.patterns import PATTERNS, ParallelPattern

if TYPE_CHECKING:
    from speechbraid.data.questions import SpokenQA

VARIANT_CHOICES: tuple[str, ...] = (*VARIANTS, "both")
PROMPT_MODALITIES: tuple[str, ...] = ("text", "speech")

# (layout, record, tokenizer, variant, segment_by, choice) -> braid; the variant is already checked
Builder = Callable[["Layout", Any, TextTokenizer, str, str, int], Braid]


@dataclass(frozen=True)
class Layout:
    name: str
    builder: Builder
    emits: frozenset[Modality]  # the span modalities its braids hold, over all variants and forms
    reads: Literal["utterance", "spoken-qa"] = "utterance"
    needs_audio: bool = True  # every record (generation layouts check the question audio per prompt modality)
    needs_alignment: bool = False  # every record needs word times
    interleaves: bool = False  # speech and text alternate inside one utterance
    transcribes: bool = False  # the whole utterance's speech, then its whole transcript: what a CTC stage learns
    takes_segment_by: bool = False  # the segmentation mode (silence, silence+punct) changes its braids
    # accepted variants, "both" alternating the first two by choice; layouts that do not alternate accept the
    # interleaved ones and ignore them, so one variant setting serves a whole mix
    variants: tuple[str, ...] = VARIANT_CHOICES
    forms: tuple[InterleaveLayout, ...] = ()  # interleaved layouts: the forms choice // 2 cycles through
    pattern: str = ""  # generation layouts: the decoding pattern that lays the response out (patterns.PATTERNS)

    def check_variant(self, variant: str) -> None:
        if variant not in self.variants:
            raise ValueError(f"unknown variant {variant!r} for layout {self.name!r}; choose one of "
                             f"{', '.join(self.variants)}")

    def form_choices(self) -> tuple[int, ...]:
        """One ``choice`` per form (same variant): the choices that show every form the layout builds."""
        return tuple(range(0, 2 * max(len(self.forms), 1), 2))

    def lacks(self, record: Utterance) -> str | None:
        """What ``record`` lacks that this layout needs (None when it can be built)."""
        if self.needs_audio and (record.audio is None or record.duration is None):
            return "no audio/duration"
        if self.needs_alignment and not record.has_alignment:
            return "no word alignment"
        return None

    def build(self, record: Utterance | SpokenQA, tokenizer: TextTokenizer, *, variant: str = "both",
              segment_by: str = "silence", choice: int = 0) -> Braid:
        self.check_variant(variant)
        return self.builder(self, record, tokenizer, variant, segment_by, choice)


def _plain(build: Callable[[Utterance, TextTokenizer], Braid]) -> Builder:
    """The builder of a layout without alternatives: variant, segmentation and choice do not apply."""
    return lambda layout, record, tokenizer, *_: build(record, tokenizer)


def _interleaved(layout: Layout, record: Utterance, tokenizer: TextTokenizer, variant: str, segment_by: str,
                 choice: int) -> Braid:
    form = layout.forms[(choice // 2) % len(layout.forms)]
    chosen = VARIANTS[choice % 2] if variant == "both" else variant
    return build_interleaved(record, tokenizer, form, chosen, segment_by=segment_by, seed=choice)  # type: ignore[arg-type]


def _generation(layout: Layout, record: SpokenQA, tokenizer: TextTokenizer, variant: str, segment_by: str,
                choice: int) -> Braid:
    modality = PROMPT_MODALITIES[choice % 2] if variant == "both" else variant
    return qa_generation_braid(record, layout.pattern, modality, tokenizer)  # type: ignore[arg-type]


_SPEECH_TEXT: frozenset[Modality] = frozenset({"speech", "text"})
_MARKED = _SPEECH_TEXT | {"special"}  # with special tokens: <|asr|>, <|il|> <|N|> <|/il|>, <|resp|> ...


def _il(name: str, *forms: str, emits: frozenset[Modality] = _MARKED) -> Layout:
    chosen = tuple(INTERLEAVE_LAYOUTS[f] for f in forms)
    return Layout(name, _interleaved, emits, needs_alignment=True, interleaves=True, forms=chosen,
                  takes_segment_by=any(f.unit == "segment" for f in chosen))


def _gen(name: str) -> Layout:
    response: Modality = "parallel" if isinstance(PATTERNS[name], ParallelPattern) else "units"
    return Layout(f"gen-{name}", _generation, _MARKED | {response}, reads="spoken-qa", needs_audio=False,
                  variants=(*PROMPT_MODALITIES, "both"), pattern=name)


LAYOUTS: dict[str, Layout] = {layout.name: layout for layout in (
    Layout("asr", _plain(build_asr), _MARKED, transcribes=True),
    Layout("text", _plain(build_text), frozenset({"text"}), needs_audio=False),
    _il("word-il", "word-il", emits=_SPEECH_TEXT),
    _il("segment-il", "segment-il"),
    _il("mixed-il", "word-il", "segment-il"),
    _il("random-il", "random-il"),  # an extra: SpiritLM-style random boundaries, not the paper's JSTIP
    *(_gen(name) for name in PATTERNS),
)}
UTTERANCE_LAYOUTS: tuple[str, ...] = tuple(name for name, layout in LAYOUTS.items() if layout.reads == "utterance")


def get_layout(name: str) -> Layout:
    try:
        return LAYOUTS[name]
    except KeyError:
        raise ValueError(f"unknown layout {name!r}; choose one of {', '.join(LAYOUTS)}") from None

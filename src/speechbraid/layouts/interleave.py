"""JSTIP interleaved layouts (METHODS.md section 1), built inside one word-aligned speech-text pair.

With units (A1,T1)...(An,Tn) - words for ``word-il``, segments for ``segment-il`` - speech and text
alternate, starting with speech (A1,T2,A3,...) or text (T1,A2,T3,...). Rules, in order:

1. The LAST unit is always text: when the alternation would end on speech, the last unit becomes text
   and joins the text unit before it.
2. Text units carry loss on every token; speech and special tokens never do.
3. A text unit's text is its words joined by spaces, with a leading space unless it opens the
   utterance, so its tokens match how the same words tokenize inside the full transcript.
4. A speech unit is the audio from its first word's start to its last word's end; which adapter
   frames that is follows the one time <-> frame rule (``speechbraid.braid.frames``), so a word
   shorter than a frame still gets one frame.
5. ``word-il`` uses no markers between modalities; ``segment-il`` wraps the sequence as
   ``<|il|> A1 <|N|> T2 <|N|> A3 ... <|N|> Tn <|/il|>`` (the paper's ``<s> ... <N> ... </s>``).
   ``random-il`` is an EXTRA, not the paper's method: SpiritLM-style runs of 1..``max_run_words`` words
   with random boundaries (seeded by the utterance id and the sampler's choice), laid out like segment-il.
   Without a begin marker the braid opens with the LLM's BOS (no loss), so a text-first braid's first
   token is predicted from something; word-il ends with EOS (with loss), like the ASR layout.

Layouts are declared as data in :data:`INTERLEAVE_LAYOUTS`; the variant (speech-first/text-first) and
segmentation mode are chosen per call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from random import Random
from typing import Literal

from speechbraid.braid.spans import Braid, Span, SpecialSpan, SpeechSpan, TextSpan
from speechbraid.data.records import Utterance, WordAlignment
from speechbraid.data.segment import DEFAULT_GAP, SegmentBy, segment_words
from speechbraid.layouts.tokenizer import TextTokenizer

Variant = Literal["speech-first", "text-first"]
VARIANTS: tuple[Variant, ...] = ("speech-first", "text-first")


@dataclass(frozen=True)
class InterleaveLayout:
    name: str
    unit: Literal["word", "segment", "random"]
    begin: str | None = None  # special token opening the sequence
    switch: str | None = None  # special token at every modality change
    end: str | None = None  # special token closing the sequence
    eos: bool = True  # end the last text unit with the LLM's EOS (with loss)
    segment_by: SegmentBy = "silence"
    gap: float = DEFAULT_GAP  # seconds of silence that end a segment
    max_segment_duration: float | None = 10.0
    max_run_words: int = 4  # random-il: longest run of words in one unit


INTERLEAVE_LAYOUTS: dict[str, InterleaveLayout] = {
    "word-il": InterleaveLayout("word-il", unit="word"),
    "segment-il": InterleaveLayout("segment-il", unit="segment", begin="<|il|>", switch="<|N|>", end="<|/il|>",
                                   eos=False),
    "random-il": InterleaveLayout("random-il", unit="random", begin="<|il|>", switch="<|N|>", end="<|/il|>",
                                  eos=False),
}


def interleave_units(record: Utterance, layout: InterleaveLayout, seed: int = 0) -> list[tuple[WordAlignment, ...]]:
    """The units that alternate: one per word, the segmenter's segments, or random runs of words."""
    if not record.words:
        raise ValueError(f"utterance {record.id!r} has no word alignment; interleaved layouts need one "
                         "(run `speechbraid align` first)")
    if layout.unit == "word":
        return [(w,) for w in record.words]
    if layout.unit == "random":
        rng = Random(f"{record.id}:{seed}")
        units, begin = [], 0
        while begin < len(record.words):
            end = begin + rng.randint(1, layout.max_run_words)
            units.append(tuple(record.words[begin:end]))
            begin = end
        return units
    segments = segment_words(record.words, by=layout.segment_by, gap=layout.gap,
                             max_duration=layout.max_segment_duration)
    return [s.words for s in segments]


def assign_modalities(n_units: int, variant: Variant) -> list[Literal["speech", "text"]]:
    """Alternate from the variant's first modality; the last unit is always text (rule 1)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    first, other = ("speech", "text") if variant == "speech-first" else ("text", "speech")
    modalities: list[Literal["speech", "text"]] = [first if i % 2 == 0 else other for i in range(n_units)]
    if modalities:
        modalities[-1] = "text"
    return modalities


def build_interleaved(
    record: Utterance,
    tokenizer: TextTokenizer,
    layout: InterleaveLayout | str = "word-il",
    variant: Variant = "speech-first",
    segment_by: SegmentBy | None = None,
    seed: int = 0,
) -> Braid:
    """Build one interleaved braid from a word-aligned utterance (see the module rules); ``seed`` picks
    random-il's boundaries."""
    if isinstance(layout, str):
        if layout not in INTERLEAVE_LAYOUTS:
            raise ValueError(f"unknown interleaved layout {layout!r}; choose one of {', '.join(INTERLEAVE_LAYOUTS)}")
        layout = INTERLEAVE_LAYOUTS[layout]
    if segment_by is not None:
        layout = replace(layout, segment_by=segment_by)
    if record.audio is None or record.duration is None:
        raise ValueError(f"utterance {record.id!r} has no audio; interleaved layouts need a speech-text pair")
    units = interleave_units(record, layout, seed)
    groups = _merge_runs(units, assign_modalities(len(units), variant))
    spans: list[Span] = [SpecialSpan(layout.begin) if layout.begin else TextSpan((tokenizer.bos_id,), False)]
    for i, (modality, words) in enumerate(groups):
        if i > 0 and layout.switch:
            spans.append(SpecialSpan(layout.switch))
        if modality == "speech":
            spans.append(SpeechSpan(words[0].start, words[-1].end))
            continue
        text = " ".join(w.word for w in words)
        text = text if words[0] is record.words[0] else " " + text  # type: ignore[index]
        tokens = tokenizer.encode(text)
        if layout.eos and i == len(groups) - 1:
            tokens.append(tokenizer.eos_id)
        spans.append(TextSpan(tuple(tokens), True, text))
    if layout.end:
        spans.append(SpecialSpan(layout.end))
    name = f"{layout.name}:{variant}" + (f":{layout.segment_by}" if layout.unit == "segment" else "")
    return Braid(tuple(spans), id=record.id, audio=record.audio, duration=record.duration, layout=name)


def _merge_runs(
    units: Sequence[tuple[WordAlignment, ...]], modalities: Sequence[str]
) -> list[tuple[str, tuple[WordAlignment, ...]]]:
    """Join consecutive units of the same modality (only the forced-text last unit can create a run)."""
    groups: list[tuple[str, tuple[WordAlignment, ...]]] = []
    for modality, words in zip(modalities, units, strict=True):
        if groups and groups[-1][0] == modality:
            groups[-1] = (modality, groups[-1][1] + words)
        else:
            groups.append((modality, words))
    return groups

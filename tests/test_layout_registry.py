"""The layout registry: what every layout declares about itself holds for the braids its builder makes."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from helpers import WordTokenizer
from speechbraid.braid.spans import Braid, SpeechSpan, TextSpan
from speechbraid.config import load_config
from speechbraid.corpora.spoken_qa import SpokenQA
from speechbraid.data.records import Utterance, WordAlignment
from speechbraid.data.segment import SEGMENT_MODES
from speechbraid.errors import ConfigError
from speechbraid.layouts.registry import LAYOUTS, Layout, get_layout
from speechbraid.training.trainer import TrainConfig

W = WordAlignment
# a silence after "twice" only, a comma after "aspirin,": the two segmentation modes cut differently
UTT = Utterance(id="u", text="Take aspirin, twice daily with water.", audio="u.wav", sample_rate=16000, duration=2.8,
                words=[W("Take", 0.10, 0.40), W("aspirin,", 0.45, 0.95), W("twice", 1.00, 1.30),
                       W("daily", 1.60, 1.90), W("with", 1.95, 2.15), W("water.", 2.20, 2.60)])
PAIR = SpokenQA("sqa-1", "antonym", "train", "What is the opposite of hot?", ("cold",), "The opposite of hot is cold.",
                question_audio="q.wav", question_duration=1.2, units=tuple(range(20)))



def record(layout: Layout, *, audio: bool = True, words: bool = True) -> Utterance | SpokenQA:
    if layout.reads == "spoken-qa":
        return PAIR if audio else replace(PAIR, question_audio=None, question_duration=None)
    utt = UTT if audio else replace(UTT, audio=None, sample_rate=None, duration=None)
    return utt if words else replace(utt, words=None)


def every_braid(layout: Layout, segment_by: str = "silence") -> list[Braid]:
    """Every variant under choices that reach every variant, every form and several random-il boundaries."""
    return [layout.build(record(layout), WordTokenizer(), variant=variant, segment_by=segment_by, choice=choice)
            for variant in layout.variants for choice in range(8)]


def alternates(braid: Braid) -> bool:
    """Speech before a text target and a text target before speech."""
    order = [s.modality for s in braid.spans if isinstance(s, SpeechSpan) or (isinstance(s, TextSpan) and s.loss)]
    pairs = set(itertools.pairwise(order))
    return {("speech", "text"), ("text", "speech")} <= pairs


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_declared_properties_match_the_builder(name: str) -> None:
    layout = get_layout(name)
    tok = WordTokenizer()
    braids = [b for by in SEGMENT_MODES for b in every_braid(layout, by)]
    assert {span.modality for b in braids for span in b.spans} == layout.emits
    assert any(alternates(b) for b in braids) == layout.interleaves
    assert (every_braid(layout, "silence") != every_braid(layout, "silence+punct")) == layout.takes_segment_by
    transcribes = all([s for s in b.spans if isinstance(s, SpeechSpan)] == [SpeechSpan(0.0, UTT.duration)]
                      and [s.text for s in b.spans if isinstance(s, TextSpan) and s.loss] == [UTT.text]
                      for b in braids)
    assert transcribes == layout.transcribes
    # one braid layout (form) per form choice
    shown = {layout.build(record(layout), tok, variant=layout.variants[0], choice=c).layout
             for c in layout.form_choices()}
    assert len(shown) == max(len(layout.forms), 1)
    with pytest.raises(ValueError, match=f"unknown variant 'sideways' for layout '{name}'"):
        layout.build(record(layout), tok, variant="sideways")
    # needs_audio / needs_alignment: a record without them builds exactly when they are not declared
    for needed, stripped in ((layout.needs_audio, record(layout, audio=False)),
                             (layout.needs_alignment, record(layout, words=False))):
        if needed:
            with pytest.raises(ValueError):
                layout.build(stripped, tok, variant=layout.variants[0])
        else:
            layout.build(stripped, tok, variant=layout.variants[0])
    if layout.reads == "utterance":
        assert (layout.lacks(record(layout, audio=False)) is not None) == layout.needs_audio
        assert (layout.lacks(record(layout, words=False)) is not None) == layout.needs_alignment


def test_unknown_layout_names_list_the_known_ones() -> None:
    known = ", ".join(LAYOUTS)
    with pytest.raises(ValueError, match=f"unknown layout 'bogus'; choose one of {known}$"):
        get_layout("bogus")
    with pytest.raises(ConfigError, match=r"data\.train\[0\]: unknown layout 'bogus'; choose one of asr, text, "):
        load_config(TrainConfig, None, ["data.train=[{manifest: m.jsonl, layout: bogus}]"])

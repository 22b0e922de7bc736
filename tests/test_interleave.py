"""JSTIP interleaved layouts on hand-made alignments."""

import pytest

from speechbraid.batching import IGNORE_INDEX, flatten_braid
from speechbraid.braid import SpecialSpan, SpeechSpan, TextSpan, VocabLayout
from speechbraid.data.records import Utterance, WordAlignment
from speechbraid.layouts.interleave import assign_modalities, build_interleaved

W = WordAlignment


class WordTokenizer:
    """One id per whitespace word (ids from a growing table); a leading space is kept in the table key."""

    eos_id, bos_id = 1, 2

    def __init__(self) -> None:
        self.table: dict[str, int] = {}

    def encode(self, text: str) -> list[int]:
        pieces = text.split(" ")
        keys = [(" " if (i > 0 or text.startswith(" ")) else "") + p for i, p in enumerate(pieces) if p]
        return [self.table.setdefault(k, 10 + len(self.table)) for k in keys]

    def decode(self, ids: list[int]) -> str:
        inverse = {v: k for k, v in self.table.items()}
        return "".join(inverse[i] for i in ids)


# "Take aspirin, twice daily." with a long pause after the comma
UTT = Utterance(
    id="u1", text="Take aspirin, twice daily.", audio="u1.wav", sample_rate=16000, duration=2.0,
    words=[W("Take", 0.10, 0.40), W("aspirin,", 0.45, 0.95), W("twice", 1.40, 1.70), W("daily.", 1.72, 1.85)],
)


def shape(braid) -> list[str]:
    out = []
    for span in braid.spans:
        if isinstance(span, SpeechSpan):
            out.append(f"A[{span.start:.2f}-{span.end:.2f}]")
        elif isinstance(span, SpecialSpan):
            out.append(span.token)
        else:
            out.append(f"T({span.text})" if span.loss else "bos")
    return out


def test_word_il_speech_first_alternates_and_ends_on_text():
    braid = build_interleaved(UTT, WordTokenizer(), "word-il", "speech-first")
    assert shape(braid) == ["bos", "A[0.10-0.40]", "T( aspirin,)", "A[1.40-1.70]", "T( daily.)"]
    assert braid.spans[-1].tokens[-1] == WordTokenizer.eos_id  # ends with EOS, with loss


def test_word_il_text_first_forces_last_unit_to_text_and_merges():
    braid = build_interleaved(UTT, WordTokenizer(), "word-il", "text-first")
    # T1 A2 T3 A4 -> last forced to text -> T1 A2 T(3+4)
    assert shape(braid) == ["bos", "T(Take)", "A[0.45-0.95]", "T( twice daily.)"]
    assert assign_modalities(1, "speech-first") == ["text"]
    assert assign_modalities(5, "speech-first") == ["speech", "text", "speech", "text", "text"]


def test_segment_il_markers_and_segmentation_modes():
    utt = Utterance(
        id="u2", text="Take aspirin, twice daily. Rest well.", audio="u2.wav", duration=3.0,
        words=[W("Take", 0.1, 0.4), W("aspirin,", 0.45, 0.95), W("twice", 1.0, 1.3), W("daily.", 1.32, 1.6),
               W("Rest", 2.0, 2.3), W("well.", 2.32, 2.6)],
    )
    # silence only: one pause >= 0.2 s (1.6 -> 2.0) -> [Take aspirin, twice daily.] [Rest well.]
    by_silence = build_interleaved(utt, WordTokenizer(), "segment-il", "speech-first", segment_by="silence")
    assert shape(by_silence) == ["<|il|>", "A[0.10-1.60]", "<|N|>", "T( Rest well.)", "<|/il|>"]
    assert by_silence.layout == "segment-il:speech-first:silence"
    # silence + punctuation -> [Take aspirin,] [twice daily.] [Rest well.]
    by_punct = build_interleaved(utt, WordTokenizer(), "segment-il", "text-first", segment_by="silence+punct")
    assert shape(by_punct) == ["<|il|>", "T(Take aspirin,)", "<|N|>", "A[1.00-1.60]", "<|N|>", "T( Rest well.)",
                               "<|/il|>"]
    # speech-first over three segments: A T A -> last forced to text and merged: A T
    punct_sf = build_interleaved(utt, WordTokenizer(), "segment-il", "speech-first", segment_by="silence+punct")
    assert shape(punct_sf) == ["<|il|>", "A[0.10-0.95]", "<|N|>", "T( twice daily. Rest well.)", "<|/il|>"]
    assert not any(s.loss for s in by_punct.spans if not isinstance(s, TextSpan))


def test_loss_masks_only_text_and_text_tokens_match_the_transcript():
    tok = WordTokenizer()
    braid = build_interleaved(UTT, tok, "word-il", "text-first")
    flat = flatten_braid(braid, VocabLayout(text_size=100), frame_rate=12.5)
    targets = [t for t in flat.labels if t != IGNORE_INDEX]
    text_tokens = [t for s in braid.spans if isinstance(s, TextSpan) and s.loss for t in s.tokens]
    assert targets == text_tokens
    # the words' tokens are the same ids the full transcript gives
    full = tok.encode(UTT.text)
    assert text_tokens[:-1] == [full[0], full[2], full[3]]


def test_short_word_gets_one_frame_and_frames_come_from_one_encoding():
    utt = Utterance(id="s", text="a b c", audio="s.wav", duration=1.0,
                    words=[W("a", 0.0, 0.30), W("b", 0.31, 0.33), W("c", 0.40, 0.9)])
    braid = build_interleaved(utt, WordTokenizer(), "word-il", "text-first")
    flat = flatten_braid(braid, VocabLayout(text_size=100), frame_rate=12.5)
    speech_frames = [f for f in flat.frames if f >= 0]
    assert speech_frames == [4]  # the 20 ms word "b" -> the frame holding its midpoint (0.32 s)
    assert flat.num_frames == 13  # frames index the WHOLE utterance's encoding


def test_errors_name_the_utterance():
    no_words = Utterance(id="nw", text="x", audio="x.wav", duration=1.0)
    with pytest.raises(ValueError, match="'nw' has no word alignment"):
        build_interleaved(no_words, WordTokenizer())
    with pytest.raises(ValueError, match="unknown interleaved layout"):
        build_interleaved(UTT, WordTokenizer(), "bogus-il")
    with pytest.raises(ValueError, match="unknown variant"):
        build_interleaved(UTT, WordTokenizer(), "word-il", "both")


LONG = Utterance(
    id="long", text=" ".join(f"w{i}" for i in range(30)), audio="long.wav", sample_rate=16000, duration=9.5,
    words=[W(f"w{i}", 0.3 * i, 0.3 * i + 0.25) for i in range(30)],
)


def test_random_il_runs_cover_every_word_in_order_and_follow_the_seed():
    from speechbraid.layouts.interleave import INTERLEAVE_LAYOUTS, interleave_units

    layout = INTERLEAVE_LAYOUTS["random-il"]
    runs = {seed: interleave_units(LONG, layout, seed) for seed in range(4)}
    for units in runs.values():
        assert [w for unit in units for w in unit] == LONG.words  # nothing lost, nothing reordered
        assert all(1 <= len(unit) <= layout.max_run_words for unit in units)
    assert interleave_units(LONG, layout, 0) == runs[0]  # same seed, same boundaries
    assert len({tuple(len(u) for u in units) for units in runs.values()}) > 1  # other seeds, other boundaries
    lengths = {len(unit) for units in runs.values() for unit in units}
    assert lengths == set(range(1, layout.max_run_words + 1))


def test_random_il_is_laid_out_like_segment_il_and_ends_on_text():
    braid = build_interleaved(LONG, WordTokenizer(), "random-il", "speech-first", seed=3)
    kinds = shape(braid)
    assert kinds[0] == "<|il|>" and kinds[-1] == "<|/il|>" and kinds[-2].startswith("T(")
    body = [k for k in kinds[1:-1] if k != "<|N|>"]
    assert all(a[0] != b[0] for a, b in zip(body, body[1:], strict=False))  # modalities alternate
    assert kinds[1:-1].count("<|N|>") == len(body) - 1  # a marker at every modality change
    assert braid.layout == "random-il:speech-first"
    text = "".join(s.text for s in braid.spans if isinstance(s, TextSpan) and s.loss)
    spoken = [s for s in braid.spans if isinstance(s, SpeechSpan)]
    assert len(text.split()) + sum(round((s.end - s.start + 0.05) / 0.3) for s in spoken) == 30

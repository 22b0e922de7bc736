import pytest

from speechbraid.braid import SpecialSpan, SpeechSpan, TextSpan, VocabLayout, frame_range, num_frames_for
from speechbraid.data.records import Utterance
from speechbraid.layouts import build_asr, build_text

RATE = 12.5  # 80 ms adapter frames


class CharTokenizer:
    """One id per character; EOS = 0. Enough to check layouts without a trained tokenizer."""

    eos_id = 0
    bos_id = 1

    def encode(self, text: str) -> list[int]:
        return [ord(c) for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(chr(i) for i in ids if i)


def test_frame_rule_partitions_consecutive_words():
    bounds = [0.0, 0.13, 0.29, 0.31, 0.75, 1.02]
    ranges = [frame_range(a, b, RATE, 13) for a, b in zip(bounds, bounds[1:], strict=False)]
    # spans that share a boundary share no frame and leave no gap, except a too-short span,
    # which still gets the single frame holding its midpoint
    assert ranges[0] == (0, 2) and ranges[1] == (2, 4)
    assert ranges[2] == (3, 4)  # 20 ms word inside frame 3
    assert ranges[3] == (4, 9) and ranges[4] == (9, 13)


def test_frame_rule_boundary_inside_frame_rounds_to_nearest():
    assert frame_range(0.119, 0.5, RATE) == (1, 6)  # 1.49 frames -> 1
    assert frame_range(0.12, 0.5, RATE) == (2, 6)  # 1.5 frames -> 2 (half rounds up)


def test_frame_rule_clips_to_encoder_frames_and_rejects_reversed_spans():
    assert frame_range(0.9, 1.3, RATE, num_frames=12) == (11, 12)
    assert frame_range(2.0, 2.01, RATE, num_frames=12) == (11, 12)
    with pytest.raises(ValueError):
        frame_range(0.5, 0.4, RATE)
    assert num_frames_for(1.0, RATE) == 13 and num_frames_for(0.01, RATE) == 1


def test_vocab_layout_offsets_are_disjoint():
    vocab = VocabLayout(text_size=100, num_units=50)
    assert vocab.special_id("<|asr|>") == 100
    assert vocab.kind_of(99) == "text" and vocab.kind_of(vocab.special_id("<|S|>")) == "special"
    assert vocab.unit_id(0) == vocab.unit_offset and vocab.kind_of(vocab.unit_id(49)) == "units"
    assert vocab.size == vocab.unit_offset + 50
    with pytest.raises(KeyError, match="unknown special token"):
        vocab.special_id("<nope>")
    with pytest.raises(ValueError):
        vocab.unit_id(50)


def test_asr_layout_puts_loss_only_on_transcript_and_eos():
    utt = Utterance(id="u1", text="Hi.", audio="a.wav", sample_rate=16000, duration=1.2)
    braid = build_asr(utt, CharTokenizer())
    speech, task, text = braid.spans
    assert speech == SpeechSpan(0.0, 1.2) and not speech.loss
    assert task == SpecialSpan("<|asr|>") and not task.loss
    assert isinstance(text, TextSpan) and text.loss and text.tokens == (72, 105, 46, 0)
    assert braid.text_token_count(with_loss=True) == 4
    assert braid.to_json()["spans"][0] == {"modality": "speech", "start": 0.0, "end": 1.2, "loss": False}


def test_text_layout_and_asr_on_text_only_record():
    utt = Utterance(id="t1", text="ok")
    braid = build_text(utt, CharTokenizer())
    bos, text = braid.spans
    assert not braid.has_speech and bos.tokens == (1,) and not bos.loss and text.loss
    with pytest.raises(ValueError, match="t1"):
        build_asr(utt, CharTokenizer())


def test_ctc_compression_keeps_word_spans_at_their_times():
    from speechbraid.batching import flatten_braid
    from speechbraid.braid import Braid
    from speechbraid.models.speech_llm import kept_frames

    # 25 Hz: frames of 40 ms. Classes per frame (0 = blank): tokens at frames 1, 2 (repeat of 1 dropped), 5, 9
    classes = [0, 7, 7, 0, 0, 8, 0, 0, 0, 9, 0, 0]
    assert kept_frames(classes) == (1, 5, 9)
    vocab = VocabLayout(text_size=20)
    braid = Braid((SpeechSpan(0.0, 0.16), TextSpan((3,), True), SpeechSpan(0.16, 0.30), SpeechSpan(0.30, 0.48)),
                  id="u", audio="a.wav", duration=0.48, layout="word-il")
    full = flatten_braid(braid, vocab, 25.0)
    assert [f for f in full.frames if f >= 0] == list(range(12))
    flat = flatten_braid(braid, vocab, 25.0, select=lambda audio: kept_frames(classes))
    # span 1 holds frames [0, 4): kept 1; span 2 [4, 8): kept 5; span 3 [8, 12): kept 9 - each at its own time
    assert flat.frames == (1, -1, 5, 9)
    # a span where nothing is kept still holds one frame: the one containing its midpoint
    empty = Braid((SpeechSpan(0.16, 0.30),), id="v", audio="a.wav", duration=0.48, layout="asr")
    assert flatten_braid(empty, vocab, 25.0, select=lambda audio: (1, 9)).frames == (5,)

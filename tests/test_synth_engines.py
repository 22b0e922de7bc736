"""Real espeak-ng and Piper synthesis: word alignments match the text and the audio."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from speechbraid.errors import ConfigError
from speechbraid.synth import SynthesisError, get_engine
from speechbraid.synth.augment import add_noise, speed_perturb
from speechbraid.synth.base import SynthResult, assemble_words, text_tokens
from speechbraid.synth.espeak_engine import _Event

TEXT = "Take aspirin, twice a day. It is in the house of the king."


def _rms(result: SynthResult, start: float, end: float) -> float:
    seg = result.samples[int(start * result.sample_rate) : int(end * result.sample_rate)]
    return float(np.sqrt(np.mean(seg.astype(np.float64) ** 2))) if len(seg) else 0.0


def _peak(result: SynthResult, start: float, end: float) -> float:
    """Loudest 20 ms frame inside [start, end]."""
    step = int(0.02 * result.sample_rate)
    return max(
        _rms(result, t / result.sample_rate, (t + step) / result.sample_rate)
        for t in range(
            int(start * result.sample_rate),
            max(int(end * result.sample_rate) - step, int(start * result.sample_rate) + 1),
            step // 2,
        )
    )


def _check_alignment(result: SynthResult, text: str, slack: float = 0.0) -> None:
    assert result.sample_rate == 16000 and result.samples.dtype == np.float32
    assert [w.word for w in result.words] == text.split()
    ends = 0.0
    for w in result.words:
        assert ends <= w.start + 1e-9 and w.start < w.end <= result.duration + 1e-6, w
        ends = w.end
        assert _peak(result, w.start - slack, w.end + slack) > 0.05, f"no voiced energy inside {w}"
    # the pauses after "aspirin," and "day." lie between words and are near-silent
    words = {w.word: w for w in result.words}
    for left, right in (("aspirin,", "twice"), ("day.", "It")):
        gap = (words[left].end, words[right].start)
        assert gap[1] - gap[0] > 0.05, f"no pause between {left} and {right}: {gap}"
        speech = _rms(result, words[left].start, words[left].end)
        assert _rms(result, *gap) < speech / 5


# Piper's durations come from VITS in 256-sample frames and a short word can sit a frame or two off
# its energy; espeak's event times are exact.
@pytest.mark.parametrize(("engine", "slack"), [("espeak", 0.0), ("piper", 0.025)])
def test_alignment_matches_text_and_audio(engine: str, slack: float) -> None:
    synth = get_engine(engine)
    result = synth.synthesize(TEXT, synth.voice(rate=170))
    _check_alignment(result, TEXT, slack)


def test_espeak_event_struct_is_the_64bit_layout() -> None:
    assert ctypes.sizeof(_Event) == 40
    assert _Event.user_data.offset == 24 and _Event.id.offset == 32


def test_espeak_voices_rate_pitch_and_tricky_tokens() -> None:
    synth = get_engine("espeak")
    names = synth.voices()
    assert {"en-us", "en-gb", "en-gb-scotland", "en-029", "en-us+f3", "en-us+m7", "en-us+klatt"} <= set(names)
    slow = synth.synthesize("Hello there.", synth.voice("en-gb+f2", rate=100, pitch=80))
    fast = synth.synthesize("Hello there.", synth.voice("en-gb+f2", rate=300, pitch=80))
    assert slow.duration > 1.8 * fast.duration
    text = "Hello - world ... 3.5 mg of café costs $5 & more."
    result = synth.synthesize(text, synth.voice("en-029+m3"))
    assert [w.word for w in result.words] == text.split()
    spoken = [w for w in result.words if w.word not in ("-", "...")]
    assert all(w.duration > 0.05 for w in spoken), spoken
    with pytest.raises(SynthesisError, match="unknown espeak voice"):
        synth.synthesize("hi", synth.voice("xx-nonexistent"))
    with pytest.raises(ConfigError, match="rate"):
        synth.voice(rate=20)
    with pytest.raises(SynthesisError):
        synth.synthesize("   ", synth.voice())


def test_piper_has_no_pitch_and_rate_scales_length() -> None:
    synth = get_engine("piper")
    assert synth.voices() == ["en_US-joe-medium"]
    with pytest.raises(ConfigError, match="pitch"):
        synth.voice(pitch=50)
    slow = synth.synthesize("It is in the house.", synth.voice(rate=100))
    fast = synth.synthesize("It is in the house.", synth.voice(rate=250))
    assert slow.duration > 1.8 * fast.duration
    assert all(w.duration > 0.03 for w in slow.words), slow.words


def test_fill_rule_shares_the_gap_and_refuses_silence() -> None:
    text = "a - b"
    words = assemble_words(text, text_tokens(text), [(0.0, 0.2), None, (0.5, 0.8)], 1.0)
    assert [(w.word, w.start, w.end) for w in words] == [("a", 0.0, 0.2), ("-", 0.2, 0.5), ("b", 0.5, 0.8)]
    with pytest.raises(SynthesisError, match="spoke no word"):
        assemble_words(text, text_tokens(text), [None, None, None], 1.0)


def test_speed_and_noise_augmentation() -> None:
    synth = get_engine("espeak")
    base = synth.synthesize("Take aspirin twice a day.", synth.voice())
    fast = speed_perturb(base, 1.25)
    assert len(fast.samples) == pytest.approx(len(base.samples) / 1.25, abs=2)
    assert fast.words[-1].end == pytest.approx(base.words[-1].end / 1.25)
    for kind in ("white", "pink"):
        noisy = add_noise(base, 10.0, kind, np.random.default_rng(0))
        noise = noisy.samples - base.samples
        mask = np.zeros(len(base.samples), dtype=bool)
        for w in base.words:
            mask[int(w.start * 16000) : int(w.end * 16000)] = True
        snr = 10 * np.log10(np.mean(base.samples[mask] ** 2) / np.mean(noise**2))
        assert snr == pytest.approx(10.0, abs=0.2)


def test_espeak_backward_word_positions_are_repaired():
    """Regression: after earlier utterances espeak reported word positions pointing back into spoken words
    around clause breaks, and every later word collapsed to a zero-length span at the end of the audio."""
    from speechbraid.synth.base import text_tokens
    from speechbraid.synth.espeak_engine import EVENT_WORD, word_spans_from_events

    text = "Rivers, from which we drink."
    tokens = text_tokens(text)
    events = [(EVENT_WORD, 1, 0, ""), (EVENT_WORD, 9, 700, ""),
              (EVENT_WORD, 3, 1000, ""),  # stray duplicate of the next event (same time), points into "Rivers,"
              (EVENT_WORD, 14, 1000, ""),  # "which" at its true position
              (EVENT_WORD, 15, 1300, ""),  # "we" reported inside "which": the next word in order
              (EVENT_WORD, 23, 1500, ""),  # "drink."
              (EVENT_WORD, 7, 1900, "")]  # a backward event after the last word: only marks its end
    spans = word_spans_from_events(text, events, tokens, total_ms=2000)
    starts = [round(s[0], 3) for s in spans]
    assert starts == [0.0, 0.7, 1.0, 1.3, 1.5]
    assert spans[-1][1] == pytest.approx(1.9)
    assert all(end > start for start, end in spans)

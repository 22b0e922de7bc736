"""Speech synthesis of text into word-aligned speech-text pairs (espeak-ng, Piper)."""

from speechbraid.synth import espeak_engine as _espeak_engine  # noqa: F401  (registers "espeak")
from speechbraid.synth import piper_engine as _piper_engine  # noqa: F401  (registers "piper")
from speechbraid.synth.base import (
    SynthEngine,
    SynthesisError,
    SynthResult,
    VoiceSpec,
    engine_names,
    get_engine,
    register_engine,
)
from speechbraid.synth.runner import (
    SpeedReport,
    SynthReport,
    measure_synthesis_speed,
    run_synthesis,
    synthesize_corpus,
)

__all__ = [
    "SpeedReport",
    "SynthEngine",
    "SynthReport",
    "SynthResult",
    "SynthesisError",
    "VoiceSpec",
    "engine_names",
    "get_engine",
    "measure_synthesis_speed",
    "register_engine",
    "run_synthesis",
    "synthesize_corpus",
]

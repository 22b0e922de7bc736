"""speechbraid: decoder-only speech LLMs that braid speech and text into one sequence.

The Python API is :class:`speechbraid.SpeechLLM` (``from speechbraid import SpeechLLM``); it is imported on first
use, so ``import speechbraid`` stays light.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["SpeechLLM", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "SpeechLLM":
        from speechbraid.api import SpeechLLM

        return SpeechLLM
    raise AttributeError(f"module 'speechbraid' has no attribute {name!r}")

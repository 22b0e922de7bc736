"""The trainer's encoder store: opened per run from its config, and in read-only mode checked before step 1.

A read-only run must not find out at step 5000 that an audio file was never precomputed: every audio file the
training sources use is looked up in the store's index first (one ``stat`` each), and the error names the
manifest and record that use it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from speechbraid.models.build import ModelConfig
from speechbraid.models.encoder_store import EncoderOutputStore, Mode, default_root

if TYPE_CHECKING:
    from speechbraid.models.speech_llm import SpeechLLM
    from speechbraid.training.data import BraidSource


def open_encoder_store(encoder: torch.nn.Module, sources: Sequence[BraidSource], model: ModelConfig, *,
                       root: str | None, mode: Mode, cache_mb: float, init_from: str | None) -> EncoderOutputStore:
    """The store of ``encoder``'s weights under ``root`` (default $SPEECHBRAID_HOME/encoder_outputs): every run and
    study row that starts from this frozen encoder (and a resumed run) reads the outputs computed (or precomputed)
    first, so each audio is encoded once. Read-only: checked against every audio of ``sources`` at once."""
    name = init_from or (model.whisper if model.encoder == "whisper" else None)  # what the precompute is told
    store = EncoderOutputStore(Path(root) if root else default_root(), encoder, round(cache_mb * 2**20), mode=mode,
                               name=name, features=model.feature_config.to_dict())
    if mode == "read-only":
        store.check(source_audio(sources))
    return store


def source_audio(sources: Sequence[BraidSource]) -> Iterator[tuple[str, str]]:
    """(audio path, the manifest line and record that use it) for every audio file the sources' braids encode."""
    for source in sources:
        yield from source.encoded_audio()


def skip_stored(features: Callable[[str], torch.Tensor], model: SpeechLLM,
                bins: int) -> Callable[[str], torch.Tensor]:
    """``features`` for ``collate`` that spares the audio whose output the frozen encoder's store holds: the encoder
    never reads those features, so one zero frame stands in (no audio decoding, no log-mel, no RAM for them)."""
    placeholder = torch.zeros(1, bins)

    def get(path: str) -> torch.Tensor:
        cache = model.encoder_cache
        frozen = model.encoder is not None and not any(p.requires_grad for p in model.encoder.parameters())
        if frozen and isinstance(cache, EncoderOutputStore) and path in cache:
            return placeholder
        return features(path)  # a trained encoder (or no store) reads real features

    return get

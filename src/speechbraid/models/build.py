"""Build a speech LLM from a config, and save/load trained ones as plain directories.

A saved speech LLM directory holds:
- ``speechbraid.json``: the model config and the vocabulary layout (text size, units);
- ``llm/``: the causal LM and its tokenizer as a normal Hugging Face checkpoint (LoRA merged), with
  speechbraid's special tokens added to the tokenizer at the ids the vocabulary layout gives them;
- ``speech.safetensors``: encoder + adapter weights.
Loading never unpickles anything.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from speechbraid.braid.vocab import SPECIAL_TOKENS, VocabLayout
from speechbraid.config import from_dict
from speechbraid.data.features import FeatureConfig
from speechbraid.errors import CheckpointError, ConfigError
from speechbraid.models.adapter import FrameStackAdapter
from speechbraid.models.encoders import ConformerConfig, ConformerEncoder, WhisperSpeechEncoder
from speechbraid.models.hf_load import load_pretrained
from speechbraid.models.registry import resolve_model
from speechbraid.models.speech_llm import SpeechLLM
from speechbraid.training.checkpoint import read_model_config

CONFIG_FILE = "speechbraid.json"
SPEECH_FILE = "speech.safetensors"
LLM_DIR = "llm"


@dataclass
class LoraSettings:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


@dataclass
class ModelConfig:
    llm: str = "default-lm"  # HF causal LM directory or registered name
    encoder: Literal["conformer", "whisper"] = "conformer"
    conformer: ConformerConfig = field(default_factory=ConformerConfig)
    whisper: str = "whisper-base"  # directory or name, when encoder == "whisper"
    adapter_stack: int | None = None  # frames stacked by the adapter; default gives 80 ms frames
    adapter_hidden: int | None = None
    num_units: int = 0  # discrete speech units appended to the vocabulary
    speech_head: bool = False  # a second output head for the speech stream (parallel generation pattern)
    stream_combine: Literal["sum", "mean"] = "sum"  # how parallel streams' input embeddings combine
    lora: LoraSettings | None = None

    @property
    def stack(self) -> int:
        if self.adapter_stack is not None:
            return self.adapter_stack
        return 1 if self.encoder == "conformer" else 4  # 80 ms either way (12.5 Hz)

    @property
    def feature_config(self) -> FeatureConfig:
        return FeatureConfig(kind="fbank" if self.encoder == "conformer" else "whisper")


def _encoder(config: ModelConfig) -> torch.nn.Module:
    if config.encoder == "conformer":
        return ConformerEncoder(config.conformer)
    return WhisperSpeechEncoder(_whisper_dir(config.whisper))


def _whisper_dir(name: str) -> Path:
    """A Whisper directory; whisper-base is converted from its installed wheels on first use (offline, seconds),
    so a fresh machine trains the default config without a separate import step."""
    from speechbraid.models.registry import list_models
    from speechbraid.models.whisper_import import MODEL_NAME, import_whisper

    if name == MODEL_NAME and MODEL_NAME not in list_models():
        return import_whisper()
    return resolve_model(name)


def build_speech_llm(config: ModelConfig) -> tuple[SpeechLLM, Any]:
    """A fresh speech LLM around the configured pretrained causal LM; returns (model, HF tokenizer)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    llm_dir = resolve_model(config.llm)
    tokenizer = load_pretrained(AutoTokenizer.from_pretrained, llm_dir, "tokenizer")
    text_size = len(tokenizer)
    _add_special_tokens(tokenizer)
    llm = load_pretrained(AutoModelForCausalLM.from_pretrained, llm_dir, "causal LM")
    vocab = VocabLayout(text_size=text_size, num_units=config.num_units)
    return _assemble(config, llm, vocab, _encoder(config)), tokenizer


def _add_special_tokens(tokenizer: Any) -> None:
    # Appended in SPECIAL_TOKENS order, so their ids equal VocabLayout.special_id (checked on load).
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)},
                                 replace_extra_special_tokens=False)


def _assemble(config: ModelConfig, llm: Any, vocab: VocabLayout, encoder: torch.nn.Module) -> SpeechLLM:
    llm_dim = llm.get_input_embeddings().embedding_dim
    adapter = FrameStackAdapter(encoder.output_dim, llm_dim, config.stack, config.adapter_hidden)
    frame_rate = 100.0 / (encoder.downsample * config.stack)  # feature frames are 10 ms
    if config.lora is not None:
        from peft import LoraConfig, get_peft_model

        llm = get_peft_model(llm, LoraConfig(r=config.lora.r, lora_alpha=config.lora.alpha,
                                             lora_dropout=config.lora.dropout,
                                             target_modules=config.lora.target_modules, task_type="CAUSAL_LM"))
    return SpeechLLM(encoder, adapter, llm, vocab, frame_rate, speech_head=config.speech_head,
                     stream_combine=config.stream_combine)


def set_trainable(model: torch.nn.Module, patterns: Sequence[str]) -> int:
    """Train exactly the parameters whose name matches one of the regexes (``re.search``); freeze the rest.

    Returns the number of trainable parameters; no match at all is a config error, not a silent no-op.
    """
    compiled = [re.compile(p) for p in patterns]
    count = 0
    for name, param in model.named_parameters():
        param.requires_grad_(any(p.search(name) for p in compiled))
        count += param.numel() if param.requires_grad else 0
    if count == 0:
        raise ConfigError(f"no parameter matches the trainable patterns {list(patterns)}")
    return count


def save_speech_llm(model: SpeechLLM, tokenizer: Any, config: ModelConfig, out_dir: str | Path) -> Path:
    """Write the model as a plain directory (layout in the module docstring).

    LoRA adapters are merged into the LLM in place (peft's ``merge_and_unload``), so this is the final
    export of a run; mid-run checkpoints go through ``training.checkpoint`` instead.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    llm = model.llm.merge_and_unload() if hasattr(model.llm, "merge_and_unload") else model.llm
    llm.save_pretrained(out / LLM_DIR)
    tokenizer.save_pretrained(out / LLM_DIR)
    speech = {f"{prefix}.{k}": v for prefix, module in _speech_modules(model) for k, v in module.state_dict().items()}
    save_file({k: v.contiguous() for k, v in speech.items()}, str(out / SPEECH_FILE))
    meta = {"model": asdict(config) | {"lora": None}, "vocab": {"text_size": model.vocab.text_size,
                                                                   "num_units": model.vocab.num_units}}
    (out / CONFIG_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return out


def _speech_modules(model: SpeechLLM) -> list[tuple[str, torch.nn.Module]]:
    """The modules saved beside the HF LLM (in ``speech.safetensors``)."""
    modules = [("encoder", model.encoder), ("adapter", model.adapter)]
    return modules + ([("speech_head", model.speech_head)] if model.speech_head is not None else [])


def load_speech_llm(model_dir: str | Path, device: str | torch.device = "cpu") -> tuple[SpeechLLM, Any, ModelConfig]:
    """Load a directory written by :func:`save_speech_llm`; returns (model in eval mode, tokenizer, config)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model(model_dir)
    config, vocab = read_model_config(path, CONFIG_FILE, "speechbraid model", lambda meta: (
        from_dict(ModelConfig, meta["model"], str(path / CONFIG_FILE)), VocabLayout(**meta["vocab"])))
    tokenizer = load_pretrained(AutoTokenizer.from_pretrained, path / LLM_DIR, "tokenizer")
    if tokenizer.convert_tokens_to_ids(SPECIAL_TOKENS[0]) != vocab.special_id(SPECIAL_TOKENS[0]):
        raise CheckpointError("tokenizer special tokens do not match the vocabulary layout", path / LLM_DIR)
    llm = load_pretrained(AutoModelForCausalLM.from_pretrained, path / LLM_DIR, "causal LM")
    model = _assemble(config, llm, vocab, _encoder(config))
    try:
        speech = load_file(str(path / SPEECH_FILE))
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(f"cannot read speech weights: {exc}", path / SPEECH_FILE) from None
    for name, module in _speech_modules(model):
        prefix = name + "."
        state = {k[len(prefix):]: v for k, v in speech.items() if k.startswith(prefix)}
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"speech weights do not fit the config: {exc}", path / SPEECH_FILE) from None
    return model.to(device).eval(), tokenizer, config

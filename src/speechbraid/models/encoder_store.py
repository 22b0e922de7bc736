"""Encoder outputs kept on disk: computed once per audio and encoder weights, reused by every run.

A frozen pretrained encoder (whisper-base) gives the same output for an audio file in every run and study
row, and encoding is the dearest part of a CPU step. The store keeps each output as a small safetensors file
under ``root/<encoder digest>/<audio key>.safetensors``; the audio key hashes the file's resolved path, size
and modification time, so an edited audio file is encoded again, and the encoder digest hashes every weight,
so another encoder never reads these outputs. A bounded in-memory LRU sits in front of the files.

Values never change once written: a resumed run reads exactly what the interrupted one computed, which keeps
resume exact (outputs computed in a batch can differ in the last bits from outputs computed alone).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from speechbraid.errors import CheckpointError
from speechbraid.files import atomic_path

TENSOR = "frames"


def weights_digest(module: torch.nn.Module) -> str:
    """A hex digest of every tensor of ``module``'s state dict (names and bytes)."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def audio_key(path: str) -> str:
    resolved = Path(path).resolve()
    try:
        stat = resolved.stat()
    except OSError as exc:
        raise CheckpointError(f"cannot read audio for the encoder store: {exc.strerror}", path) from None
    text = f"{resolved}\0{stat.st_size}\0{stat.st_mtime_ns}"
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


class EncoderOutputStore:
    """A mapping audio path -> encoder output ``(frames, dim)`` backed by files (see the module docstring).

    ``max_bytes`` bounds the in-memory copies (least recently used are dropped; the files stay).
    """

    def __init__(self, root: str | Path, encoder: torch.nn.Module, max_bytes: int = 2 << 30) -> None:
        self.directory = Path(root).expanduser() / weights_digest(encoder)
        self.max_bytes = max_bytes
        self._memory: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._bytes = 0

    def _file(self, path: str) -> Path:
        return self.directory / f"{audio_key(path)}.safetensors"

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and (path in self._memory or self._file(path).is_file())

    def __getitem__(self, path: str) -> torch.Tensor:
        if path in self._memory:
            self._memory.move_to_end(path)
            return self._memory[path]
        file = self._file(path)
        try:
            tensor = load_file(str(file))[TENSOR]
        except FileNotFoundError:
            raise KeyError(path) from None
        except (OSError, SafetensorError, KeyError) as exc:
            raise CheckpointError(f"corrupt encoder output for {path} ({exc}); delete the file to recompute it",
                                  file) from None
        self._remember(path, tensor)
        return tensor

    def __setitem__(self, path: str, tensor: torch.Tensor) -> None:
        tensor = tensor.detach().to("cpu", torch.float32).contiguous()
        with atomic_path(self._file(path), suffix=".safetensors") as tmp:  # readers see no file or a whole one
            save_file({TENSOR: tensor}, str(tmp))
        self._remember(path, tensor)

    def __bool__(self) -> bool:
        return True  # a store is usable even while empty (``if cache:`` must not treat it as absent)

    def _remember(self, path: str, tensor: torch.Tensor) -> None:
        if path in self._memory:
            return
        self._memory[path] = tensor
        self._bytes += tensor.numel() * tensor.element_size()
        while self._bytes > self.max_bytes and len(self._memory) > 1:
            _, dropped = self._memory.popitem(last=False)
            self._bytes -= dropped.numel() * dropped.element_size()

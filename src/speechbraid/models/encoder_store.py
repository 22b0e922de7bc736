"""Encoder outputs kept on disk: computed once per audio and encoder weights, reused by every run.

A frozen pretrained encoder (whisper-base) gives the same output for an audio file in every run and study
row, and encoding is the dearest part of a CPU step. The store lives under ``root/<encoder digest>/``:

- ``shard-<id>.safetensors``: many outputs each, one tensor ``(frames, dim)`` float32 per audio, named by its
  audio key; read memory-mapped (``safe_open``), so a store larger than RAM costs only what is read;
- ``index.json``: which shard holds each audio key, each shard's size, and what made the outputs (the encoder's
  weights digest, its name and config, the feature config). Rewritten atomically after a shard is complete,
  under a file lock, so readers (and resumed precomputes) see only whole shards and concurrent writers (DDP
  ranks filling one store) lose nothing. A shard file without an index entry is an interrupted write: unseen.

The audio key hashes the file's resolved path, size and modification time, so an edited audio file is encoded
again; the digest hashes every encoder weight, so another encoder never reads these outputs. A bounded in-memory
LRU sits in front of the shards.

Two modes: ``fill`` (the trainer encodes what is missing and stores it, one shard per batch: fine for small
runs) and ``read-only`` (every output must have been precomputed by ``speechbraid features --kind encoder``;
a missing record, a removed shard or a damaged one is an error naming it, never a re-encode).

Values never change once written: a resumed run reads exactly what the interrupted one computed, which keeps
resume exact (outputs computed in a batch can differ in the last bits from outputs computed alone).

Stores written before shards existed (one ``<audio key>.safetensors`` per output) are not read: their outputs
are encoded again into shards; the old files can be deleted.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import secrets
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from speechbraid.data.audio import audio_file
from speechbraid.errors import CheckpointError, ConfigError
from speechbraid.files import atomic_path, atomic_write_text

FORMAT = 2  # of index.json; 1 was one file per output
INDEX = "index.json"
LOCK = ".lock"
MODES = ("fill", "read-only")
OPEN_SHARDS = 32  # memory-mapped shard handles kept open (each maps its whole file, but pages in only what is read)
Mode = Literal["fill", "read-only"]


@dataclass
class PrecomputeConfig:
    """``speechbraid features --kind encoder``: which encoder, where its outputs go, how they are written."""

    model: str = "whisper-base"  # the encoder: a registered model name (whisper-base) or a saved speech LLM directory
    # the encoder's matmul precision, as the training run's model.encoder_precision (outputs of two precisions are
    # stored apart); default: a saved model's own, fp32 for a bare Whisper checkpoint (configs/asr_default.yaml: auto)
    precision: Literal["auto", "bf16", "fp32"] | None = None
    store: str | None = None  # store root (default $SPEECHBRAID_HOME/encoder_outputs, where training looks too)
    batch: int = 8  # audio files encoded together (files of similar size are batched together)
    shard_mb: float = 256.0  # a shard is closed once its outputs reach this many MB

    def __post_init__(self) -> None:
        if self.batch < 1 or self.shard_mb <= 0:
            raise ConfigError(f"need batch >= 1 and shard_mb > 0, got {self.batch} and {self.shard_mb}")


def weights_digest(module: torch.nn.Module) -> str:
    """A hex digest of every tensor of ``module``'s state dict (names and bytes), of the dtype an encoder
    computes in on its device when that is not plain fp32 (bf16 outputs differ from fp32 ones), and of its
    ``computation`` tag where it has one (how its outputs are computed beyond the weights)."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    dtype = compute_precision(module)
    if dtype is not None:
        digest.update(f"\0compute {dtype}".encode())
    computation = getattr(module, "computation", None)
    if computation is not None:
        digest.update(f"\0computation {computation}".encode())
    return digest.hexdigest()


def compute_precision(encoder: torch.nn.Module) -> str | None:
    """The autocast dtype (``"bfloat16"``) ``encoder`` runs its matmuls in on the device its weights are on; None
    for fp32."""
    dtype_of = getattr(encoder, "compute_dtype", None)
    if dtype_of is None:
        return None
    dtype = dtype_of(next(encoder.parameters()).device)
    return str(dtype).removeprefix("torch.") if dtype is not None else None


def audio_key(path: str) -> str:
    container = audio_file(path)  # a tar shard's member is keyed by the shard's file and the member's name
    resolved = container.resolve()
    try:
        stat = resolved.stat()
    except OSError as exc:
        raise CheckpointError(f"cannot read audio for the encoder store: {exc.strerror}", path) from None
    member = str(path)[len(str(container)):]
    text = f"{resolved}{member}\0{stat.st_size}\0{stat.st_mtime_ns}"
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def default_root() -> Path:
    from speechbraid.models.registry import speechbraid_home

    return speechbraid_home() / "encoder_outputs"


def describe_encoder(encoder: torch.nn.Module) -> dict[str, Any]:
    """The encoder's class and shape, recorded in the index (what a reader of the store wants to know)."""
    config = getattr(encoder, "cfg", None) or getattr(encoder, "config", None)
    if hasattr(config, "to_dict"):  # an HF config
        config = config.to_dict()
    elif config is not None and hasattr(config, "__dataclass_fields__"):
        from dataclasses import asdict

        config = asdict(config)
    return {"class": type(encoder).__name__, "config": json.loads(json.dumps(config, default=str))}


class EncoderOutputStore:
    """A mapping audio path -> encoder output ``(frames, dim)`` backed by shards (see the module docstring).

    ``max_bytes`` bounds the in-memory copies (least recently used are dropped; the shards stay). ``name`` (the
    encoder's model name or directory) and ``features`` (a feature config's dict) are recorded in the index and
    shown in errors; ``features`` is also checked against what the stored outputs were computed from.
    """

    def __init__(self, root: str | Path, encoder: torch.nn.Module, max_bytes: int = 2 << 30, *,
                 mode: Mode = "fill", name: str | None = None, features: Mapping[str, Any] | None = None) -> None:
        if mode not in MODES:
            raise ConfigError(f"encoder store mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.root = Path(root).expanduser()
        self.digest = weights_digest(encoder)
        self.directory = self.root / self.digest
        self.index_path = self.directory / INDEX
        self.max_bytes = max_bytes
        self.mode = mode
        self.identity = {"digest": self.digest,
                         "encoder": describe_encoder(encoder) | {"name": name, "compute": compute_precision(encoder)},
                         "features": dict(features) if features is not None else None}
        self._memory: OrderedDict[str, torch.Tensor] = OrderedDict()  # audio path -> output
        self._bytes = 0
        self._shards: list[dict[str, Any]] = []  # {"file", "records", "bytes"}, in index order
        self._records: dict[str, int] = {}  # audio key -> shard number
        self._seen: tuple[int, int] | None = None  # (mtime_ns, size) of the index last read
        self._open: OrderedDict[int, Any] = OrderedDict()  # shard number (stable: shards are only appended) -> handle
        self._described: dict[str, Any] = {}  # the index's own encoder/features description, once there is one
        self.reads = 0  # outputs read from shards (not from the in-memory copies)
        self._refresh()

    # -- reading -------------------------------------------------------------------------------------------------

    def __contains__(self, path: object) -> bool:
        if not isinstance(path, str):
            return False
        if self.mode == "read-only":
            # the store is the only source of outputs: every lookup goes to __getitem__, which names what is missing
            return True
        if path in self._memory:
            return True
        key = audio_key(path)
        if key not in self._records:
            self._refresh()  # another process (a DDP rank) may have added it
        return key in self._records

    def __getitem__(self, path: str) -> torch.Tensor:
        if path in self._memory:
            self._memory.move_to_end(path)
            return self._memory[path]
        key = audio_key(path)
        if key not in self._records:
            self._refresh()
        if key not in self._records:
            if self.mode == "fill":
                raise KeyError(path)
            raise self._missing(path, key)
        tensor = self._read(self._records[key], key, path)
        self._remember(path, tensor)
        return tensor

    def __len__(self) -> int:
        return len(self._records)

    def __bool__(self) -> bool:
        return True  # a store is usable even while empty (``if cache:`` must not treat it as absent)

    def close(self) -> None:
        """Unmap every open shard (they are opened again on the next read)."""
        self._open.clear()

    @property
    def shard_files(self) -> list[Path]:
        return [self.directory / shard["file"] for shard in self._shards]

    def check(self, audio: Iterable[tuple[str, str]]) -> int:
        """Before training: every ``(audio path, where it is used)`` must have a stored output in a shard that is
        present with its recorded size. Raises :class:`CheckpointError` naming the first missing records (and
        where they are used) or the missing/damaged shard file; returns the number of distinct audio checked."""
        missing: list[tuple[str, str]] = []
        used: dict[int, tuple[str, str]] = {}  # shard -> one audio read from it (for the message)
        seen: set[str] = set()
        for path, where in audio:
            if path in seen:
                continue
            seen.add(path)
            key = audio_key(path)
            if key not in self._records:
                missing.append((path, where))
            else:
                used.setdefault(self._records[key], (path, where))
        if missing:
            shown = "\n  ".join(f"{path} ({where})" for path, where in missing[:5])
            raise self._missing(missing[0][0], audio_key(missing[0][0]),
                                f"{len(missing)} of {len(seen)} audio file(s) have no stored encoder output:\n  "
                                f"{shown}\n")
        for number, (path, where) in sorted(used.items()):
            self._check_shard(number, f"audio {path} ({where})")
        return len(seen)

    def _read(self, number: int, key: str, path: str) -> torch.Tensor:
        what = f"audio {path} (key {key})"
        handle = self._handle(number, what)
        self.reads += 1
        try:
            return handle.get_tensor(key)
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"corrupt encoder-output shard ({exc}) while reading {what}; {self._redo()}",
                                  self.shard_files[number]) from None
        except KeyError:  # safetensors 0.4 raises SafetensorError, later ones KeyError
            raise CheckpointError(f"shard does not hold {what} although {self.index_path} says it does; "
                                  f"{self._redo()}", self.shard_files[number]) from None

    def _handle(self, number: int, what: str) -> Any:
        if number in self._open:
            self._open.move_to_end(number)
            return self._open[number]
        self._check_shard(number, what)
        file = self.shard_files[number]
        try:
            handle = safe_open(str(file), framework="pt")
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"corrupt encoder-output shard ({exc}), needed for {what}; {self._redo()}",
                                  file) from None
        self._open[number] = handle
        while len(self._open) > OPEN_SHARDS:
            self._open.popitem(last=False)
        return handle

    def _check_shard(self, number: int, what: str) -> None:
        shard, file = self._shards[number], self.shard_files[number]
        try:
            size = file.stat().st_size
        except FileNotFoundError:
            raise CheckpointError(f"encoder-output shard is missing ({shard['records']} records listed in "
                                  f"{self.index_path}), needed for {what}; {self._redo()}", file) from None
        if size != shard["bytes"]:
            raise CheckpointError(f"corrupt encoder-output shard: {size} bytes, {self.index_path} records "
                                  f"{shard['bytes']} (truncated or replaced?), needed for {what}; {self._redo()}",
                                  file)

    def _redo(self) -> str:
        return ("run the precompute again, which re-encodes what missing or damaged shards held: "
                f"{self.precompute_hint()}")

    def damaged(self) -> set[int]:
        """Numbers of the shards whose file is gone, has another size than recorded, or has an unreadable header
        (their records count as missing for :func:`precompute`, which encodes them into new shards)."""
        bad = set()
        for number, file in enumerate(self.shard_files):
            try:
                self._check_shard(number, "")
                with safe_open(str(file), framework="pt"):
                    pass
            except (CheckpointError, SafetensorError, OSError):
                bad.add(number)
        return bad

    def stored(self, paths: Iterable[str], damaged: Collection[int] = ()) -> set[str]:
        """Those of ``paths`` whose output the index lists in a shard not in ``damaged``."""
        self._refresh()
        return {path for path in paths if self._records.get(audio_key(path), -1) not in {-1, *damaged}}

    def precompute_hint(self) -> str:
        name = self.identity["encoder"]["name"] or "MODEL"
        precision = " --precision bf16" if self.identity["encoder"]["compute"] else " --precision fp32"
        return f"speechbraid features --kind encoder --model {name}{precision} --store {self.root} MANIFEST..."

    def _missing(self, path: str, key: str, detail: str | None = None) -> CheckpointError:
        """The read-only error for outputs that were never precomputed (naming the store, and what else is there)."""
        if not self._shards:
            others = [f"{index.parent.name} ({_encoder_name(index.parent)})"
                      for index in sorted(self.root.glob(f"*/{INDEX}")) if index.parent.name != self.digest]
            elsewhere = f"; the root holds outputs of other encoder weights: {', '.join(others)}" if others else ""
            return CheckpointError(
                f"{detail or ''}no encoder outputs were precomputed for this encoder (weights digest {self.digest}) "
                f"under {self.root}{elsewhere}. Encoder store mode read-only never encodes: run "
                f"`{self.precompute_hint()}` with the encoder this run uses", self.directory)
        detail = detail or f"no stored encoder output for audio {path} (key {key}); "
        return CheckpointError(f"{detail}encoder store mode read-only never encodes: run "
                               f"`{self.precompute_hint()}` over the manifests that hold it (finished shards are kept)",
                               self.index_path)

    # -- writing -------------------------------------------------------------------------------------------------

    def __setitem__(self, path: str, tensor: torch.Tensor) -> None:
        self.update({path: tensor})

    def update(self, outputs: Mapping[str, torch.Tensor]) -> None:
        """Store ``outputs`` (audio path -> output) as one new shard, visible to readers only once complete."""
        if self.mode != "fill":
            raise CheckpointError(f"encoder store mode read-only: not storing outputs for {', '.join(outputs)}",
                                  self.index_path)
        if not outputs:
            return
        tensors: dict[str, torch.Tensor] = {}
        for path, tensor in outputs.items():
            # a private float32 copy on the CPU: slices of one batch share memory, which safetensors refuses
            tensors[audio_key(path)] = tensor.detach().to(device="cpu", dtype=torch.float32, copy=True).contiguous()
        self._write_shard(tensors)
        for path, tensor in zip(outputs, tensors.values(), strict=True):
            self._remember(path, tensor)

    def _write_shard(self, tensors: dict[str, torch.Tensor]) -> None:
        file = f"shard-{secrets.token_hex(8)}.safetensors"  # unique: concurrent writers never collide
        target = self.directory / file
        with atomic_path(target, suffix=".safetensors") as tmp:
            save_file(tensors, str(tmp), metadata={"encoder_digest": self.digest})
        with self._locked():
            self._refresh()
            # another writer may have stored some; records of damaged shards are replaced
            damaged = self.damaged() if any(key in self._records for key in tensors) else set()
            new = [key for key in tensors if self._records.get(key, -1) in {-1, *damaged}]
            if not new:
                target.unlink()
                return
            number = len(self._shards)
            self._shards.append({"file": file, "records": len(tensors), "bytes": target.stat().st_size})
            self._records.update(dict.fromkeys(new, number))
            # the first writer's description stays (a later writer may know the encoder by another name)
            index = {"format": FORMAT, **self.identity, **self._described, "shards": self._shards,
                     "records": self._records}
            atomic_write_text(self.index_path, json.dumps(index, separators=(",", ":")))
            self._seen = _stamp(self.index_path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / LOCK, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _refresh(self) -> None:
        """Re-read the index if it changed since it was last read (an atomic rename: always a whole one)."""
        stamp = _stamp(self.index_path)
        if stamp is None or stamp == self._seen:
            return
        try:
            index = json.loads(self.index_path.read_text(encoding="utf-8"))
            shards, records = list(index["shards"]), dict(index["records"])
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CheckpointError(f"corrupt encoder-store index ({exc}); remove {self.directory} and precompute again",
                                  self.index_path) from None
        if int(index.get("format", 0)) != FORMAT:
            raise CheckpointError(f"encoder-store index of format {index.get('format')}, this version reads "
                                  f"{FORMAT}", self.index_path)
        if index.get("digest") != self.digest:  # a renamed or copied directory: its outputs are another encoder's
            raise CheckpointError(f"the index was written for encoder weights {index.get('digest')}, but lies in the "
                                  f"directory of weights {self.digest}; never read it as this encoder's outputs",
                                  self.index_path)
        ours, theirs = self.identity["features"], index.get("features")
        if ours is not None and theirs is not None and ours != theirs:
            raise CheckpointError(f"outputs computed from features {theirs}, this run uses {ours}; use another "
                                  "store root", self.index_path)
        self._shards, self._records, self._seen = shards, records, stamp
        self._described = {key: index[key] for key in ("encoder", "features") if key in index}

    def _remember(self, path: str, tensor: torch.Tensor) -> None:
        if path in self._memory or self.max_bytes <= 0:
            return
        self._memory[path] = tensor
        self._bytes += tensor.numel() * tensor.element_size()
        while self._bytes > self.max_bytes and len(self._memory) > 1:
            _, dropped = self._memory.popitem(last=False)
            self._bytes -= dropped.numel() * dropped.element_size()


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_size


def _encoder_name(directory: Path) -> str:
    """The encoder name an index records (for listing the stores under a root)."""
    try:
        index = json.loads((directory / INDEX).read_text(encoding="utf-8"))
        return f"{index['encoder'].get('name') or index['encoder']['class']}, {len(index['records'])} records"
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        return "unreadable index"


def precompute(store: EncoderOutputStore, encoder: torch.nn.Module, features: Callable[[str], torch.Tensor],
               audio: Sequence[str], *, batch: int = 8, shard_bytes: int = 256 << 20,
               device: str | torch.device = "cpu", progress: bool = True) -> dict[str, int]:
    """Encode every audio file of ``audio`` that ``store`` lacks, ``batch`` files at a time, and store the outputs
    in shards of about ``shard_bytes``. Resumable: what finished shards hold is skipped; outputs not yet in a
    finished shard when interrupted are encoded again. Returns counts (encoded, kept, shards written)."""
    from tqdm import tqdm

    unique = list(dict.fromkeys(audio))
    stored = store.stored(unique, store.damaged())
    todo = [path for path in unique if path not in stored]
    # files of similar size together: less padding to compute (about half the time of mixed lengths)
    todo.sort(key=lambda path: (audio_file(path).stat().st_size, path))
    encoder = encoder.to(device).eval()
    pending: dict[str, torch.Tensor] = {}
    pending_bytes = shards = 0
    with tqdm(total=len(unique), initial=len(unique) - len(todo), desc="encoder outputs", unit="audio",
              disable=not progress) as bar:
        for start in range(0, len(todo), batch):
            paths = todo[start:start + batch]
            feats = [features(path) for path in paths]
            lengths = torch.tensor([f.shape[0] for f in feats], device=device)
            padded = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True).to(device)
            with torch.no_grad():
                out, out_lengths = encoder(padded, lengths)
            for row, path in enumerate(paths):
                pending[path] = out[row, : int(out_lengths[row])].cpu()  # device memory is freed batch by batch
                pending_bytes += pending[path].numel() * 4
            if pending_bytes >= shard_bytes:
                store.update(pending)
                pending, pending_bytes, shards = {}, 0, shards + 1
            bar.update(len(paths))
        if pending:
            store.update(pending)
            shards += 1
    return {"encoded": len(todo), "kept": len(unique) - len(todo), "shards": shards}

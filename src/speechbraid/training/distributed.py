"""How a training run spreads over processes: one process, DDP (replicated weights) or FSDP2 (sharded weights).

Launched by ``torchrun`` (``WORLD_SIZE``/``RANK`` in the environment) the run joins a process group (nccl on
GPUs, gloo on CPU). Checkpoints keep one format whatever the mode: full weights in ``model.safetensors`` and the
optimizer state keyed by parameter index, as a single process writes them. Under FSDP every rank takes part in
gathering them (``torch.distributed.checkpoint.state_dict`` with ``full_state_dict``), rank 0 writes them, and
on resume every rank reads the full state and keeps its own shard.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import nn

from speechbraid.errors import ConfigError

Mode = Literal["ddp", "fsdp"]


class Parallel:
    """The process group of a run and the one place that knows how its model is wrapped (``mode`` counts only
    when ``world > 1``: one process trains the plain model)."""

    def __init__(self, mode: Mode = "ddp", device: torch.device | None = None) -> None:
        if mode not in ("ddp", "fsdp"):
            raise ValueError(f"unknown distributed mode {mode!r}; choose ddp or fsdp")
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.mode = mode
        self.device = device or torch.device("cpu")
        if self.world > 1 and not dist.is_initialized():
            if self.device.type == "cuda":
                self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
                torch.cuda.set_device(self.device)
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        self._sharded = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        """True once the model's parameters are FSDP shards (state dicts then need every rank)."""
        return self._sharded

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module to call for a forward pass. DDP: a fresh wrapper (call again when the trainable set changes,
        DDP registers its gradient hooks on the parameters that train at construction). FSDP: ``model`` itself,
        sharded in place on the first call: each transformer block of the LLM is one unit (gathered just for its
        own forward and backward), everything else (encoder, adapter, embeddings, head) the root unit."""
        if self.world == 1:
            return model
        if self.mode == "ddp":
            # text-only batches leave the encoder unused, so DDP must tolerate unused parameters
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            return nn.parallel.DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=True)
        if not self._sharded:
            from torch.distributed.fsdp import fully_shard

            for block in _transformer_blocks(model):
                fully_shard(block)
            fully_shard(model)
            # a rank whose micro-batches were all text leaves the encoder without gradients; reduce-scattering
            # zeros for it keeps every rank's collectives the same length
            model.set_reduce_scatter_unused_params(True)  # type: ignore[operator]
            self._sharded = True
        return model

    @contextlib.contextmanager
    def gradient_sync(self, module: nn.Module, sync: bool) -> Iterator[None]:
        """Average gradients over ranks in this backward only when ``sync`` (the last micro-batch of a step);
        earlier micro-batches accumulate locally."""
        if self.world == 1 or sync:
            if self.sharded:
                module.set_requires_gradient_sync(True)  # type: ignore[operator]
            yield
        elif isinstance(module, nn.parallel.DistributedDataParallel):
            with module.no_sync():
                yield
        else:
            module.set_requires_gradient_sync(False)  # type: ignore[operator]
            yield

    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sums over ranks (float64, so token counts stay exact)."""
        if self.world == 1:
            return [float(v) for v in values]
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(tensor)
        return tensor.tolist()

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    # --- checkpoint state in the single-process format -----------------------------------------------------------

    def model_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Full weights on CPU, on rank 0 (``{}`` elsewhere); every rank must call it."""
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        full = get_model_state_dict(model, options=_full_options())
        if full:  # gathered tied weights are separate copies: share them again, so the file stores them once
            first: dict[int, str] = {}
            for name, param in model.named_parameters(remove_duplicate=False):
                if id(param) in first:
                    full[name] = full[first[id(param)]]
                else:
                    first[id(param)] = name
        return full

    def load_model_state(self, model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
        """Load full weights (every rank passes them) into the sharded model; strict."""
        from torch.distributed.checkpoint.state_dict import set_model_state_dict

        set_model_state_dict(model, dict(state), options=_full_options(load=True))

    def optimizer_state(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """The full optimizer state on rank 0 keyed by parameter index, as ``optimizer.state_dict()`` of one
        process keys it (``{}`` elsewhere); every rank must call it."""
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        by_name = get_optimizer_state_dict(model, optimizer, options=_full_options())
        if not by_name:
            return {}
        names = [name for group in by_name["param_groups"] for name in group["params"]]
        index = {name: i for i, name in enumerate(names)}
        return {"state": {index[name]: value for name, value in by_name["state"].items()},
                "param_groups": [{**group, "params": [index[n] for n in group["params"]]}
                                 for group in by_name["param_groups"]]}

    def load_optimizer_state(self, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        """Load an index-keyed full optimizer state (every rank passes it) into the sharded optimizer."""
        from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

        name_of = {id(p): name for name, p in model.named_parameters()}
        names = [name_of[id(p)] for group in optimizer.param_groups for p in group["params"]]
        by_name = {"state": {names[int(i)]: value for i, value in state["state"].items()},
                   "param_groups": [{**group, "params": [names[int(i)] for i in group["params"]]}
                                    for group in state["param_groups"]]}
        set_optimizer_state_dict(model, optimizer, by_name, options=_full_options(load=True))


def _full_options(load: bool = False) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    # saving gathers to rank 0 on CPU (a model that does not fit one GPU still fits host memory once); loading
    # gives every rank the full state, which it cuts to its own shard
    return StateDictOptions(full_state_dict=True, cpu_offload=not load, strict=True)


def _transformer_blocks(model: nn.Module) -> list[nn.Module]:
    """The LLM's repeated blocks: Hugging Face models name their class in ``_no_split_modules``."""
    llm = getattr(model, "llm", model)
    names = set(getattr(llm, "_no_split_modules", None) or [])
    blocks = [m for m in llm.modules() if type(m).__name__ in names]
    if not blocks:
        raise ConfigError(f"distributed=fsdp: found no transformer blocks in {type(llm).__name__} "
                          f"(its _no_split_modules is {sorted(names)})")
    return blocks

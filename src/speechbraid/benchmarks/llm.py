"""LLM figures (issue 9): the cost of one causal-LM training step (forward + backward on the same batches) with the
LLM's weights frozen, with LoRA adapters, and fully trained, and greedy KV-cache decoding speed of the bare LLM.

Training rows, each on the same ``rows x length`` batches of token ids:

- ``frozen``: no LLM weight trains; the gradient flows back to ``inputs_embeds`` only - what the adapter stage
  pays for the LLM it reads through (no optimizer step on LLM weights);
- ``lora``: peft LoRA through :func:`speechbraid.models.build.with_lora` with the LLM stage's settings of
  ``asr_default.yaml`` (r=16, alpha=32, attention projections), only LoRA weights trainable, AdamW step;
- ``lora-mlp``: the same with the MLP projections adapted too;
- ``full``: every weight trainable, AdamW step.

The rows are interleaved step by step, so machine load hits all of them alike, and are reported as ratios to the
``frozen`` row (wall and CPU time). Decoding: ``generate`` with the KV cache, greedy, a fixed number of new
tokens after a fixed-length prompt (every sequence generates all of them).
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from speechbraid.benchmarks.common import BenchStepper, Timing, bench_llm, format_table, median, peak_memory_mib, timed
from speechbraid.benchmarks.decode import UNIT_RATE
from speechbraid.device import autocast, autocast_dtype, pick_device
from speechbraid.errors import ConfigError
from speechbraid.models.build import LoraSettings, load_causal_lm, with_lora
from speechbraid.models.registry import resolve_model

DEFAULT_MODEL = "smollm2-135m"
# The LLM stage of asr_default.yaml (r, alpha, dropout; LoraSettings' attention projections). Dropout 0 there too.
PROJECT_LORA = LoraSettings(r=16, alpha=32, dropout=0.0)
MLP_PROJECTIONS = ["gate_proj", "up_proj", "down_proj"]  # Llama's MLP, the extra targets of the lora-mlp row
MODES = ("frozen", "lora", "lora-mlp", "full")


def resolve_llm(model: str | Path | None, work_dir: str | Path) -> tuple[Path, str]:
    """(causal LM directory, description for the output). A given ``model`` (directory or registered name) must
    exist; by default :data:`DEFAULT_MODEL` from the registry, else :func:`bench_llm`'s choice (``default-lm`` or
    an untrained small Llama) - speed depends on the shape, not the weights, but the shape is not SmolLM2's."""
    if model is not None:
        return resolve_model(model), str(model)
    try:
        return resolve_model(DEFAULT_MODEL), f"registered {DEFAULT_MODEL!r}"
    except ConfigError:
        pass
    # bench_llm trains its stand-in tokenizer on *.txt under a text directory; there is no corpus here
    path, note = bench_llm(work_dir, Path(work_dir) / "no-text")
    return path, f"FALLBACK, {DEFAULT_MODEL!r} is not available (no converted model): {note}"


def lora_settings() -> dict[str, LoraSettings]:
    """The two LoRA rows' settings: the project's (attention only) and the same with the MLP adapted too."""
    return {"lora": PROJECT_LORA,
            "lora-mlp": replace(PROJECT_LORA, target_modules=PROJECT_LORA.target_modules + MLP_PROJECTIONS)}


def trainable(model: torch.nn.Module) -> list[str]:
    return [name for name, p in model.named_parameters() if p.requires_grad]


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class _Row:
    """One training row: a model (the shared base LLM, or a LoRA-wrapped copy), its trainable set and its step."""

    def __init__(self, mode: str, model: Any, device: torch.device) -> None:
        self.mode = mode
        self.model = model
        self.stepper = BenchStepper(model, device)  # AdamW over trainable weights; frozen row never steps it
        self.set_mode()
        self.trainable_params = _count(model)
        names = trainable(model)
        self.lora_only = bool(names) and all("lora_" in name for name in names)

    def set_mode(self) -> None:
        # frozen and full share the base model (one copy of the weights); LoRA copies froze their base in peft
        if self.mode in ("frozen", "full"):
            self.model.requires_grad_(self.mode == "full")
        self.model.train()

    def step(self, ids: torch.Tensor) -> None:
        if self.mode == "frozen":
            # the adapter stage: input embeddings that carry a gradient, through an LLM that trains nothing
            embeds = self.model.get_input_embeddings()(ids).detach().requires_grad_(True)
            with self.stepper.autocast():
                loss = self.model(inputs_embeds=embeds, labels=ids, use_cache=False).loss
            loss.backward()
            return
        with self.stepper.autocast():
            loss = self.model(input_ids=ids, labels=ids, use_cache=False).loss
        self.stepper.update(loss)  # backward, clip, AdamW, zero_grad: the trainer's step


def _peak_and_time(fn: Callable[[], Any], device: torch.device) -> tuple[Timing, float | None]:
    """Time ``fn()`` and read its peak memory (the reading's resets stay outside the timed span); no peak where the
    platform has no resettable RSS high-water mark."""
    times: list[Timing] = []
    try:
        peak: float | None = peak_memory_mib(lambda: times.append(timed(fn, device)), device)
    except OSError:
        peak = None
        if not times:
            times.append(timed(fn, device))
    return times[0], peak


def measure_training(llm: Any, batches: list[torch.Tensor], warmup: int, device: torch.device) -> list[dict[str, Any]]:
    """Median ms/step and positions/s of every row on the same ``batches``; rows interleaved batch by batch, the
    first ``warmup`` batches run but not counted (lazy inits, AdamW state allocation)."""
    lora = {mode: with_lora(copy.deepcopy(llm), settings) for mode, settings in lora_settings().items()}
    rows = [_Row(mode, lora.get(mode, llm), device) for mode in MODES]
    wall: dict[str, list[float]] = {r.mode: [] for r in rows}
    cpu: dict[str, list[float]] = {r.mode: [] for r in rows}
    peaks: dict[str, list[float]] = {r.mode: [] for r in rows}
    for i, ids in enumerate(batches):
        for row in rows:  # interleaved, so machine load affects every row alike
            row.set_mode()
            t, peak = _peak_and_time(lambda row=row, ids=ids: row.step(ids), device)
            if i >= warmup:
                wall[row.mode].append(t.wall)
                cpu[row.mode].append(t.cpu)
                if peak is not None:
                    peaks[row.mode].append(peak)
    positions = batches[0].numel()
    frozen_wall, frozen_cpu = median(wall["frozen"]), median(cpu["frozen"])
    table = []
    for row in rows:
        step_s = median(wall[row.mode])
        table.append({
            "mode": row.mode, "trainable_params": row.trainable_params, "trainable_m": row.trainable_params / 1e6,
            "lora_only": row.lora_only, "optimizer_step": row.mode != "frozen",
            "lora_targets": lora_settings()[row.mode].target_modules if row.mode in lora else None,
            "ms_per_step": 1000 * step_s, "positions_per_s": positions / step_s,
            "time_vs_frozen": step_s / frozen_wall, "cpu_time_vs_frozen": median(cpu[row.mode]) / frozen_cpu,
            "peak_mib": max(peaks[row.mode]) if peaks[row.mode] else None,
        })
    return table


def measure_decoding(llm: Any, prompts: torch.Tensor, new_tokens: int, pad_id: int, repeats: int,
                     device: torch.device) -> dict[str, Any]:
    """Greedy ``generate`` with the KV cache: exactly ``new_tokens`` per prompt (stopping is suppressed, so an
    untrained model does the same work as a trained one), median wall of ``repeats`` after one warm-up."""
    from transformers import GenerationConfig

    config = GenerationConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, use_cache=True,
                              pad_token_id=pad_id, eos_token_id=llm.config.eos_token_id)
    mask = torch.ones_like(prompts)
    amp = autocast_dtype(device)
    llm.eval()

    def run() -> None:
        with autocast(device, amp):
            out = llm.generate(input_ids=prompts, attention_mask=mask, generation_config=config)
        if out.shape != (prompts.shape[0], prompts.shape[1] + new_tokens):
            raise RuntimeError(f"generate returned shape {tuple(out.shape)}, expected {new_tokens} new tokens each")

    run()  # warm-up
    measured = [_peak_and_time(run, device) for _ in range(repeats)]
    wall = median([t.wall for t, _ in measured])
    peaks = [p for _, p in measured if p is not None]
    generated = prompts.shape[0] * new_tokens
    return {"batch": prompts.shape[0], "prompt_tokens": prompts.shape[1], "new_tokens": new_tokens,
            "repeats": repeats, "wall_s": wall, "cpu_s": median([t.cpu for t, _ in measured]),
            "tokens_per_s": generated / wall, "ms_per_decode_step": 1000 * wall / new_tokens,
            # as if every new token were a speech unit at the project's 25 Hz: compute s per s of speech, all streams
            "rtf_25hz_units": wall / (generated / UNIT_RATE), "peak_mib": max(peaks) if peaks else None}


def bench_llm_steps(model: str | Path | None = None, *, steps: int = 3, warmup: int = 1, rows: int = 4,
                    length: int = 384, decode_batch: int = 8, prompt_tokens: int = 128, new_tokens: int = 64,
                    device: str | None = None, seed: int = 0) -> dict[str, Any]:
    """All figures (module docstring) as one JSON-able dict. ``model``: a causal LM directory or registered name
    (default :data:`DEFAULT_MODEL`, else a stand-in, see :func:`resolve_llm`)."""
    if min(steps, rows, length, decode_batch, prompt_tokens, new_tokens) < 1 or warmup < 0:
        raise ConfigError("steps, rows, length, decode batch, prompt and new tokens must be >= 1, warmup >= 0")
    dev = pick_device(device)
    with tempfile.TemporaryDirectory(prefix="speechbraid-bench-") as tmp:
        llm_dir, note = resolve_llm(model, tmp)
        torch.manual_seed(seed)
        llm, tokenizer = load_causal_lm(llm_dir)
    llm.to(dev)
    # Random ids over the tokenizer's vocabulary: a dense LM does the same work whichever ids it reads.
    vocab = min(len(tokenizer), llm.get_input_embeddings().num_embeddings)
    generator = torch.Generator().manual_seed(seed)
    batches = [torch.randint(vocab, (rows, length), generator=generator).to(dev) for _ in range(warmup + steps)]
    prompts = torch.randint(vocab, (decode_batch, prompt_tokens), generator=generator).to(dev)
    parameters = sum(p.numel() for p in llm.parameters())
    training = measure_training(llm, batches, warmup, dev)
    pad_id = next((i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id) if i is not None), 0)
    decoding = measure_decoding(llm, prompts, new_tokens, pad_id, steps, dev)
    return {"device": str(dev), "autocast": str(autocast_dtype(dev)).removeprefix("torch."), "model": note,
            "parameters_m": parameters / 1e6, "layers": llm.config.num_hidden_layers,
            "hidden": llm.config.hidden_size, "rows": rows, "length": length, "steps": steps, "warmup": warmup,
            "lora": asdict(PROJECT_LORA) | {"mlp_targets": MLP_PROJECTIONS}, "training": training,
            "decode": decoding}


def format_llm(result: dict[str, Any]) -> str:
    lora = result["lora"]
    dec = result["decode"]
    return "\n\n".join([
        f"Device {result['device']} (autocast {result['autocast']}); LLM: {result['model']}\n"
        f"{result['parameters_m']:.1f}M parameters, {result['layers']} layers, hidden {result['hidden']}",
        f"Training step, fwd+bwd (median of {result['steps']} steps after {result['warmup']} warm-up, rows "
        f"interleaved; {result['rows']} rows x {result['length']} positions; LoRA r={lora['r']} alpha={lora['alpha']} "
        f"on {'/'.join(lora['target_modules'])}, lora-mlp adds {'/'.join(lora['mlp_targets'])}; AdamW in every row "
        f"but frozen; peak_mib: step peak over what is held, RSS on CPU)\n"
        + format_table(result["training"], ["mode", "trainable_m", "ms_per_step", "positions_per_s",
                                            "time_vs_frozen", "cpu_time_vs_frozen", "peak_mib"]),
        f"Greedy decoding with the KV cache (HF generate; batch {dec['batch']}, {dec['prompt_tokens']}-token prompt, "
        f"{dec['new_tokens']} new tokens; median of {dec['repeats']} after one warm-up; rtf: compute s per s of "
        f"speech if each token were a {UNIT_RATE:g} Hz unit)\n"
        + format_table([dec], ["batch", "prompt_tokens", "new_tokens", "wall_s", "tokens_per_s",
                               "ms_per_decode_step", "rtf_25hz_units", "peak_mib"]),
    ])

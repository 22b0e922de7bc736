"""Training figures: step throughput of the speech LLM against the bare LLM on the same packed batches,
packing efficiency of the online packer against plain padding, achieved FLOP/s against a plain matmul, and the
step throughput with the frozen encoder's outputs read from the disk store against the same outputs in RAM.

Every figure is a ratio of two measurements taken side by side in one run (the rows of one step are
interleaved batch by batch), so shared-machine noise hits both sides alike.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from speechbraid.batching.collate import BraidBatch, FlatBraid, collate
from speechbraid.benchmarks.common import (
    DEFAULT_CORPUS,
    BenchCorpus,
    BenchStepper,
    Timing,
    bench_setup,
    format_table,
    median,
    timed,
)
from speechbraid.device import autocast_dtype, pick_device
from speechbraid.layouts.tokenizer import HFTextTokenizer
from speechbraid.models.encoder_store import EncoderOutputStore
from speechbraid.models.encoders import ConformerConfig
from speechbraid.models.speech_llm import SpeechLLM
from speechbraid.training.data import BraidSource, MixSampler, PackedBatcher, SourceConfig
from speechbraid.training.trainer import DataConfig, FeatureCache

ASSEMBLY_TARGET = 0.10  # acceptable extra time of the speech step (encoder outputs cached) over the bare LLM
PACKING_TARGET = 0.95  # acceptable non-padding fraction of packed batches
STORE_TARGET = 0.9  # acceptable step throughput reading encoder outputs from the disk store, relative to RAM
MIX_LAYOUTS = ("asr", "word-il", "text")

# Which parameters each measured step trains. "bare": the LLM alone on token ids; "cached": adapter + LLM
# with encoder outputs from the cache (stage-1-like data path, LLM trained too so the backward matches);
# "full": everything, encoder included (stage 2).
TRAINABLE = {"bare": [r"^llm\."], "cached": [r"^(adapter|llm)\."], "full": [".*"]}
STEP_NAMES = {"bare": "bare LLM fwd+bwd (token ids, plain causal mask)",
              "cached": "speech LLM step, encoder outputs cached",
              "full": "speech LLM step, encoder trained"}


def mix_sources(corpus: BenchCorpus, tokenizer: Any, model: SpeechLLM) -> list[BraidSource]:
    """The asr + word-il + text training mix (equal target-token shares) over the benchmark corpus."""
    text_tokenizer = HFTextTokenizer(tokenizer)
    manifests = {"asr": corpus.train, "word-il": corpus.train, "text": corpus.text}
    return [BraidSource(SourceConfig(str(manifests[layout]), layout), text_tokenizer, model.vocab, model.frame_rate)
            for layout in MIX_LAYOUTS]


def measure_packing(sources: Sequence[BraidSource], rows: int, max_len: int, batches: int,
                    seed: int = 0) -> dict[str, Any]:
    """Non-padding fraction of ``batches`` batches from :class:`PackedBatcher`, and of plain padding (one
    example per row, ``rows`` rows per batch, padded to the batch's longest) over the same examples in
    the order the mixer draws them."""
    batcher = PackedBatcher(MixSampler(sources, seed), rows, max_len)
    packed: list[BraidBatch] = []
    for _ in range(batches):
        packed.append(collate(batcher.next_batch(), max_len=max_len))
    n_examples = sum(int(b.example_ids.max(dim=1).values.sum()) for b in packed)
    sampler = MixSampler(sources, seed)  # same seed: replays the draw order the batcher saw
    examples: list[FlatBraid] = []
    for _ in range(n_examples):
        planned = sampler.next_example()
        examples.append(sampler.flatten(planned))
        sampler.account(planned)
    padded = [collate([[f] for f in examples[i:i + rows]]) for i in range(0, len(examples), rows)]

    def summary(group: list[BraidBatch]) -> dict[str, Any]:
        filled = sum(int((b.example_ids > 0).sum()) for b in group)
        total = sum(b.example_ids.numel() for b in group)
        return {"batches": len(group), "examples": n_examples, "fill": filled / total,
                "min_batch_fill": min(b.fill_ratio for b in group), "positions": total}

    return {
        "rows": rows, "max_len": max_len,
        "packed": {"method": f"PackedBatcher ({rows} rows x {max_len})", **summary(packed)},
        "padded": {"method": f"plain padding ({rows} examples/batch, to longest)", **summary(padded)},
        "target": PACKING_TARGET,
    }


class _StepRunner(BenchStepper):
    """The three measured steps on one model and optimizer; each trains the parameters of its mode."""

    def __init__(self, model: SpeechLLM, features: Callable[[str], torch.Tensor], max_len: int,
                 device: torch.device) -> None:
        super().__init__(model, device)
        self.features = features
        self.max_len = max_len

    def set_mode(self, mode: str) -> None:
        self.set_trainable(TRAINABLE[mode])

    def speech_step(self, rows: list[list[FlatBraid]]) -> BraidBatch:
        """The trainer's step: collate (features from the cache), assemble, forward, backward, AdamW."""
        batch = collate(rows, self.features, max_len=self.max_len).to(self.device)
        with self.autocast():
            loss, _ = self.model(batch)
        self.update(loss)
        return batch

    def bare_step(self, batch: BraidBatch) -> None:
        """The LLM alone on the batch's token ids (speech positions hold id 0), its own causal mask and loss."""
        with self.autocast():
            loss = self.model.llm(input_ids=batch.input_ids, labels=batch.input_ids, use_cache=False).loss
        self.update(loss)


def draw_batches(sources: Sequence[BraidSource], rows: int, max_len: int, n: int,
                 seed: int = 0) -> tuple[list[list[list[FlatBraid]]], list[Timing]]:
    """``n`` packed batches from the mix, and the time each took to draw (braid building + packing)."""
    batcher = PackedBatcher(MixSampler(sources, seed), rows, max_len)
    drawn: list[list[list[FlatBraid]]] = []
    times = [timed(lambda: drawn.append(batcher.next_batch()), "cpu") for _ in range(n)]
    return drawn, times


def measure_step_throughput(model: SpeechLLM, batches: Sequence[list[list[FlatBraid]]], draw: Sequence[Timing],
                            features: FeatureCache, max_len: int, warmup: int,
                            device: torch.device) -> dict[str, Any]:
    """Median step time of the bare LLM, the speech step with cached encoder outputs, and the full speech
    step, on the same packed ``batches`` (same positions per batch for all three); the first ``warmup``
    batches are run but not counted.

    Speech steps include the data path: drawing the batch (``draw``, timed when it was drawn) and
    collating it. Audio features and encoder outputs are cached before timing (their first computation is
    a once-per-corpus cost), so "cached" is a frozen-encoder stage in its steady state.
    """
    runner = _StepRunner(model, features, max_len, device)
    runner.set_mode("cached")
    model.encoder_cache = {}
    token_batches = []
    with torch.no_grad():
        for batch_rows in batches:
            batch = collate(batch_rows, features, max_len=max_len).to(device)
            model.prepare_inputs(batch)  # fills features and encoder-output caches
            token_batches.append(collate(batch_rows, max_len=max_len).to(device))

    seconds: dict[str, list[float]] = {mode: [] for mode in STEP_NAMES}
    cpu_seconds: dict[str, list[float]] = {mode: [] for mode in STEP_NAMES}
    positions: dict[str, list[int]] = {mode: [] for mode in STEP_NAMES}
    filled: list[int] = []
    audio_s: list[float] = []
    for i, batch_rows in enumerate(batches):
        for mode in STEP_NAMES:  # interleaved, so machine load affects the three rows alike
            runner.set_mode(mode)
            if mode == "bare":
                t = timed(lambda i=i: runner.bare_step(token_batches[i]), device)
            else:
                step = timed(lambda rows_=batch_rows: runner.speech_step(rows_), device)
                t = Timing(draw[i].wall + step.wall, draw[i].cpu + step.cpu)
            if i >= warmup:
                seconds[mode].append(t.wall)
                cpu_seconds[mode].append(t.cpu)
                positions[mode].append(token_batches[i].input_ids.numel())
        if i >= warmup:
            filled.append(int((token_batches[i].example_ids > 0).sum()))
            audio_s.append(float(token_batches[i].audio_frames.sum()) / model.frame_rate)
    model.encoder_cache = None

    bare, bare_cpu = median(seconds["bare"]), median(cpu_seconds["bare"])
    table = []
    for mode, name in STEP_NAMES.items():
        step_s = median(seconds[mode])
        row = {"mode": mode, "step": name, "ms_per_step": 1000 * step_s, "positions_per_step": positions[mode],
               "tokens_per_s": median(filled) / step_s, "overhead_vs_bare": step_s / bare - 1.0,
               "overhead_cpu_time": median(cpu_seconds[mode]) / bare_cpu - 1.0, "seconds": step_s}
        if mode != "bare":  # the bare LLM reads no audio
            row["audio_s_per_s"] = median(audio_s) / step_s
        table.append(row)
    assembly = table[1]["overhead_vs_bare"]
    return {"steps": table, "data_path_ms": 1000 * median([d.wall for d in draw[warmup:]]),
            "assembly_overhead": assembly, "assembly_overhead_cpu_time": table[1]["overhead_cpu_time"],
            "assembly_target": ASSEMBLY_TARGET, "meets_target": assembly < ASSEMBLY_TARGET}


def measure_encoder_store(model: SpeechLLM, batches: Sequence[list[list[FlatBraid]]], features: FeatureCache,
                          max_len: int, warmup: int, device: torch.device, work_dir: str | Path) -> dict[str, Any]:
    """Step time with the frozen encoder's outputs read from the on-disk store against the same outputs held in
    RAM (a dict, on the device), on the same batches, interleaved batch by batch (the order alternating).

    The store side keeps no in-memory copies (LRU budget 0): every output is read from its memory-mapped shard.
    "disk" leaves the OS page cache as it is (warm after the first read); "disk, cold" closes the shards and asks
    the kernel to drop their cached pages (``posix_fadvise DONTNEED``) before every step, so each read is a
    first read. Steps are the trainer's (collate, assemble, forward, backward, AdamW; draw excluded).
    """
    runner = _StepRunner(model, features, max_len, device)
    runner.set_mode("cached")
    ram: dict[str, torch.Tensor] = {}
    model.encoder_cache = ram
    with torch.no_grad():
        for batch_rows in batches:
            model.prepare_inputs(collate(batch_rows, features, max_len=max_len).to(device))  # fills ``ram``
    root = Path(work_dir) / "encoder-store"
    EncoderOutputStore(root, model.encoder, 0).update(ram)
    store = EncoderOutputStore(root, model.encoder, 0, mode="read-only")

    def drop_page_cache() -> None:
        store.close()  # unmapped, so the kernel may drop the pages
        for file in store.shard_files:
            fd = os.open(file, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)

    sides = {"ram": ram, "disk": store, "disk, cold": store}
    seconds: dict[str, list[float]] = {side: [] for side in sides}
    cpu_seconds: dict[str, list[float]] = {side: [] for side in sides}
    for i, batch_rows in enumerate(batches):
        order = list(sides) if i % 2 == 0 else list(reversed(sides))
        for side in order:
            model.encoder_cache = sides[side]
            if side == "disk, cold":
                drop_page_cache()
            t = timed(lambda rows_=batch_rows: runner.speech_step(rows_), device)
            if i >= warmup:
                seconds[side].append(t.wall)
                cpu_seconds[side].append(t.cpu)
    model.encoder_cache = None
    ram_s, ram_cpu = median(seconds["ram"]), median(cpu_seconds["ram"])
    table = [{"source": f"encoder outputs: {side}", "ms_per_step": 1000 * median(seconds[side]),
              "throughput_vs_ram": ram_s / median(seconds[side]),
              "throughput_vs_ram_cpu_time": ram_cpu / median(cpu_seconds[side])} for side in sides]
    ratio = table[1]["throughput_vs_ram"]
    shard_mb = sum(file.stat().st_size for file in store.shard_files) / 2**20
    return {"steps": table, "outputs": len(ram), "disk_reads": store.reads, "shard_mb": shard_mb,
            "ratio": ratio, "target": STORE_TARGET, "meets_target": ratio >= STORE_TARGET}


def count_step_flops(runner: _StepRunner, mode: str, rows: list[list[FlatBraid]], tokens: BraidBatch) -> int:
    """FLOPs of one step as ``FlopCounterMode`` counts them (matmuls, convolutions, attention kernels)."""
    from torch.utils.flop_counter import FlopCounterMode

    runner.set_mode(mode)
    counter = FlopCounterMode(display=False)
    with counter:
        if mode == "bare":
            runner.bare_step(tokens)
        else:
            runner.speech_step(rows)
    return int(counter.get_total_flops())


def measure_matmul_flops(m: int, k: int, n: int, dtype: torch.dtype, device: torch.device,
                         repeats: int = 5) -> float:
    """FLOP/s of a plain ``(m, k) @ (k, n)`` matmul (median of ``repeats`` after one warm-up)."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(m, k, generator=generator).to(device, dtype)
    b = torch.randn(k, n, generator=generator).to(device, dtype)
    a @ b
    return 2.0 * m * k * n / median([timed(lambda: a @ b, device).wall for _ in range(repeats)])


def measure_flops(model: SpeechLLM, features: FeatureCache, rows: list[list[FlatBraid]], max_len: int,
                  seconds: dict[str, float], device: torch.device) -> dict[str, Any]:
    """Achieved FLOP/s of the bare and full steps (counted FLOPs / median step time) against a matmul of the
    LLM's MLP shape (all positions of a batch x hidden x intermediate) in the step's compute dtype."""
    runner = _StepRunner(model, features, max_len, device)
    tokens = collate(rows, max_len=max_len).to(device)
    cfg = model.llm.config
    hidden = cfg.hidden_size
    inner = getattr(cfg, "intermediate_size", None) or 4 * hidden
    dtype = runner.amp or torch.float32
    shape = (tokens.input_ids.numel(), hidden, inner)
    matmul = measure_matmul_flops(*shape, dtype, device)
    table = []
    for mode in ("bare", "full"):
        flops = count_step_flops(runner, mode, rows, tokens)
        achieved = flops / seconds[mode]
        table.append({"step": STEP_NAMES[mode], "gflop_per_step": flops / 1e9, "achieved_gflop_s": achieved / 1e9,
                      "matmul_gflop_s": matmul / 1e9, "ratio_to_matmul": achieved / matmul})
    return {"dtype": str(dtype).removeprefix("torch."), "matmul_shape": list(shape), "steps": table}


def bench_train(corpus_dir: str | Path = DEFAULT_CORPUS, *, steps: int = 5, warmup: int = 1,
                packing_batches: int = 200, rows: int | None = None, max_len: int | None = None,
                llm: str | Path | None = None, conformer: ConformerConfig | None = None, device: str | None = None,
                seed: int = 0) -> dict[str, Any]:
    """All training figures. ``llm`` defaults to :func:`bench_llm`'s choice, ``conformer`` to the default
    encoder, ``rows``/``max_len`` to the trainer's :class:`DataConfig` defaults."""
    if steps < 1 or warmup < 0 or packing_batches < 1:
        raise ValueError("need steps >= 1, warmup >= 0 and packing_batches >= 1")
    defaults = DataConfig()
    rows, max_len = rows or defaults.rows, max_len or defaults.max_len
    dev = pick_device(device)
    with tempfile.TemporaryDirectory(prefix="speechbraid-bench-") as tmp:
        setup = bench_setup(corpus_dir, tmp, llm=llm, conformer=conformer, device=dev, seed=seed)
        corpus, config, model, tokenizer, llm_note = (setup.corpus, setup.config, setup.model, setup.tokenizer,
                                                      setup.llm_note)
        sources = mix_sources(corpus, tokenizer, model)
        packing = measure_packing(sources, rows, max_len, packing_batches, seed)
        features = FeatureCache(config.feature_config)
        batches, draw = draw_batches(sources, rows, max_len, warmup + steps, seed)
        throughput = measure_step_throughput(model, batches, draw, features, max_len, warmup, dev)
        seconds = {row["mode"]: row["seconds"] for row in throughput["steps"]}
        flops = measure_flops(model, features, batches[0], max_len, seconds, dev)
        store = measure_encoder_store(model, batches, features, max_len, warmup, dev, tmp)
    return {
        "device": str(dev), "autocast": str(autocast_dtype(dev)).removeprefix("torch."),
        "corpus": corpus.source, "llm": llm_note,
        "parameters_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "rows": rows, "max_len": max_len, "steps": steps, "warmup": warmup,
        "throughput": throughput, "packing": packing, "flops": flops, "encoder_store": store,
    }


def format_train(result: dict[str, Any]) -> str:
    tp, pk, fl, st = result["throughput"], result["packing"], result["flops"], result["encoder_store"]
    verdict = "meets" if tp["meets_target"] else "MISSES"
    packed_fill = pk["packed"]["fill"]
    return "\n\n".join([
        f"Device {result['device']} (autocast {result['autocast']}); corpus: {result['corpus']}\n"
        f"LLM: {result['llm']}; speech LLM {result['parameters_m']:.1f}M parameters, default Conformer",
        f"Training step throughput (median of {result['steps']} steps after {result['warmup']} warm-up; "
        f"{result['rows']} rows x {result['max_len']} positions; tokens = non-padding positions)\n"
        + format_table(tp["steps"], ["step", "ms_per_step", "tokens_per_s", "audio_s_per_s", "overhead_vs_bare",
                                     "overhead_cpu_time"])
        + f"\nassembly overhead (cached encoder vs bare LLM): {100 * tp['assembly_overhead']:.1f}% wall, "
        f"{100 * tp['assembly_overhead_cpu_time']:.1f}% CPU time "
        f"({verdict} the < {100 * tp['assembly_target']:.0f}% target by wall time); data path (braids + packing) "
        f"{tp['data_path_ms']:.1f} ms/batch, included in the speech steps",
        "Packing efficiency (non-padding fraction of positions; mix " + " + ".join(MIX_LAYOUTS) + ")\n"
        + format_table([pk["packed"], pk["padded"]], ["method", "batches", "examples", "fill", "min_batch_fill"])
        + f"\npacked fill {100 * packed_fill:.1f}% ({'meets' if packed_fill >= pk['target'] else 'MISSES'} "
        f"the >= {100 * pk['target']:.0f}% target)",
        f"Achieved FLOP/s (FlopCounterMode count / median step time) vs a {fl['dtype']} matmul "
        f"{' x '.join(map(str, fl['matmul_shape']))}\n"
        + format_table(fl["steps"], ["step", "gflop_per_step", "achieved_gflop_s", "matmul_gflop_s",
                                     "ratio_to_matmul"]),
        f"Encoder-output store on disk vs in RAM (speech step, encoder frozen; {st['outputs']} outputs, "
        f"{st['shard_mb']:.1f} MB of shards, no in-memory copies on the disk side)\n"
        + format_table(st["steps"], ["source", "ms_per_step", "throughput_vs_ram", "throughput_vs_ram_cpu_time"])
        + f"\ndisk/RAM step throughput {st['ratio']:.3f} ({'meets' if st['meets_target'] else 'MISSES'} the "
        f">= {st['target']} target)",
    ])

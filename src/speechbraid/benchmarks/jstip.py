"""JSTIP figures (METHODS.md section 1): the single-pass encode+scatter trick against per-span encoding,
interleaved training throughput against ASR-only, and layout building throughput.

1. Word-level interleaving cuts speech spans out of one whole-utterance encoding
   (:meth:`SpeechLLM.prepare_inputs`). The baseline here, :func:`per_span_prepare_inputs`, instead encodes
   every speech span's own feature slice as a separate (padded) encoder batch item and places the frames
   at the span's positions. Same batches, same weights: step time, peak step memory and loss of the two.
2. Training steps with the encoder trained (stage 2) on word-il and segment-il batches against ASR-only
   batches drawn from the same manifest in the same seeded order: positions/s and audio-seconds/s; then
   the same with the encoder frozen and its outputs cached, as the default config trains.
3. Braid building rate (utterances/s) of every registered layout.

Timed rows are interleaved batch by batch, so shared-machine load hits all of them alike.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from speechbraid.batching.collate import IGNORE_INDEX, BraidBatch, collate, flatten_braid
from speechbraid.benchmarks.common import (
    DEFAULT_CORPUS,
    BenchStepper,
    Timing,
    bench_setup,
    format_table,
    in_fresh_process,
    median,
    peak_memory_mib,
    timed,
)
from speechbraid.data.manifest import read_manifest
from speechbraid.data.records import Utterance
from speechbraid.device import autocast, autocast_dtype, pick_device
from speechbraid.layouts.registry import UTTERANCE_LAYOUTS, get_layout
from speechbraid.layouts.tokenizer import HFTextTokenizer, TextTokenizer
from speechbraid.models.build import ModelConfig, build_speech_llm
from speechbraid.models.encoders import ConformerConfig
from speechbraid.models.speech_llm import PreparedInputs, SpeechLLM
from speechbraid.training.data import BraidSource, MixSampler, PackedBatcher, SourceConfig
from speechbraid.training.runtime import seed_everything
from speechbraid.training.trainer import DataConfig, FeatureCache

THROUGHPUT_TARGET = 0.9  # interleaved positions/s at least this fraction of ASR-only's
THROUGHPUT_LAYOUTS = ("asr", "word-il", "segment-il")  # the first is the reference
PAIR = {"single": "word-il", "per-span": "word-il per-span"}  # the two assemblies of word-il speech -> their step
# Timed steps of one batch index: (name, layout, assembly). "single" is the model as it is.
STEPS = (("asr", "asr", "single"), ("word-il", "word-il", "single"),
         ("word-il per-span", "word-il", "per-span"), ("segment-il", "segment-il", "single"))


# --- the per-span baseline ------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class SpeechRun:
    """One speech span as the batch lays it out: positions ``[start, start + length)`` of ``row`` read adapter
    frames ``[first, first + length)`` of audio ``audio`` (an index into ``batch.audio``)."""

    row: int
    start: int
    length: int
    audio: int
    first: int


def speech_runs(batch: BraidBatch) -> list[SpeechRun]:
    """The speech spans of a batch, in row-major position order: maximal runs of speech positions of one
    example that read consecutive frames of one audio (adjacent spans of one audio form one run, which
    covers the same audio as the two)."""
    mask, index, example = batch.speech_mask, batch.speech_index, batch.example_ids
    prev_mask = F.pad(mask[:, :-1], (1, 0), value=False)
    continues = prev_mask & (index == F.pad(index[:, :-1], (1, 0)) + 1) & (example == F.pad(example[:, :-1], (1, 0)))
    starts = mask & ~continues
    lengths = torch.bincount(torch.cumsum(starts.flatten().long(), 0)[mask.flatten()] - 1,
                             minlength=int(starts.sum()))
    grid = int(batch.audio_frames.max()) if len(batch.audio) else 1
    rows, cols = starts.nonzero(as_tuple=True)
    first_index = index[rows, cols]
    return [SpeechRun(int(r), int(c), int(n), int(i) // grid, int(i) % grid)
            for r, c, n, i in zip(rows, cols, lengths, first_index, strict=True)]


def feature_frames_per_frame(model: SpeechLLM) -> int:
    """Feature frames behind one adapter frame (the encoder's downsampling times the adapter's stacking)."""
    return int(model.encoder.downsample) * int(model.adapter.stack)


def span_feature_ranges(model: SpeechLLM, batch: BraidBatch, runs: Sequence[SpeechRun]) -> list[tuple[int, int]]:
    """Feature frames ``[start, end)`` of each run's audio: its adapter frames times
    :func:`feature_frames_per_frame`, clipped to the features there are (at least one frame per span)."""
    per_frame = feature_frames_per_frame(model)
    ranges = []
    for run in runs:
        available = int(batch.feature_lengths[run.audio])
        start = min(run.first * per_frame, available - 1)
        ranges.append((start, max(start + 1, min((run.first + run.length) * per_frame, available))))
    return ranges


def per_span_frames(model: SpeechLLM, batch: BraidBatch) -> torch.Tensor:
    """Adapter frames for every speech position, in row-major position order: ``(positions, D)``.

    Each span's features are cut by its frame range (the frames the time <-> frame rule gave it) and
    encoded as its own item of one padded encoder batch, so no span sees its neighbours' audio.
    """
    if model.encoder is None or model.adapter is None:
        raise ValueError("this model has no speech encoder, but the batch holds speech")
    if batch.features is None or batch.feature_lengths is None:
        raise ValueError("batch holds speech but no features; pass a feature function to collate()")
    runs = speech_runs(batch)
    slices = [batch.features[run.audio, start:end]
              for run, (start, end) in zip(runs, span_feature_ranges(model, batch, runs), strict=True)]
    lengths = torch.tensor([s.shape[0] for s in slices], device=batch.features.device)
    frames, frame_lengths = model.encoder(torch.nn.utils.rnn.pad_sequence(slices, batch_first=True), lengths)
    frames, _ = model.adapter(frames, frame_lengths)
    wanted = torch.tensor([run.length for run in runs], device=frames.device)
    longest = int(wanted.max())
    if frames.shape[1] < longest:  # the encoder's rounding may give a frame fewer than the time rule
        frames = F.pad(frames, (0, 0, 0, longest - frames.shape[1]))
    keep = torch.arange(longest, device=frames.device)[None, :] < wanted[:, None]
    return frames[:, :longest][keep]


def per_span_prepare_inputs(model: SpeechLLM, batch: BraidBatch) -> PreparedInputs:
    """The model's own assembly (token embeddings, masks, labels) with speech positions filled per span."""
    if batch.stream_ids is not None:
        raise ValueError("the per-span baseline covers continuous-speech batches, not parallel streams")
    inputs = model.prepare_inputs(dataclasses.replace(batch, speech_mask=torch.zeros_like(batch.speech_mask)))
    if bool(batch.speech_mask.any()):
        frames = per_span_frames(model, batch).to(inputs.inputs_embeds.dtype)
        inputs.inputs_embeds = inputs.inputs_embeds.masked_scatter(batch.speech_mask[..., None], frames)
    return inputs


def text_loss(model: SpeechLLM, inputs: PreparedInputs) -> torch.Tensor:
    """Mean next-token loss over the target positions of prepared inputs (what ``model(batch)`` returns)."""
    logits = model.llm(inputs_embeds=inputs.inputs_embeds, attention_mask=inputs.attention_mask,
                       position_ids=inputs.position_ids, use_cache=False).logits
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), inputs.labels.reshape(-1),
                           ignore_index=IGNORE_INDEX)


def assembly(model: SpeechLLM, name: str) -> Callable[[BraidBatch], PreparedInputs]:
    """``single``: the model's single-pass encode+scatter; ``per-span``: the baseline."""
    if name == "single":
        return model.prepare_inputs
    if name == "per-span":
        return lambda batch: per_span_prepare_inputs(model, batch)
    raise ValueError(f"unknown assembly {name!r}; choose single or per-span")


def encoder_input(model: SpeechLLM, batch: BraidBatch, name: str) -> dict[str, Any]:
    """What the encoder is fed under each assembly: items, padded feature frames and their real share."""
    if name == "single":
        lengths = [int(n) for n in batch.feature_lengths]
    else:
        lengths = [end - start for start, end in span_feature_ranges(model, batch, speech_runs(batch))]
    padded = len(lengths) * max(lengths)
    return {"items": len(lengths), "padded_frames": padded, "fill": sum(lengths) / padded}


# --- training steps -------------------------------------------------------------------------------------

class _Trainer(BenchStepper):
    """Stage-2 steps with either assembly, on one model and optimizer: every parameter trained, or (``frozen``)
    the encoder frozen with its outputs cached, as the default config trains (``configs/asr_default.yaml``)."""

    def __init__(self, model: SpeechLLM, device: torch.device, frozen: bool = False) -> None:
        super().__init__(model, device)
        self.set_trainable([r"^adapter\.", r"^llm\."] if frozen else [".*"])
        model.encoder_cache = {} if frozen else None

    def step(self, batch: BraidBatch, name: str) -> None:
        with self.autocast():
            loss = text_loss(self.model, assembly(self.model, name)(batch))
        self.update(loss)


def step_peak_memory(config: ModelConfig, batch: BraidBatch, name: str, device: str, seed: int) -> float:
    """MiB the first stage-2 step with assembly ``name`` needs on top of what is held before it (model,
    batch), AdamW's state (two copies of the weights, alike for both assemblies) included; see
    :func:`peak_memory_mib`. Meant for :func:`in_fresh_process`."""
    dev = torch.device(device)
    seed_everything(seed)
    model, _ = build_speech_llm(config)
    model.to(dev)
    batch = batch.to(dev)
    trainer = _Trainer(model, dev)
    return peak_memory_mib(lambda: trainer.step(batch, name), dev)


# --- the figures ----------------------------------------------------------------------------------------

def draw_layout_batches(manifest: Path, layout: str, tokenizer: TextTokenizer, model: SpeechLLM,
                        features: FeatureCache, rows: int, max_len: int, n: int, seed: int) -> list[BraidBatch]:
    """``n`` packed batches of one layout, records in the sampler's seeded order (the same for every layout),
    collated with features."""
    source = BraidSource(SourceConfig(str(manifest), layout), tokenizer, model.vocab, model.frame_rate)
    batcher = PackedBatcher(MixSampler([source], seed), rows, max_len)
    return [collate(batcher.next_batch(), features, max_len=max_len) for _ in range(n)]


def _examples_with_speech(batch: BraidBatch) -> int:
    rows, cols = batch.speech_mask.nonzero(as_tuple=True)
    return len(set(zip(rows.tolist(), batch.example_ids[rows, cols].tolist(), strict=True)))


def measure_steps(model: SpeechLLM, batches: dict[str, list[BraidBatch]], warmup: int,
                  device: torch.device, *, frozen: bool = False) -> dict[str, Any]:
    """Timed stage-2 steps of every row of :data:`STEPS`, interleaved batch by batch (order reversed every
    other batch); the first ``warmup`` batch indices run but are not counted. Each row keeps its per-batch
    readings, so ratios between rows can be taken batch by batch (:func:`paired_ratio`). ``frozen``: the
    encoder frozen and its outputs cached beforehand (steady state of a frozen-encoder run), single-pass rows
    only (per-span encoding cannot reuse whole-audio outputs)."""
    trainer = _Trainer(model, device, frozen)
    steps = [row for row in STEPS if not frozen or row[2] == "single"]
    if frozen:
        with torch.no_grad():
            for layout_batches in batches.values():
                for batch in layout_batches:
                    if bool(batch.speech_mask.any()):
                        model.encode_speech(batch.to(device))
    times: dict[str, list[Timing]] = {name: [] for name, _, _ in steps}
    for i in range(len(batches[THROUGHPUT_LAYOUTS[0]])):
        for name, layout, how in steps if i % 2 == 0 else reversed(steps):
            batch = batches[layout][i].to(device)
            t = timed(lambda b=batch, h=how: trainer.step(b, h), device)
            if i >= warmup:
                times[name].append(t)
    rows = {}
    for name, layout, how in steps:
        counted = batches[layout][warmup:]
        per_batch = [{"wall": t.wall, "cpu": t.cpu, "positions": int((b.example_ids > 0).sum()),
                      "audio_s": float(b.audio_frames.sum()) / model.frame_rate}
                     for t, b in zip(times[name], counted, strict=True)]
        wall, cpu = sum(t.wall for t in times[name]), sum(t.cpu for t in times[name])
        positions, audio_s = sum(r["positions"] for r in per_batch), sum(r["audio_s"] for r in per_batch)
        examples = sum(int(b.example_ids.max(dim=1).values.sum()) for b in counted)
        with_speech = sum(_examples_with_speech(b) for b in counted)
        rows[name] = {"step": name, "layout": layout, "assembly": how, "batches": len(counted),
                      "examples": examples, "speech_share": with_speech / examples, "audio_s": audio_s,
                      "ms_per_step": 1000 * median([t.wall for t in times[name]]),
                      "cpu_ms_per_step": 1000 * median([t.cpu for t in times[name]]),
                      "positions_per_s": positions / wall, "audio_s_per_s": audio_s / wall,
                      "positions_per_cpu_s": positions / cpu, "audio_s_per_cpu_s": audio_s / cpu,
                      "per_batch": per_batch}
    return rows


def paired_ratio(row: dict[str, Any], reference: dict[str, Any], amount: str | None, clock: str) -> list[float]:
    """Batch-by-batch ratios of ``row`` to ``reference`` (batches timed side by side): of the rates
    ``amount``/``clock`` seconds when ``amount`` is given, else of the step times. Returns [median, min, max]."""
    ratios = [(a[amount] / a[clock]) / (b[amount] / b[clock]) if amount else a[clock] / b[clock]
              for a, b in zip(row["per_batch"], reference["per_batch"], strict=True)]
    return [median(ratios), min(ratios), max(ratios)]


def forward_figures(model: SpeechLLM, batch: BraidBatch, name: str, device: torch.device) -> dict[str, float]:
    """Loss and forward FLOPs (``FlopCounterMode``: matmuls, convolutions, attention) of one batch under
    assembly ``name``, in eval mode (no dropout). FLOPs do not depend on machine load, so their ratios
    back up the wall-time ratios of a shared machine."""
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter, autocast(device, autocast_dtype(device)):
        loss = float(text_loss(model, assembly(model, name)(batch.to(device))))
    model.train()
    return {"loss": loss, "forward_gflop": counter.get_total_flops() / 1e9}


def measure_layout_building(records: Sequence[Utterance], tokenizer: TextTokenizer, model: SpeechLLM,
                            layouts: Sequence[str] = UTTERANCE_LAYOUTS, repeats: int = 3) -> list[dict[str, Any]]:
    """Utterances/s of building each layout's braids over ``records``, and of building + flattening them
    to positions (what the training sampler does per example): median of ``repeats`` passes, layouts
    interleaved pass by pass, after one untimed pass (tokenizer and allocator warm-up)."""
    usable = {layout: [r for r in records if get_layout(layout).lacks(r) is None] for layout in layouts}

    def build(layout: str, flatten: bool) -> None:
        for choice, record in enumerate(usable[layout]):
            braid = get_layout(layout).build(record, tokenizer, choice=choice)
            if flatten:
                flatten_braid(braid, model.vocab, model.frame_rate)

    times: dict[tuple[str, bool], list[Timing]] = {(layout, f): [] for layout in layouts for f in (False, True)}
    for rep in range(repeats + 1):
        for layout, flatten in times:
            t = timed(lambda layout=layout, flatten=flatten: build(layout, flatten), "cpu")
            if rep:
                times[layout, flatten].append(t)
    table = []
    for layout in layouts:
        n = len(usable[layout])
        built, flattened = times[layout, False], times[layout, True]
        table.append({"layout": layout, "utterances": n,
                      "utterances_per_s": n / median([t.wall for t in built]),
                      "utterances_per_cpu_s": n / median([t.cpu for t in built]),
                      "with_flatten_per_s": n / median([t.wall for t in flattened])})
    return table


def bench_jstip(corpus_dir: str | Path = DEFAULT_CORPUS, *, steps: int = 2, warmup: int = 1,
                rows: int | None = None, max_len: int | None = None, layout_utterances: int = 500,
                llm: str | Path | None = None, conformer: ConformerConfig | None = None,
                device: str | None = None, seed: int = 0) -> dict[str, Any]:
    """All JSTIP figures. ``llm`` defaults to :func:`bench_llm`'s choice, ``conformer`` to the default
    encoder, ``rows``/``max_len`` to the trainer's :class:`DataConfig` defaults (8 x 512)."""
    if steps < 1 or warmup < 0 or layout_utterances < 1:
        raise ValueError("need steps >= 1, warmup >= 0 and layout_utterances >= 1")
    defaults = DataConfig()
    rows, max_len = rows or defaults.rows, max_len or defaults.max_len
    dev = pick_device(device)
    with tempfile.TemporaryDirectory(prefix="speechbraid-bench-") as tmp:
        setup = bench_setup(corpus_dir, tmp, llm=llm, conformer=conformer, device=dev, seed=seed)
        corpus, config, model, llm_note = setup.corpus, setup.config, setup.model, setup.llm_note
        tokenizer = HFTextTokenizer(setup.tokenizer)
        records = list(read_manifest(corpus.train))[:layout_utterances]
        layouts = measure_layout_building(records, tokenizer, model)

        features = FeatureCache(config.feature_config)
        batches = {layout: draw_layout_batches(corpus.train, layout, tokenizer, model, features, rows, max_len,
                                               warmup + steps, seed) for layout in THROUGHPUT_LAYOUTS}
        word_il = batches["word-il"][warmup:]
        # per step, on the batch whose memory is measured (first measured batch of each layout)
        forward = {name: forward_figures(model, batches[layout][warmup], how, dev) for name, layout, how in STEPS}
        timing = measure_steps(model, batches, warmup, dev)
        frozen_timing = measure_steps(model, batches, warmup, dev, frozen=True)
        memory = {how: in_fresh_process(step_peak_memory, config, word_il[0], how, str(dev), seed)
                  for how in PAIR}
    encoder_feed = {how: encoder_input(model, word_il[0], how) for how in PAIR}

    # ratios are medians of batch-by-batch ratios (each pair timed side by side); [median, min, max]
    single, per_span = timing[PAIR["single"]], timing[PAIR["per-span"]]
    pair_forward = {how: forward[step] for how, step in PAIR.items()}
    speed, speed_cpu = paired_ratio(per_span, single, None, "wall"), paired_ratio(per_span, single, None, "cpu")
    trick = {"speed_ratio": speed[0], "speed_ratio_range": speed[1:], "speed_ratio_cpu_time": speed_cpu[0],
             "speed_ratio_cpu_time_range": speed_cpu[1:], "single_ms_per_step": single["ms_per_step"],
             "per_span_ms_per_step": per_span["ms_per_step"],
             "peak_step_mib": memory, "memory_ratio": memory["per-span"] / memory["single"],
             "encoder_input": encoder_feed, "forward_gflop": {h: f["forward_gflop"] for h, f in pair_forward.items()},
             "flop_ratio": pair_forward["per-span"]["forward_gflop"] / pair_forward["single"]["forward_gflop"],
             "losses": {"single": pair_forward["single"]["loss"], "per_span": pair_forward["per-span"]["loss"],
                        "relative_difference": pair_forward["per-span"]["loss"] / pair_forward["single"]["loss"] - 1.0}}
    return {
        "device": str(dev), "autocast": str(autocast_dtype(dev)).removeprefix("torch."),
        "corpus": corpus.source, "llm": llm_note,
        "parameters_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "rows": rows, "max_len": max_len, "steps": steps, "warmup": warmup,
        "memory_measure": "peak allocated (CUDA)" if dev.type == "cuda" else "resident-set high-water (fresh process)",
        "single_pass_vs_per_span": trick, "throughput": throughput_rows(timing, forward),
        "throughput_frozen_encoder": throughput_rows(frozen_timing, None), "throughput_target": THROUGHPUT_TARGET,
        "layout_building": layouts,
    }


def throughput_rows(timing: dict[str, Any], forward: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Rows of :data:`THROUGHPUT_LAYOUTS` with their paired ratios to ASR-only and, given the forward figures
    of the first measured batches, forward FLOPs per position relative to ASR-only (load-independent)."""
    reference = timing[THROUGHPUT_LAYOUTS[0]]
    throughput = []
    for layout in THROUGHPUT_LAYOUTS:
        row = dict(timing[layout])
        for amount, clock, key in (("positions", "wall", "positions_per_s"), ("audio_s", "wall", "audio_s_per_s"),
                                   ("positions", "cpu", "positions_per_cpu_s")):
            ratio = paired_ratio(row, reference, amount, clock)
            row[f"{key}_vs_asr"], row[f"{key}_vs_asr_range"] = ratio[0], ratio[1:]
        if forward is not None:
            flops = forward[layout]["forward_gflop"]  # a layout's own step: its single-pass assembly
            row["forward_gflop_first_batch"] = flops
            row["flop_per_position_vs_asr"] = (flops / row["per_batch"][0]["positions"]) / (
                forward[THROUGHPUT_LAYOUTS[0]]["forward_gflop"] / reference["per_batch"][0]["positions"])
        row["meets_target"] = row["positions_per_s_vs_asr"] >= THROUGHPUT_TARGET
        throughput.append(row)
    return throughput


def format_jstip(result: dict[str, Any]) -> str:
    trick, losses = result["single_pass_vs_per_span"], result["single_pass_vs_per_span"]["losses"]
    feed = trick["encoder_input"]
    mem = trick["peak_step_mib"]
    return "\n\n".join([
        f"Device {result['device']} (autocast {result['autocast']}); corpus: {result['corpus']}\n"
        f"LLM: {result['llm']}; speech LLM {result['parameters_m']:.1f}M parameters; stage-2 steps (everything "
        f"trained), {result['rows']} rows x {result['max_len']} positions, {result['steps']} measured batches "
        f"per row after {result['warmup']} warm-up, rows interleaved batch by batch",
        "1. word-il: single-pass encode+scatter vs per-span encoding (same batches, same weights)\n"
        + format_table([{"assembly": "single-pass", "encoder_items": feed["single"]["items"],
                         "encoder_fill": feed["single"]["fill"], "peak_step_mib": mem["single"]},
                        {"assembly": "per-span", "encoder_items": feed["per-span"]["items"],
                         "encoder_fill": feed["per-span"]["fill"], "peak_step_mib": mem["per-span"]}],
                       ["assembly", "encoder_items", "encoder_fill", "peak_step_mib"])
        + f"\nper-span / single-pass: step time x{trick['speed_ratio']:.2f} wall (per batch "
        f"x{trick['speed_ratio_range'][0]:.2f}-x{trick['speed_ratio_range'][1]:.2f}), "
        f"x{trick['speed_ratio_cpu_time']:.2f} CPU time; median step {trick['per_span_ms_per_step']:.0f} vs "
        f"{trick['single_ms_per_step']:.0f} ms; peak step memory x{trick['memory_ratio']:.2f} "
        f"({result['memory_measure']}, first measured batch); forward GFLOP on that batch "
        f"{trick['forward_gflop']['per-span']:.1f} vs {trick['forward_gflop']['single']:.1f} "
        f"(x{trick['flop_ratio']:.2f})\n"
        f"loss (same batch and weights, eval mode): single-pass {losses['single']:.4f}, per-span "
        f"{losses['per_span']:.4f} ({100 * losses['relative_difference']:+.2f}%). Per-span encoding loses the "
        "context across spans; with the freshly initialised encoder and adapter used here the losses can only "
        "show that both assemblies feed the same objective, not what that context is worth after training",
        "2. Training throughput against ASR-only (same manifest, same seeded record order; positions = "
        "non-padding; *_vs_asr = median of batch-by-batch ratios)\n"
        + format_table(result["throughput"], ["step", "examples", "speech_share", "audio_s", "ms_per_step",
                                              "positions_per_s", "audio_s_per_s", "positions_per_s_vs_asr",
                                              "audio_s_per_s_vs_asr", "positions_per_cpu_s_vs_asr",
                                              "flop_per_position_vs_asr", "meets_target"])
        + f"\ntarget: positions/s >= {result['throughput_target']:.1f}x ASR-only (wall time); "
        "flop_per_position_vs_asr: forward FLOPs per position of the first measured batch (load-independent; "
        "> 1 means more work per position than ASR-only)",
        "2b. The same with the encoder frozen and its outputs cached (how configs/asr_default.yaml trains)\n"
        + format_table(result["throughput_frozen_encoder"], ["step", "examples", "ms_per_step", "positions_per_s",
                                                             "positions_per_s_vs_asr", "audio_s_per_s_vs_asr",
                                                             "positions_per_cpu_s_vs_asr", "meets_target"]),
        "3. Layout building (braids from records; with_flatten adds the flattening to positions)\n"
        + format_table(result["layout_building"], ["layout", "utterances", "utterances_per_s",
                                                   "utterances_per_cpu_s", "with_flatten_per_s"]),
    ])

"""The training data path on generated manifests: peak memory as the manifest grows, and braids per second per
DDP rank (simulated: one process plays rank 0 of a world of 1 or 2).

The path measured is what the trainer runs before features: line index, mixer, planning, packing, layout by
position and collation (no audio is read: the records point at fake audio files). Three sources share the manifest
(asr, word-il and text, as a usual mix), and a real byte-level BPE tokenizer encodes the text.

Data workers (``data.workers``): the same path with audio reading, log-mel features and collation, built in the
training process (0) or by 1 or 2 background DataLoader workers, on a manifest whose records point at real WAVs.

Run ``python -m speechbraid.benchmarks.training_data 10000 100000 1000000`` to print the tables.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from speechbraid.benchmarks.common import in_fresh_process

MIX = ("asr", "word-il", "text")
ROWS, MAX_LEN = 8, 512  # rows x positions per micro-batch, the trainer's defaults
FRAME_RATE = 12.5
_WORDS = ("take", "aspirin", "twice", "daily", "with", "water", "and", "rest", "well", "the", "bank", "opened", "a",
          "savings", "account", "transfer", "fifty", "dollars", "today", "ibuprofen", "helps", "pain", "check",
          "balance", "of", "card")


AUDIO_VARIANTS = 4  # real WAVs per word count (write_synthetic_manifest with audio_dir)


def write_synthetic_manifest(path: str | Path, n_lines: int, seed: int = 0, audio_dir: str | Path | None = None
                             ) -> Path:
    """``n_lines`` records with word alignments (3-16 words, 0.3 s each), written line by line: memory does not
    depend on ``n_lines``. Their audio paths are fake, or with ``audio_dir`` real noise WAVs of the records' duration
    (``AUDIO_VARIANTS`` per word count, shared by the records of that count)."""
    path = Path(path)
    rng = np.random.default_rng(seed)
    if audio_dir is not None:
        from speechbraid.data.audio import write_wav

        audio_dir = Path(audio_dir)
        audio_dir.mkdir(parents=True, exist_ok=True)
        for words in range(3, 17):
            for variant in range(AUDIO_VARIANTS):
                samples = 0.1 * rng.standard_normal(int(round(0.3 * words + 0.2, 2) * 16000))
                write_wav(audio_dir / f"w{words}-{variant}.wav", samples.astype(np.float32), 16000)
    with path.open("w", encoding="utf-8") as handle:
        for start in range(0, n_lines, 10_000):  # draw the random numbers in blocks, write line by line
            count = min(10_000, n_lines - start)
            lengths = rng.integers(3, 17, count)
            picks = rng.integers(0, len(_WORDS), (count, 16))
            for k in range(count):
                words = [_WORDS[int(w)] for w in picks[k, : lengths[k]]]
                align = [{"word": w, "start": round(0.1 + 0.3 * i, 2), "end": round(0.35 + 0.3 * i, 2)}
                         for i, w in enumerate(words)]
                audio = f"/fake/audio/utt{start + k:08d}.wav" if audio_dir is None else \
                    str(Path(audio_dir) / f"w{len(words)}-{(start + k) % AUDIO_VARIANTS}.wav")
                handle.write(json.dumps({"id": f"utt{start + k:08d}", "text": " ".join(words),
                                         "audio": audio, "sample_rate": 16000,
                                         "duration": round(0.3 * len(words) + 0.2, 2), "words": align}) + "\n")
    return path


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports kB


def _tokenizer() -> Any:
    from speechbraid.layouts.tokenizer import HFTextTokenizer
    from speechbraid.models.text_lm import train_bpe_tokenizer

    return HFTextTokenizer(train_bpe_tokenizer([" ".join(_WORDS)] * 50, vocab_size=300))


def _batcher(manifest: Path, tokenizer: Any, seed: int = 0, bucket_window: int = 0) -> Any:
    from speechbraid.braid.vocab import VocabLayout
    from speechbraid.training.data import BraidSource, MixSampler, PackedBatcher, SourceConfig

    vocab = VocabLayout(text_size=len(tokenizer), num_units=0)
    sources = [BraidSource(SourceConfig(str(manifest), layout, weight=0.5 if layout == "text" else 1.0),
                           tokenizer, vocab, FRAME_RATE) for layout in MIX]
    return PackedBatcher(MixSampler(sources, seed), ROWS, MAX_LEN, bucket_window=bucket_window)


def measure_memory(manifest: str | Path, n_lines: int, batches: int = 50, in_memory_reference: bool = False
                   ) -> dict[str, Any]:
    """Peak RSS growth of opening the mix over ``manifest`` and drawing ``batches`` collated batches (run it in a
    fresh process). ``in_memory_reference`` also lists every record in memory afterwards, as the reader before lazy
    sources did, for comparison."""
    from speechbraid.batching.collate import collate
    from speechbraid.data.manifest import read_manifest

    tokenizer = _tokenizer()
    base = _max_rss_mib()
    begin = time.perf_counter()
    batcher = _batcher(Path(manifest), tokenizer)
    open_s = time.perf_counter() - begin
    begin = time.perf_counter()
    for _ in range(batches):
        collate(batcher.next_batch(), max_len=MAX_LEN)
    draw_s = time.perf_counter() - begin
    row: dict[str, Any] = {"n_lines": n_lines, "open_s": round(open_s, 2), "batches": batches,
                           "draw_s": round(draw_s, 2), "max_rss_mib": round(_max_rss_mib(), 1),
                           "growth_mib": round(_max_rss_mib() - base, 1)}
    if in_memory_reference:
        lazy_peak = _max_rss_mib()
        records = list(read_manifest(manifest))
        row["in_memory_records_mib"] = round(_max_rss_mib() - lazy_peak, 1)
        del records
    return row


def measure_throughput(manifest: str | Path, batches: int = 40,
                       worlds: tuple[int, ...] = (1, 2)) -> list[dict[str, Any]]:
    """Rank 0's data work per global micro-batch in a world of 1 or 2: it plans every batch and builds (lays out and
    collates) only its own. Also the planning alone (what a rank pays for every batch of the others)."""
    from speechbraid.batching.collate import collate

    tokenizer = _tokenizer()
    out = []
    for world in (*worlds, None):  # None: plan only
        batcher = _batcher(Path(manifest), tokenizer)
        batcher.next_batch()  # warm-up (first permutations)
        examples = built = 0
        begin = time.perf_counter()
        for k in range(batches):
            if world is not None and k % world == 0:
                rows = batcher.next_batch()
                collate(rows, max_len=MAX_LEN)
                built += 1
                examples += sum(len(r) for r in rows)
            else:
                rows = batcher.next_plan()
                examples += sum(len(r) for r in rows)
        seconds = time.perf_counter() - begin
        out.append({"world": world or "plan only", "global_batches": batches, "built_by_rank0": built,
                    "examples": examples, "examples_per_batch": round(examples / batches, 1),
                    "braids_per_s": round(examples / seconds, 1),
                    "ms_per_global_batch": round(1000 * seconds / batches, 1),
                    "ms_per_own_batch": round(1000 * seconds / max(built, 1), 1) if built else None})
    return out


def measure_bucketing(manifest: str | Path, batches: int = 300,
                      windows: tuple[int, ...] = (0, 500, 2000)) -> list[dict[str, Any]]:
    """What duration bucketing buys the encoder: its padded input (each batch's distinct audios x the longest) per
    second of real audio, for packing in draw order (window 0) and bucketed windows, over the same draws."""
    tokenizer = _tokenizer()
    out = []
    for window in windows:
        batcher = _batcher(Path(manifest), tokenizer, bucket_window=window)
        audio = padded = examples = 0.0
        begin = time.perf_counter()
        for _ in range(batches):
            plan = batcher.next_plan()
            seconds = {p.braid.audio: p.seconds for row in plan for p in row if p.seconds}
            audio += sum(seconds.values())
            padded += len(seconds) * max(seconds.values(), default=0.0)
            examples += sum(len(row) for row in plan)
        elapsed = time.perf_counter() - begin
        out.append({"bucket_window": window, "batches": batches, "examples_per_batch": round(examples / batches, 1),
                    "encoder_padding": round(padded / audio - 1, 3), "plan_braids_per_s": round(examples / elapsed)})
    return out


def measure_workers(manifest: str | Path, batches: int = 30, workers: tuple[int, ...] = (0, 1, 2)
                    ) -> list[dict[str, Any]]:
    """The data path a training step waits for, with features: batches built (layout, audio read, log-mel,
    collation) in this process or by ``workers`` background DataLoader workers, taken one after another as fast as
    they come. Features are computed for every batch (no cache: a large corpus seldom repeats an audio soon)."""
    from functools import partial

    from speechbraid.batching.collate import collate
    from speechbraid.data.features import FeatureConfig
    from speechbraid.training.loader import BatchStream

    tokenizer = _tokenizer()
    build = partial(collate, features=FeatureConfig().extract_file, max_len=MAX_LEN)
    out = []
    for count in workers:
        batcher = _batcher(Path(manifest), tokenizer)
        batcher.next_batch()  # warm-up (first permutations)
        with BatchStream(batcher, build, workers=count) as stream:
            begin = time.perf_counter()
            stream.next()  # the workers' start (fork, first batch)
            first_s = time.perf_counter() - begin
            examples, audio_s = 0, 0.0
            begin = time.perf_counter()
            for _ in range(batches):
                batch = stream.next()
                examples += int(batch.example_ids.amax(dim=1).sum())
                audio_s += float(batch.feature_lengths.sum()) / 100 if batch.feature_lengths is not None else 0.0
            seconds = time.perf_counter() - begin
        out.append({"workers": count, "batches": batches, "first_batch_s": round(first_s, 2),
                    "examples_per_batch": round(examples / batches, 1), "braids_per_s": round(examples / seconds, 1),
                    "ms_per_batch": round(1000 * seconds / batches, 1),
                    "audio_s_per_s": round(audio_s / seconds, 1)})
    return out


def bench_training_data(lines: tuple[int, ...] = (10_000, 100_000, 1_000_000), batches: int = 50,
                        throughput_lines: int = 100_000) -> dict[str, Any]:
    """Memory rows (each in a fresh process, manifests generated on disk line by line) and throughput rows."""
    with tempfile.TemporaryDirectory(prefix="speechbraid-bench-data-") as tmp:
        memory = []
        for n in lines:
            manifest = write_synthetic_manifest(Path(tmp) / f"train-{n}.jsonl", n)
            memory.append(in_fresh_process(measure_memory, manifest, n, batches, n <= 100_000)
                          | {"manifest_mib": round(manifest.stat().st_size / 2**20, 1)})
            if n != throughput_lines:
                manifest.unlink()
        manifest = Path(tmp) / f"train-{throughput_lines}.jsonl"
        if not manifest.is_file():
            write_synthetic_manifest(manifest, throughput_lines)
        throughput = in_fresh_process(measure_throughput, manifest)
        bucketing = in_fresh_process(measure_bucketing, manifest)
        audio_manifest = write_synthetic_manifest(Path(tmp) / "train-audio.jsonl", 2000, audio_dir=Path(tmp) / "wav")
        workers = in_fresh_process(measure_workers, audio_manifest)
    growth = {row["n_lines"]: row["growth_mib"] for row in memory}
    return {"memory": memory, "throughput": throughput, "bucketing": bucketing, "throughput_lines": throughput_lines,
            "workers": workers,
            "growth_smallest_to_largest_mib": round(growth[max(growth)] - growth[min(growth)], 1),
            "target_growth_mib": 64}


def format_training_data(result: dict[str, Any]) -> str:
    from speechbraid.benchmarks.common import format_table

    return "\n\n".join([
        f"Training data path memory (mix {'+'.join(MIX)} over one manifest; growth = peak RSS over the process "
        "before the sources open; in_memory_records = the records listed in memory, as before lazy sources)\n"
        + format_table(result["memory"], ["n_lines", "manifest_mib", "open_s", "draw_s", "growth_mib", "max_rss_mib",
                                          "in_memory_records_mib"])
        + f"\ngrowth from the smallest to the largest manifest: {result['growth_smallest_to_largest_mib']} MiB "
        f"(target <= {result['target_growth_mib']} MiB)",
        f"Training data path throughput per rank ({result['throughput_lines']}-line manifest, {ROWS} rows x "
        f"{MAX_LEN} positions; rank 0 plans every global batch, builds and collates its own; no features)\n"
        + format_table(result["throughput"], ["world", "global_batches", "built_by_rank0", "examples_per_batch",
                                              "braids_per_s", "ms_per_global_batch", "ms_per_own_batch"]),
        "Duration bucketing (data.bucket_window; encoder_padding = padded encoder input per second of audio - 1)\n"
        + format_table(result["bucketing"], ["bucket_window", "batches", "examples_per_batch", "encoder_padding",
                                             "plan_braids_per_s"]),
        f"Data workers (data.workers; one rank, {ROWS} rows x {MAX_LEN} positions, with audio read + 80-bin log-mel "
        "+ collation, no feature cache; batches taken back to back, so ms_per_batch is the least a training step "
        "waits for its batch; first_batch_s includes starting the workers)\n"
        + format_table(result["workers"], ["workers", "batches", "first_batch_s", "examples_per_batch",
                                           "braids_per_s", "ms_per_batch", "audio_s_per_s"]),
    ])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("n_lines", type=int, nargs="+", help="manifest sizes")
    args = parser.parse_args(argv)
    result = bench_training_data(tuple(args.n_lines), throughput_lines=min(args.n_lines))
    print(format_training_data(result))


if __name__ == "__main__":
    main()

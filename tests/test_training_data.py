"""Training sources read lazily: same draws as the in-memory reader, exact resume, bad lines named or counted,
per-rank building, sharded and lhotse manifests, and braid sizes that agree with the laid-out braids."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import zlib
from pathlib import Path

import numpy as np
import pytest

from speechbraid.batching.collate import IGNORE_INDEX, braid_size, flatten_braid
from speechbraid.braid.vocab import VocabLayout
from speechbraid.corpora.spoken_qa import SpokenQA
from speechbraid.data.manifest import read_manifest
from speechbraid.data.records import Utterance
from speechbraid.errors import InputError
from speechbraid.layouts.registry import LAYOUTS, get_layout
from speechbraid.training.data import BraidSource, MixSampler, PackedBatcher, SourceConfig

FRAME_RATE = 12.5
VOCAB = VocabLayout(text_size=100, num_units=20)
WORDS = ("take", "aspirin", "twice", "daily", "with", "water", "and", "rest", "well", "the", "bank", "opened")


class HashTokenizer:
    """One id per word, from a hash: the same text gets the same ids whatever was encoded before."""

    eos_id, bos_id = 1, 2

    def encode(self, text: str) -> list[int]:
        return [3 + zlib.crc32(w.encode()) % 90 for w in text.split()]

    def decode(self, ids: list[int]) -> str:
        return " ".join(map(str, ids))


def record(i: int, rng: np.random.Generator) -> dict:
    n = int(rng.integers(2, 9))
    words = [WORDS[int(k)] for k in rng.integers(0, len(WORDS), n)]
    align = [{"word": w, "start": round(0.1 + 0.3 * k, 3), "end": round(0.35 + 0.3 * k, 3)}
             for k, w in enumerate(words)]
    return {"id": f"u{i}", "text": " ".join(words), "audio": f"/fake/u{i}.wav", "sample_rate": 16000,
            "duration": 0.3 * n + 0.2, "words": align}


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture
def manifest(tmp_path) -> Path:
    """23 records with a blank line in the middle (blank lines are not records but count as lines)."""
    rng = np.random.default_rng(0)
    lines = [json.dumps(record(i, rng)) for i in range(23)]
    return write_lines(tmp_path / "train.jsonl", [*lines[:10], "", *lines[10:]])


def sources(paths, layouts=("asr", "word-il", "text"), weights=(1.0, 1.0, 0.5), **options) -> list[BraidSource]:
    paths = paths if isinstance(paths, list) else [paths] * len(layouts)
    return [BraidSource(SourceConfig(str(p), layout, weight=w, **options), HashTokenizer(), VOCAB, FRAME_RATE)
            for p, layout, w in zip(paths, layouts, weights, strict=True)]


def batches(batcher: PackedBatcher, n: int) -> list[list[list[tuple]]]:
    return [[[(f.id, f.tokens, f.frames, f.labels) for f in row] for row in batcher.next_batch()] for _ in range(n)]


def reference_draws(path: Path, layouts, weights, seed: int, n: int) -> list[tuple]:
    """The draws of the in-memory sampler this module replaced: records listed up front, a seeded permutation
    per source and epoch, the source furthest below its target-token share next."""
    records = list(read_manifest(path))
    shares = np.array(weights) / sum(weights)
    consumed, epochs, positions = np.zeros(len(layouts)), [0] * len(layouts), [0] * len(layouts)
    out = []
    for _ in range(n):
        s = int(np.argmin(consumed / shares))
        if positions[s] >= len(records):
            epochs[s], positions[s] = epochs[s] + 1, 0
        index = int(np.random.default_rng([seed, s, epochs[s]]).permutation(len(records))[positions[s]])
        positions[s] += 1
        rec = records[index]
        choice = int.from_bytes(hashlib.blake2b(rec.id.encode(), digest_size=8).digest(), "little")
        braid = get_layout(layouts[s]).build(rec, HashTokenizer(), choice=choice + epochs[s])
        flat = flatten_braid(braid, VOCAB, FRAME_RATE)
        consumed[s] += sum(1 for label in flat.labels if label != IGNORE_INDEX)
        out.append((s, flat.id, flat.tokens, flat.frames, flat.labels))
    return out


def test_lazy_sources_draw_what_the_in_memory_reader_drew(manifest):
    layouts, weights = ("asr", "word-il", "text"), (1.0, 1.0, 0.5)
    sampler = MixSampler(sources(manifest, layouts, weights), seed=3)
    assert len({id(s.manifest) for s in sampler.sources}) == 1  # one line index for the three sources
    drawn = []
    for _ in range(80):  # more than one epoch of the 23 records
        planned = sampler.next_example()
        flat = sampler.flatten(planned)
        sampler.account(planned)
        drawn.append((planned.key[0], flat.id, flat.tokens, flat.frames, flat.labels))
    assert drawn == reference_draws(manifest, layouts, weights, seed=3, n=80)
    assert min(sampler.epochs[:2]) >= 1  # crossed into a reshuffled epoch


def test_resume_mid_epoch_continues_exactly_and_keeps_the_skip_counts(tmp_path, manifest):
    lines = manifest.read_text().splitlines()
    lines[4] = '{"id": "broken", "text": '  # malformed JSON
    bad = write_lines(tmp_path / "bad.jsonl", lines)

    def make() -> PackedBatcher:
        return PackedBatcher(MixSampler(sources([manifest, bad], ("asr", "word-il"), (1.0, 1.0), on_bad="skip"),
                                        seed=1), rows=2, max_len=60)

    first = make()
    batches(first, 7)  # mid-epoch, with a pending example carried to the next batch
    assert first.pending is not None
    counts = {f"asr:{manifest}": 0, f"word-il:{bad}": 1}
    assert first.sampler.skipped_report() == counts  # the broken line was met before the checkpoint
    state = json.loads(json.dumps(first.state_dict()))  # as a checkpoint stores it
    expected = batches(first, 12)
    resumed = make()
    resumed.load_state_dict(state)
    assert resumed.sampler.skipped_report() == counts  # restored, not only met again
    assert batches(resumed, 12) == expected


def test_malformed_line_mid_manifest_names_file_and_line_or_is_skipped_and_counted(tmp_path, manifest):
    lines = manifest.read_text().splitlines()
    lines[6] = '{"id": "broken", "text": '  # line 7: not JSON
    lines[15] = json.dumps({"id": "noalign", "text": "take aspirin", "audio": "/fake/x.wav", "duration": 1.0})
    lines[18] = json.dumps({**json.loads(lines[18]), "text": "  "})  # line 19: empty text
    bad = write_lines(tmp_path / "bad.jsonl", lines)

    with pytest.raises(InputError, match=rf"{bad}:7: invalid record"):
        sampler = MixSampler(sources(bad, ("word-il",), (1.0,)), seed=0)
        for _ in range(len(lines)):
            sampler.next_example()

    sampler = MixSampler(sources(bad, ("word-il",), (1.0,), on_bad="skip"), seed=0)
    ids = {sampler.next_example().braid.id for _ in range(3 * 20)}
    assert ids == {json.loads(line)["id"] for k, line in enumerate(lines) if line and k not in (6, 15, 18)}
    source = sampler.sources[0]
    assert sampler.skipped_report() == {f"word-il:{bad}": 3}
    assert sorted(source.problems) == sorted([f"{bad}:7: invalid record: Expecting value: line 1 column 26 (char 25)",
                                              f"{bad}:16: [noalign] no word alignment",
                                              f"{bad}:19: [u17] empty text"])
    # asr reads the same file without words: only the malformed line and the empty text are unusable there
    assert sources(bad, ("asr",), (1.0,), on_bad="skip")[0].braid(14, 0) is not None


def test_a_source_with_nothing_usable_raises_instead_of_looping(tmp_path):
    bad = write_lines(tmp_path / "bad.jsonl", ['{"id": "a", "text": "x"}', "not json"])
    sampler = MixSampler(sources(bad, ("asr",), (1.0,), on_bad="skip"), seed=0)
    with pytest.raises(InputError, match="every record of .*bad.jsonl is unusable with layout 'asr'"):
        sampler.next_example()


def test_too_long_example_names_its_line_or_is_skipped(tmp_path, manifest):
    with pytest.raises(InputError, match=rf"{manifest}:\d+: \[u\d+\] \d+ positions, more than the context max_len=20"):
        batches(PackedBatcher(MixSampler(sources(manifest, ("asr",), (1.0,)), seed=0), rows=2, max_len=20), 3)
    batcher = PackedBatcher(MixSampler(sources(manifest, ("asr",), (1.0,), on_bad="skip"), seed=0), rows=2, max_len=20)
    drawn = batches(batcher, 4)
    assert all(len(f[1]) <= 20 for batch in drawn for row in batch for f in row)
    assert 0 < batcher.sampler.sources[0].skipped < 23


def test_each_rank_builds_only_its_own_batches_and_together_they_are_the_one_process_sequence(manifest):
    def make() -> PackedBatcher:
        return PackedBatcher(MixSampler(sources(manifest), seed=5), rows=2, max_len=80, max_audio_seconds=6.0)

    single = batches(make(), 10)
    world, built, laid_out = 2, {}, {}
    for rank in range(world):
        batcher = make()
        laid_out[rank] = 0
        flatten = batcher.sampler.flatten

        def counting(planned, flatten=flatten, rank=rank):
            laid_out[rank] += 1
            return flatten(planned)

        batcher.sampler.flatten = counting
        for k in range(10):
            if k % world == rank:
                built[k] = batches(batcher, 1)[0]
            else:
                batcher.skip_batch()
    assert [built[k] for k in range(10)] == single
    for rank in range(world):  # only its own batches' examples were laid out
        assert laid_out[rank] == sum(len(row) for k in range(rank, 10, world) for row in single[k])


def test_sharded_manifest_reads_as_one_concatenated_source(tmp_path, manifest):
    lines = [line for line in manifest.read_text().splitlines() if line]
    shards = tmp_path / "shards"
    shards.mkdir()
    write_lines(shards / "part-000.jsonl", lines[:8])
    write_lines(shards / "part-001.jsonl", ["", *lines[8:15]])
    with gzip.open(shards / "part-002.jsonl.gz", "wt", encoding="utf-8") as handle:
        handle.write("".join(line + "\n" for line in lines[15:]))
    (shards / "notes.txt").write_text("not a shard")
    whole = write_lines(tmp_path / "whole.jsonl", lines)

    by_dir, by_glob = sources([shards, shards / "part-*.jsonl*"], ("asr", "asr"), (1.0, 1.0))
    assert len(by_dir) == len(by_glob) == len(lines)
    assert [by_dir.manifest[i].record.id for i in range(len(lines))] == [json.loads(x)["id"] for x in lines]
    assert by_dir.where(8) == f"{shards / 'part-001.jsonl'}:2"  # the blank first line counts
    assert by_dir.where(len(lines) - 1) == f"{shards / 'part-002.jsonl.gz'}:{len(lines) - 15}"
    one = PackedBatcher(MixSampler(sources(whole, ("asr",), (1.0,)), seed=2), rows=2, max_len=60)
    sharded = PackedBatcher(MixSampler([by_dir], seed=2), rows=2, max_len=60)
    assert batches(sharded, 8) == batches(one, 8)
    with pytest.raises(InputError, match="no manifest shard matches"):
        sources(tmp_path / "missing-*.jsonl", ("asr",), (1.0,))


def test_lhotse_cuts_manifest_is_a_lazy_source(tmp_path, noise_corpus):
    from speechbraid.data.interop import write_cutset

    cuts = tmp_path / "cuts.jsonl.gz"
    write_cutset(read_manifest(noise_corpus), cuts)
    source = sources(cuts, ("word-il",), (1.0,), format="lhotse")[0]
    expected = list(read_manifest(noise_corpus))
    assert len(source) == len(expected)
    for i, rec in enumerate(expected):
        got = source.manifest[i].record
        assert (got.id, got.text, [w.word for w in got.words]) == (rec.id, rec.text, [w.word for w in rec.words])
        assert source.braid(i, 0) is not None
    with pytest.raises(InputError, match=r"not a lhotse cut"):
        sources(noise_corpus, ("asr",), (1.0,), format="lhotse")[0].braid(0, 0)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_braid_size_agrees_with_the_laid_out_braid(layout):
    rng = np.random.default_rng(7)
    utterances = [Utterance.from_dict(record(i, rng)) for i in range(6)]
    pair = SpokenQA("sqa-1", "antonym", "train", "what is the opposite of hot", ("cold",),
                    "the opposite of hot is cold", question_audio="q.wav", question_duration=1.2,
                    units=tuple(range(20)))
    spec = get_layout(layout)
    inputs = [pair] if spec.reads == "spoken-qa" else utterances

    def select(audio: str) -> tuple[int, ...]:  # CTC compression keeps every third frame
        return tuple(range(0, 200, 3))

    for rec in inputs:
        for choice in range(2):
            braid = spec.build(rec, HashTokenizer(), choice=choice)
            for sel in (None, select):
                flat = flatten_braid(braid, VOCAB, FRAME_RATE, sel)
                size = braid_size(braid, FRAME_RATE, sel)
                assert (size.positions, size.target_tokens, size.num_frames) == (
                    len(flat), sum(1 for label in flat.labels if label != IGNORE_INDEX), flat.num_frames)


def test_padded_audio_cap_bounds_the_encoder_input_where_the_sum_cap_does_not(tmp_path):
    """The encoder runs on a batch's distinct audios padded to the longest: one long utterance among short ones
    costs audios x longest, which a cap on the summed seconds lets grow far past itself."""
    durations = [8.0 if i % 8 == 0 else 1.0 for i in range(32)]
    lines = [json.dumps({"id": f"u{i}", "text": "take aspirin", "audio": f"/fake/u{i}.wav", "duration": d})
             for i, d in enumerate(durations)]
    manifest = write_lines(tmp_path / "mixed.jsonl", lines)

    def padded_seconds(batch) -> float:
        audios = {f.audio: f.num_frames / FRAME_RATE for row in batch for f in row}
        return len(audios) * max(audios.values())

    def drawn(**caps) -> list:
        batcher = PackedBatcher(MixSampler(sources(manifest, ("asr",), (1.0,)), seed=0), rows=16, max_len=400, **caps)
        return [batcher.next_batch() for _ in range(6)]

    summed = drawn(max_audio_seconds=20.0)
    assert all(sum(f.num_frames for row in b for f in row) / FRAME_RATE <= 20.0 for b in summed)
    assert max(padded_seconds(b) for b in summed) > 40.0
    capped = drawn(max_audio_seconds=20.0, max_padded_audio_seconds=20.0)
    assert all(padded_seconds(b) <= 20.0 for b in capped)
    assert any(f.num_frames == 100 for b in capped for row in b for f in row)  # long ones still come, in fewer company


def test_lazy_manifest_names_a_bad_utf8_line_and_reads_the_others(tmp_path, manifest):
    from speechbraid.data.manifest import LazyManifest
    from speechbraid.errors import ManifestError

    raw = manifest.read_bytes().split(b"\n")
    raw[2] = raw[2].replace(b"u2", b"u\xe92")
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"\n".join(raw))
    lines = LazyManifest(bad)
    assert lines[1].record.id == "u1" and lines[3].where() == f"{bad}:4"
    with pytest.raises(ManifestError, match=rf"{bad}:3: not valid UTF-8: byte 0xe9"):
        lines[2]


def test_training_data_benchmark_rows(tmp_path):
    from speechbraid.benchmarks.training_data import (
        measure_memory,
        measure_throughput,
        measure_workers,
        write_synthetic_manifest,
    )

    manifest = write_synthetic_manifest(tmp_path / "m.jsonl", 300)
    assert len(manifest.read_text().splitlines()) == 300
    row = measure_memory(manifest, 300, batches=2, in_memory_reference=True)
    assert row["n_lines"] == 300 and row["growth_mib"] >= 0 and "in_memory_records_mib" in row
    rows = measure_throughput(manifest, batches=4)
    assert [r["world"] for r in rows] == [1, 2, "plan only"]
    assert [r["built_by_rank0"] for r in rows] == [4, 2, 0]
    assert len({r["examples"] for r in rows}) == 1  # every rank plans the same global sequence
    audio = write_synthetic_manifest(tmp_path / "a.jsonl", 60, audio_dir=tmp_path / "wav")
    rows = measure_workers(audio, batches=2, workers=(0, 2))
    assert [r["workers"] for r in rows] == [0, 2] and rows[0]["examples_per_batch"] == rows[1]["examples_per_batch"]
    assert all(r["audio_s_per_s"] > 0 for r in rows)  # features were computed


def test_encoded_audio_lists_every_audio_with_its_line_and_passes_bad_lines_by_the_policy(manifest, tmp_path):
    """The read-only encoder store checks these before step 1: a malformed line fails there (strict) or is counted
    (skip), and the text layout encodes no audio."""
    lines = manifest.read_text(encoding="utf-8").splitlines()
    bad = write_lines(tmp_path / "bad.jsonl", [*lines[:5], "{not json", *lines[5:]])
    (skipping,) = sources(bad, layouts=("asr",), weights=(1.0,), on_bad="skip")
    listed = list(skipping.encoded_audio())
    assert len(listed) == 23 and skipping.skipped == 1
    assert listed[0] == ("/fake/u0.wav", f"{bad}:1 [u0]") and listed[5] == ("/fake/u5.wav", f"{bad}:7 [u5]")
    (strict,) = sources(bad, layouts=("asr",), weights=(1.0,))
    with pytest.raises(InputError, match=rf"{bad}:6"):
        list(strict.encoded_audio())
    (text,) = sources(manifest, layouts=("text",), weights=(1.0,))
    assert list(text.encoded_audio()) == []


def test_duration_bucketing_packs_similar_lengths_trains_every_draw_and_resumes_exactly(manifest):
    def make(window: int) -> PackedBatcher:
        return PackedBatcher(MixSampler(sources(manifest, ("asr",), (1.0,)), seed=3), rows=3, max_len=60,
                             bucket_window=window)

    def keys(plan) -> list[tuple]:
        return sorted(p.key for row in plan for p in row)

    def padding(plans) -> float:  # encoder input padded to each batch's longest audio, per second of audio
        padded = sum(len(row_all) * max(p.seconds for p in row_all)
                     for row_all in ([p for row in plan for p in row] for plan in plans))
        return padded / sum(p.seconds for plan in plans for row in plan for p in row) - 1

    online, bucketed = make(0), make(12)
    online_plans = [online.next_plan() for _ in range(12)]
    first = bucketed.next_plan()
    window = [first, *bucketed.queue]  # the first window's batches, then what carries into the next
    drawn = MixSampler(sources(manifest, ("asr",), (1.0,)), seed=3)
    expected = sorted(drawn.next_key() for _ in range(12))
    assert sorted(k for plan in window for k in keys(plan)) == sorted(
        set(expected) - {p.key for p in bucketed.carry})  # every drawn example is trained once, or carried
    assert bucketed.carry and all(len(plan) == 3 for plan in window)  # no partial batch is trained
    for plan in window:  # a batch spans lengths that are neighbours in the window
        seconds = sorted(p.seconds for row in plan for p in row)
        assert seconds == sorted(seconds)
    bucketed_plans = [first] + [bucketed.next_plan() for _ in range(11)]
    assert padding(bucketed_plans) < 0.75 * padding(online_plans)  # measured 0.25 vs 0.47

    for taken in (1, 4):  # mid-window (batches queued) and later (examples carried)
        reference, resumed = make(12), make(12)
        for _ in range(taken):
            reference.next_plan()
        assert reference.queue or reference.carry
        resumed.load_state_dict(json.loads(json.dumps(reference.state_dict())))  # through JSON, as checkpoints
        assert [keys(reference.next_plan()) for _ in range(9)] == [keys(resumed.next_plan()) for _ in range(9)]


def _stream_batches(batcher: PackedBatcher, n: int, workers: int, world: int = 1, rank: int = 0,
                    features=None) -> list[tuple]:
    from functools import partial

    from speechbraid.batching.collate import collate
    from speechbraid.training.loader import BatchStream

    with BatchStream(batcher, partial(collate, features=features, max_len=80), world=world, rank=rank,
                     workers=workers) as stream:
        out = []
        for _ in range(n):
            batch = stream.next()
            out.append((batch.input_ids.tolist(), batch.labels.tolist(), batch.speech_index.tolist(), batch.audio))
    return out


@pytest.mark.parametrize("world,rank,bucket_window", [(1, 0, 0), (2, 1, 0), (2, 1, 6)])
def test_data_workers_build_the_batches_the_training_process_builds_in_order(manifest, world, rank, bucket_window):
    def make() -> PackedBatcher:
        return PackedBatcher(MixSampler(sources(manifest), seed=5), rows=2, max_len=80, max_audio_seconds=6.0,
                             bucket_window=bucket_window)

    reference = make()
    reference.next_batch()  # the stream starts from the batcher's state, wherever that is
    expected = _stream_batches(reference, 7, workers=0, world=world, rank=rank)
    for workers in (1, 2):
        batcher = make()
        batcher.next_batch()
        assert _stream_batches(batcher, 7, workers=workers, world=world, rank=rank) == expected
        # the training process's batcher moved in lock step: after the batches taken, not the ones built ahead
        assert batcher.state_dict() == reference.state_dict()
    again = make()  # resumed from a state the stream left: the sequence goes on as one
    again.load_state_dict(reference.state_dict())
    assert _stream_batches(again, 3, workers=2, world=world, rank=rank) == \
        _stream_batches(reference, 3, workers=0, world=world, rank=rank)


def test_an_error_in_a_data_worker_reaches_the_user_as_the_same_clear_error(tmp_path, manifest):
    from speechbraid.data.features import FeatureConfig

    def make(path: Path) -> PackedBatcher:
        return PackedBatcher(MixSampler(sources(path, ("asr",), (1.0,)), seed=0), rows=2, max_len=80)

    # the audio files do not exist: named with the manifest line that uses them
    with pytest.raises(InputError, match=rf"/fake/u\d+\.wav: audio file not found \(the audio of {manifest}:\d+ "
                                         r"\[u\d+\]\)") as caught:
        _stream_batches(make(manifest), 3, workers=2, features=FeatureConfig().extract_file)
    assert "Traceback" not in str(caught.value) and "DataLoader" not in str(caught.value)
    assert caught.value.path.startswith("/fake/u")  # the error itself, not a wrapper: its fields came through
    # a bad manifest line met by a worker: the error the training process would raise itself, file and line
    lines = manifest.read_text().splitlines()
    bad = write_lines(tmp_path / "bad.jsonl", [*lines[:5], '{"id": "u5", "text": ', *lines[6:]])
    with pytest.raises(InputError) as alone:
        _stream_batches(make(bad), 20, workers=0)
    with pytest.raises(InputError) as from_worker:
        _stream_batches(make(bad), 20, workers=2)
    assert type(from_worker.value) is type(alone.value)
    assert str(from_worker.value) == str(alone.value) and f"{bad}:6" in str(alone.value)



def test_a_forked_process_reads_manifest_lines_through_its_own_file_handles(tmp_path):
    import multiprocessing

    from speechbraid.data.manifest import LazyManifest

    rng = np.random.default_rng(0)  # larger than a read buffer, so seeks reach the file
    manifest = write_lines(tmp_path / "big.jsonl", [json.dumps(record(i, rng)) for i in range(300)])
    index = LazyManifest(manifest).lines
    assert index.line(0)[1] == 1  # the parent holds an open handle now
    fd = next(iter(index._handles.values())).fileno()
    offset = os.lseek(fd, 0, os.SEEK_CUR)
    context = multiprocessing.get_context("fork")  # what a DataLoader worker inherits: this very object
    receive, send = context.Pipe(duplex=False)

    def child() -> None:
        reads = [index.line(k)[2] for k in (150, 290)]
        send.send(reads)

    process = context.Process(target=child)
    process.start()
    reads = receive.recv()
    process.join()
    # an inherited handle shares its file offset with the parent's: the child's seeks would move it (racing reads)
    assert os.lseek(fd, 0, os.SEEK_CUR) == offset
    assert reads == [index.line(k)[2] for k in (150, 290)]


def test_resume_over_changed_training_data_is_refused_naming_what_changed(tmp_path, manifest):
    """A shard removed (or added, or grown) between runs would make the resumed run draw other examples: refused."""
    lines = [line for line in manifest.read_text(encoding="utf-8").splitlines() if line]
    shards = tmp_path / "shards"
    shards.mkdir()
    write_lines(shards / "part-000.jsonl", lines[:10])
    write_lines(shards / "part-001.jsonl", lines[10:])

    def make() -> PackedBatcher:
        return PackedBatcher(MixSampler(sources(shards, ("asr",), (1.0,)), seed=0), rows=2, max_len=60)

    batcher = make()
    batcher.next_batch()
    state = json.loads(json.dumps(batcher.state_dict()))
    make().load_state_dict(state)  # unchanged: resumes
    (shards / "part-001.jsonl").unlink()
    with pytest.raises(InputError, match=r"changed since the checkpoint \(missing since: .*part-001.jsonl\)") as error:
        make().load_state_dict(state)
    assert error.value.path is not None and str(shards) in str(error.value.path)
    write_lines(shards / "part-001.jsonl", lines[10:12])
    with pytest.raises(InputError, match=r"changed: .*part-001.jsonl \(13 records then, 2 now\)"):
        make().load_state_dict(state)


def test_lhotse_shar_directory_is_a_lazy_source_reading_audio_inside_its_tar_shards(tmp_path, noise_corpus):
    """Cuts written with lhotse's own Shar writer: same records and the same features as the WAV files, audio read in
    place from the tar shards; a missing or damaged shard is an error naming it."""
    import shutil
    import tarfile

    from lhotse import CutSet

    from speechbraid.data.audio import load_audio
    from speechbraid.data.features import FeatureConfig
    from speechbraid.data.interop.lhotse_cuts import record_to_cut

    expected = list(read_manifest(noise_corpus))
    shar = tmp_path / "shar"
    shar.mkdir()
    CutSet.from_cuts(record_to_cut(r) for r in expected).to_shar(shar, fields={"recording": "flac"}, shard_size=2)
    source = sources(shar, ("word-il",), (1.0,), format="lhotse-shar")[0]
    assert len(source) == len(expected)
    extract = FeatureConfig().extract_file
    for i, rec in enumerate(expected):
        got = source.manifest[i].record
        assert (got.id, got.text, got.duration, [(w.word, w.start) for w in got.words]) == \
            (rec.id, rec.text, pytest.approx(rec.duration, abs=1e-3), [(w.word, w.start) for w in rec.words])
        assert got.audio == f"{shar / f'recording.{i // 2:06d}.tar'}#{rec.id}"
        assert np.allclose(load_audio(got.audio)[0], load_audio(rec.audio)[0], atol=1e-4)  # flac: 16-bit
        assert np.allclose(extract(got.audio), extract(rec.audio), atol=1e-2)
        assert source.braid(i, 0) is not None

    damaged = tmp_path / "damaged"
    shutil.copytree(shar, damaged)
    (damaged / "recording.000001.tar").unlink()
    broken = sources(damaged, ("asr",), (1.0,), format="lhotse-shar")[0]
    with pytest.raises(InputError, match="audio tar shard not found") as error:
        load_audio(broken.manifest[2].record.audio)
    assert str(error.value.path) == str(damaged / "recording.000001.tar")
    with tarfile.open(damaged / "recording.000001.tar", "w") as archive:  # a shard without the cut's member
        archive.add(noise_corpus.parent / "u0.wav", arcname="other.wav")
    with pytest.raises(InputError, match=r"no audio member 'u2' in the tar shard"):
        load_audio(broken.manifest[2].record.audio)

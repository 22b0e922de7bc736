"""Training and decoding benchmark suites on tiny real models: result structure and invariants, never timings."""

import json
import shutil

import pytest

from speechbraid.benchmarks.asr_decode import bench_asr_decode, format_asr_decode
from speechbraid.benchmarks.train import bench_train, format_train
from speechbraid.cli.main import main
from speechbraid.data.manifest import read_manifest
from speechbraid.models.encoders import ConformerConfig

TINY_ENCODER = ConformerConfig(d_model=16, n_layers=1, n_heads=2)


@pytest.fixture
def corpus_dir(tmp_path, noise_corpus):
    """The noise corpus laid out as a default corpus (speech train and test splits, no text corpora)."""
    for split in ("train", "test"):
        shutil.copytree(noise_corpus.parent, tmp_path / "corpus" / "speech" / split)
    return tmp_path / "corpus"


def test_bench_train_pairs_steps_on_equal_positions(corpus_dir, tiny_llm_dir):
    rows, max_len, steps = 2, 96, 2
    result = bench_train(corpus_dir, steps=steps, warmup=0, packing_batches=6, rows=rows, max_len=max_len,
                         llm=tiny_llm_dir, conformer=TINY_ENCODER, device="cpu")
    json.dumps(result)  # the CLI's --json and --save need plain data
    assert result["corpus"] == f"default corpus {corpus_dir}"

    tp = result["throughput"]
    assert [s["mode"] for s in tp["steps"]] == ["bare", "cached", "full"]
    for step in tp["steps"]:
        assert step["positions_per_step"] == [rows * max_len] * steps  # same batches for the three rows
        assert step["ms_per_step"] > 0 and step["tokens_per_s"] > 0
        assert ("audio_s_per_s" in step) == (step["mode"] != "bare")
    assert tp["steps"][0]["overhead_vs_bare"] == 0.0
    assert tp["assembly_overhead"] == tp["steps"][1]["overhead_vs_bare"] > -1.0
    assert all(s["audio_s_per_s"] > 0 for s in tp["steps"][1:])

    packed, padded = result["packing"]["packed"], result["packing"]["padded"]
    assert packed["examples"] == padded["examples"] > 0  # the same examples, packed vs one per row
    assert packed["positions"] == packed["batches"] * rows * max_len  # every batch fills all its rows
    assert padded["batches"] == -(-padded["examples"] // rows)
    for group in (packed, padded):
        assert 0 < group["min_batch_fill"] <= group["fill"] <= 1

    flops = {row["step"].split()[0]: row for row in result["flops"]["steps"]}
    assert result["flops"]["matmul_shape"] == [rows * max_len, 64, 172]  # tiny preset: hidden 64, MLP 172
    # the full step also runs the encoder and adapter on top of the same LLM positions
    assert flops["speech"]["gflop_per_step"] > flops["bare"]["gflop_per_step"] > 0
    assert all(row["ratio_to_matmul"] > 0 for row in flops.values())
    store = result["encoder_store"]
    assert [row["source"] for row in store["steps"]] == [f"encoder outputs: {side}" for side in
                                                         ("ram", "disk", "disk, cold")]
    assert store["outputs"] > 0 and store["shard_mb"] > 0
    assert store["disk_reads"] >= 2 * store["outputs"]  # both disk rows read every output from its shard
    assert store["ratio"] == store["steps"][1]["throughput_vs_ram"] > 0
    text = format_train(result)
    assert "assembly overhead" in text and "Packing efficiency" in text and "FLOP/s" in text
    assert "disk/RAM step throughput" in text


def test_bench_asr_decode_cached_and_uncached_agree(corpus_dir, tiny_llm_dir, noise_corpus):
    result = bench_asr_decode(corpus_dir, utterances=2, max_new_tokens=3, llm=tiny_llm_dir, conformer=TINY_ENCODER,
                              device="cpu", repeats=1)
    json.dumps(result)
    assert [row["batch"] for row in result["kv_cache"]] == [1, 2]
    for row in result["kv_cache"]:
        assert row["same_tokens"] is True
        assert row["new_tokens"] == 3 * row["batch"]  # no stop ids: every prompt runs to max_new_tokens
        assert row["speedup"] > 0
    [rtf] = result["rtf"]
    durations = [r.duration for r in read_manifest(noise_corpus)][:2]
    assert rtf["device"] == "cpu" and rtf["utterances"] == 2
    assert rtf["audio_s"] == pytest.approx(sum(durations))
    assert rtf["rtf"] == pytest.approx(rtf["compute_s"] / rtf["audio_s"]) and rtf["rtf"] > 0
    assert "real-time factor" in format_asr_decode(result)


def test_bench_cli_rejects_bad_arguments(capsys):
    assert main(["bench", "train", "--steps", "0"]) == 2
    assert "--steps must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "nonsense"])

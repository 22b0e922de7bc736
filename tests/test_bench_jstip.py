"""JSTIP benchmark: the per-span baseline places frames where single-pass does, and the suite's result
structure on tiny real models (never timings)."""

import dataclasses
import json
import shutil

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from speechbraid.batching.collate import collate, flatten_braid
from speechbraid.benchmarks.common import peak_memory_mib
from speechbraid.benchmarks.jstip import (
    THROUGHPUT_LAYOUTS,
    bench_jstip,
    format_jstip,
    per_span_prepare_inputs,
    speech_runs,
    text_loss,
)
from speechbraid.braid.spans import SpeechSpan
from speechbraid.cli.main import main
from speechbraid.data.features import FeatureConfig
from speechbraid.data.manifest import read_manifest
from speechbraid.data.records import WordAlignment
from speechbraid.layouts.registry import UTTERANCE_LAYOUTS, get_layout
from speechbraid.layouts.tokenizer import HFTextTokenizer
from speechbraid.models.adapter import FrameStackAdapter
from speechbraid.models.build import ModelConfig, build_speech_llm
from speechbraid.models.encoders import ConformerConfig

TINY_ENCODER = ConformerConfig(d_model=16, n_layers=1, n_heads=2)


class PerFrameLinearEncoder(nn.Module):
    """Each output frame is a linear map of its own 8 feature frames: no context across frames."""

    downsample = 8
    output_dim = 12

    def __init__(self, n_mels: int = 80) -> None:
        super().__init__()
        self.proj = nn.Linear(n_mels * self.downsample, self.output_dim)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, time, mels = features.shape
        x = F.pad(features, (0, 0, 0, (-time) % self.downsample)).reshape(batch, -1, mels * self.downsample)
        return self.proj(x), (lengths + self.downsample - 1) // self.downsample


@pytest.fixture
def setup(tiny_llm_dir, noise_corpus):
    """A tiny speech LLM and the noise corpus with word alignments that tile each utterance contiguously."""
    torch.manual_seed(0)
    model, hf_tokenizer = build_speech_llm(ModelConfig(llm=str(tiny_llm_dir), conformer=TINY_ENCODER))
    records = []
    for record in read_manifest(noise_corpus):
        words = record.text.split()
        step = record.duration / len(words)
        tiled = [WordAlignment(w, round(k * step, 4), round((k + 1) * step, 4)) for k, w in enumerate(words)]
        records.append(dataclasses.replace(record, words=tiled))
    return model, HFTextTokenizer(hf_tokenizer), records, FeatureConfig().extract_file


def _batch(model, tokenizer, records, features, pack):
    """Rows of word-il braids (``pack`` per row, several audios per row) plus one ASR braid, collated."""
    flats = [flatten_braid(get_layout("word-il").build(r, tokenizer, choice=i), model.vocab, model.frame_rate)
             for i, r in enumerate(records)]
    flats.append(flatten_braid(get_layout("asr").build(records[0], tokenizer), model.vocab, model.frame_rate))
    rows = [flats[i:i + pack] for i in range(0, len(flats), pack)]
    return collate(rows, features), flats


def test_speech_runs_are_the_braids_speech_spans(setup):
    model, tokenizer, records, features = setup
    batch, flats = _batch(model, tokenizer, records, features, pack=3)
    braids = [get_layout("word-il").build(r, tokenizer, choice=i) for i, r in enumerate(records)]
    braids.append(get_layout("asr").build(records[0], tokenizer))
    runs = speech_runs(batch)
    assert len(runs) == sum(isinstance(s, SpeechSpan) for b in braids for s in b.spans)
    assert sum(r.length for r in runs) == int(batch.speech_mask.sum())
    for run in runs:  # every run starts on a speech position and reads its frames from one audio in order
        assert bool(batch.speech_mask[run.row, run.start: run.start + run.length].all())
        grid = int(batch.audio_frames.max())
        expected = run.audio * grid + torch.arange(run.first, run.first + run.length)
        assert torch.equal(batch.speech_index[run.row, run.start: run.start + run.length], expected)


def test_per_span_equals_single_pass_without_cross_frame_context(setup):
    model, tokenizer, records, features = setup
    model.encoder = PerFrameLinearEncoder()
    model.adapter = FrameStackAdapter(PerFrameLinearEncoder.output_dim, model.llm.config.hidden_size)
    batch, _ = _batch(model, tokenizer, records, features, pack=3)
    single, per_span = model.prepare_inputs(batch), per_span_prepare_inputs(model, batch)
    assert per_span.inputs_embeds.shape == single.inputs_embeds.shape
    torch.testing.assert_close(per_span.inputs_embeds, single.inputs_embeds)
    for field in ("attention_mask", "position_ids", "labels"):
        assert torch.equal(getattr(per_span, field), getattr(single, field))
    # not vacuous: the speech positions hold adapter frames, not the token embedding of id 0
    token_embeds = model.llm.get_input_embeddings()(batch.input_ids)
    assert not torch.allclose(single.inputs_embeds[batch.speech_mask], token_embeds[batch.speech_mask])


def test_per_span_differs_from_single_pass_with_a_conformer(setup):
    model, tokenizer, records, features = setup
    model.eval()
    batch, _ = _batch(model, tokenizer, records, features, pack=2)
    with torch.no_grad():
        single, per_span = model.prepare_inputs(batch), per_span_prepare_inputs(model, batch)
        assert per_span.inputs_embeds.shape == single.inputs_embeds.shape
        text = ~batch.speech_mask
        assert torch.equal(per_span.inputs_embeds[text], single.inputs_embeds[text])
        # the Conformer sees its neighbours' audio in one pass and only the span's own slice per span
        assert not torch.allclose(per_span.inputs_embeds[batch.speech_mask], single.inputs_embeds[batch.speech_mask])
        loss, _ = model(batch)
        torch.testing.assert_close(text_loss(model, single), loss)  # the benchmark's loss is the model's


def test_peak_memory_counts_what_the_call_allocates():
    assert 200 < peak_memory_mib(lambda: torch.ones(64 * 2**20).sum(), "cpu") < 400  # a 256 MiB tensor
    assert peak_memory_mib(lambda: None, "cpu") < 50


@pytest.fixture
def corpus_dir(tmp_path, noise_corpus):
    """The noise corpus laid out as a default corpus (speech train and test splits, no text corpora)."""
    for split in ("train", "test"):
        shutil.copytree(noise_corpus.parent, tmp_path / "corpus" / "speech" / split)
    return tmp_path / "corpus"


def test_bench_jstip_structure(corpus_dir, tiny_llm_dir):
    rows, max_len, steps = 2, 64, 2
    result = bench_jstip(corpus_dir, steps=steps, warmup=0, rows=rows, max_len=max_len, layout_utterances=4,
                         llm=tiny_llm_dir, conformer=TINY_ENCODER, device="cpu")
    json.dumps(result)  # the CLI's --json and --save need plain data
    assert result["corpus"] == f"default corpus {corpus_dir}"

    trick = result["single_pass_vs_per_span"]
    assert trick["speed_ratio_range"][0] <= trick["speed_ratio"] <= trick["speed_ratio_range"][1]
    assert trick["speed_ratio_cpu_time"] > 0
    assert all(mib > 0 for mib in trick["peak_step_mib"].values())
    assert trick["memory_ratio"] == trick["peak_step_mib"]["per-span"] / trick["peak_step_mib"]["single"]
    feed = trick["encoder_input"]
    assert feed["per-span"]["items"] > feed["single"]["items"]  # several spans per audio
    assert all(0 < f["fill"] <= 1 for f in feed.values())
    losses = trick["losses"]
    assert losses["single"] > 0 and losses["per_span"] > 0
    assert losses["relative_difference"] == pytest.approx(losses["per_span"] / losses["single"] - 1)
    gflop = trick["forward_gflop"]
    assert gflop["single"] > 0 and trick["flop_ratio"] == pytest.approx(gflop["per-span"] / gflop["single"])

    assert [row["step"] for row in result["throughput"]] == list(THROUGHPUT_LAYOUTS)
    asr = result["throughput"][0]
    assert asr["positions_per_s_vs_asr"] == asr["audio_s_per_s_vs_asr"] == 1.0
    by_step = {row["step"]: row for row in result["throughput"]}
    assert asr["flop_per_position_vs_asr"] == 1.0
    assert by_step["word-il"]["forward_gflop_first_batch"] == gflop["single"]  # the same batch and assembly
    word_il = by_step["word-il"]
    for key in ("positions_per_s", "audio_s_per_s"):  # paired ratios: median of the per-batch rate ratios
        ratios = [(w[key.split("_per_")[0]] / w["wall"]) / (a[key.split("_per_")[0]] / a["wall"])
                  for w, a in zip(word_il["per_batch"], asr["per_batch"], strict=True)]
        assert word_il[f"{key}_vs_asr"] == pytest.approx(sum(ratios) / len(ratios))  # median of two
    for row in result["throughput"]:
        assert row["batches"] == steps and row["examples"] >= 1 and row["positions_per_s"] > 0
    for name in ("asr", "word-il"):
        assert by_step[name]["speech_share"] == 1.0 and by_step[name]["audio_s"] > 0
    # the noise corpus has no 0.2 s pauses: every utterance is one segment, so segment-il braids are all text
    assert by_step["segment-il"]["speech_share"] == 0.0 and by_step["segment-il"]["audio_s"] == 0.0
    # braids of word-il are shorter than ASR ones (half the words are text), so a batch holds more utterances
    assert by_step["word-il"]["examples"] > by_step["asr"]["examples"]

    frozen = {row["step"]: row for row in result["throughput_frozen_encoder"]}
    assert list(frozen) == list(THROUGHPUT_LAYOUTS) and frozen["asr"]["positions_per_s_vs_asr"] == 1.0
    assert all(row["batches"] == steps and row["positions_per_s"] > 0 for row in frozen.values())
    assert "word-il per-span" not in frozen  # per-span encoding cannot use the whole-audio cache

    layouts = {row["layout"]: row for row in result["layout_building"]}
    assert set(layouts) == set(UTTERANCE_LAYOUTS)  # random-il included
    assert all(row["utterances"] == 4 and row["utterances_per_s"] > 0 for row in layouts.values())
    text = format_jstip(result)
    assert "per-span / single-pass" in text and "ASR-only" in text and "Layout building" in text


def test_bench_cli_lists_jstip(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "jstip", "--steps", "x"])
    assert main(["bench", "jstip", "--steps", "0"]) == 2
    assert "--steps must be >= 1" in capsys.readouterr().err

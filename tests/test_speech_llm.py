"""Embedding assembly and packing isolation on tiny real Hugging Face models."""

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from speechbraid.batching import IGNORE_INDEX, collate, flatten_braid, pack_rows
from speechbraid.braid import Braid, SpecialSpan, SpeechSpan, TextSpan, VocabLayout
from speechbraid.models.adapter import FrameMasking, FrameStackAdapter
from speechbraid.models.encoders import ConformerConfig, ConformerEncoder, WhisperSpeechEncoder
from speechbraid.models.speech_llm import SpeechLLM

RATE = 12.5
VOCAB = VocabLayout(text_size=64)


def tiny_llm(family: str) -> torch.nn.Module:
    torch.manual_seed(0)
    common = dict(vocab_size=VOCAB.size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=64, max_position_embeddings=256)
    if family == "llama":
        return LlamaForCausalLM(LlamaConfig(**common, num_key_value_heads=2)).eval()
    if family == "qwen2":
        return Qwen2ForCausalLM(Qwen2Config(**common, num_key_value_heads=2)).eval()
    return GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB.size, n_embd=32, n_layer=2, n_head=4, n_positions=256)).eval()


def tiny_model(family: str = "llama") -> SpeechLLM:
    torch.manual_seed(0)
    encoder = ConformerEncoder(ConformerConfig(d_model=16, n_layers=1, n_heads=2, dropout=0.0))
    return SpeechLLM(encoder, FrameStackAdapter(16, 32), tiny_llm(family), VOCAB, RATE).eval()


def asr_braid(name: str, tokens: tuple[int, ...], duration: float) -> Braid:
    spans = (SpeechSpan(0.0, duration), SpecialSpan("<|asr|>"), TextSpan(tokens, True))
    return Braid(spans, id=name, audio=f"{name}.wav", duration=duration, layout="asr")


def features_for(seed_of: dict[str, int]):
    def features(path: str) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed_of[path])
        return torch.randn(int(seed_of[path + ":dur"] * 100), 80, generator=gen)
    return features


def test_flatten_asr_braid_positions_and_labels():
    flat = flatten_braid(asr_braid("a", (5, 6, 7), 0.4), VOCAB, RATE)
    assert flat.num_frames == 5 and flat.frames[:5] == (0, 1, 2, 3, 4)
    assert flat.tokens[5] == VOCAB.special_id("<|asr|>")
    assert flat.labels == (IGNORE_INDEX,) * 6 + (5, 6, 7)


@pytest.mark.parametrize("family", ["llama", "qwen2", "gpt2"])
def test_packed_examples_cannot_attend_to_each_other(family):
    model = tiny_model(family)
    text = Braid((TextSpan((1,), False), TextSpan((9, 10, 11, 12), True)), id="t", layout="text")
    braids = [asr_braid("a", (3, 4, 5), 0.5), text, asr_braid("b", (7, 8), 0.3)]
    seeds = {"a.wav": 1, "a.wav:dur": 0.5, "b.wav": 2, "b.wav:dur": 0.3}
    flats = [flatten_braid(b, VOCAB, RATE) for b in braids]
    rows = pack_rows(flats, max_len=64)
    assert len(rows) == 1  # all three share one row
    batch = collate(rows, features_for(seeds))
    with torch.no_grad():
        loss, logits = model(batch)
    assert torch.isfinite(loss)

    # change example b (its audio and its text): the logits of the other examples must not move
    seeds_changed = {**seeds, "b.wav": 99}
    braids_changed = [braids[0], braids[1], asr_braid("b", (20, 21), 0.3)]
    rows2 = pack_rows([flatten_braid(b, VOCAB, RATE) for b in braids_changed], max_len=64)
    batch2 = collate(rows2, features_for(seeds_changed))
    with torch.no_grad():
        _, logits2 = model(batch2)
    keep = (batch.example_ids != 0) & (batch.example_ids != _example_of(rows[0], "b"))
    assert torch.allclose(logits[keep], logits2[keep], atol=1e-5)
    changed = batch.example_ids == _example_of(rows[0], "b")
    assert not torch.allclose(logits[changed], logits2[changed], atol=1e-3)

    # and each example's logits equal those computed with the example alone in its row
    alone = collate([[flatten_braid(braids[1], VOCAB, RATE)]])
    with torch.no_grad():
        _, logits_alone = model(alone)
    text_pos = batch.example_ids[0] == _example_of(rows[0], "t")
    assert torch.allclose(logits[0, text_pos], logits_alone[0, : int(text_pos.sum())], atol=1e-5)


def _example_of(row, name: str) -> int:
    return next(i for i, flat in enumerate(row, start=1) if flat.id == name)


def test_loss_only_on_text_targets_and_never_across_examples():
    model = tiny_model()
    braids = [asr_braid("a", (3, 4), 0.2), Braid((TextSpan((1,), False), TextSpan((9, 10), True)), id="t")]
    batch = collate(pack_rows([flatten_braid(b, VOCAB, RATE) for b in braids], 32),
                    features_for({"a.wav": 1, "a.wav:dur": 0.2}))
    prepared = model.prepare_inputs(batch)
    targets = prepared.labels[prepared.labels != IGNORE_INDEX].tolist()
    assert sorted(targets) == [3, 4, 9, 10]  # no speech, special or cross-example targets
    assert batch.num_loss_tokens == 4 and 0 < batch.fill_ratio <= 1


def test_pack_rows_rejects_too_long_examples():
    flat = flatten_braid(asr_braid("long", (1,) * 40, 1.0), VOCAB, RATE)
    with pytest.raises(ValueError, match="'long' has 54 positions"):
        pack_rows([flat], max_len=32)


def test_conformer_output_does_not_depend_on_batch_mates():
    """Padding must not leak: an audio encodes the same alone and beside a longer one (bug found in decoding)."""
    torch.manual_seed(0)
    encoder = ConformerEncoder(ConformerConfig(d_model=16, n_layers=2, n_heads=2, dropout=0.0)).eval()
    short, long = torch.randn(37, 80), torch.randn(101, 80)
    batch = torch.nn.utils.rnn.pad_sequence([short, long], batch_first=True)
    with torch.no_grad():
        together, lengths = encoder(batch, torch.tensor([37, 101]))
        alone, alone_len = encoder(short[None], torch.tensor([37]))
    n = int(alone_len[0])
    assert int(lengths[0]) == n
    assert torch.allclose(together[0, :n], alone[0, :n], atol=1e-5)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_whisper_output_does_not_depend_on_batch_mates(monkeypatch, attention):
    """Whisper's encoder attends to every frame it is given; unmasked batch padding moved 78 of 150 test
    transcripts between batch sizes (session 11). Padding is masked now, and the store key says so."""
    from transformers import WhisperConfig

    from speechbraid.models.encoder_store import weights_digest

    torch.manual_seed(0)
    config = WhisperConfig(d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64,
                           num_mel_bins=80, max_source_positions=100, attn_implementation=attention)
    encoder = WhisperSpeechEncoder(config=config).eval()
    assert encoder.config._attn_implementation == attention
    short, long = torch.randn(37, 80), torch.randn(101, 80)
    batch = torch.nn.utils.rnn.pad_sequence([short, long], batch_first=True)
    with torch.no_grad():
        together, lengths = encoder(batch, torch.tensor([37, 101]))
        alone, alone_lengths = encoder(short[None], torch.tensor([37]))
        long_alone, _ = encoder(long[None], torch.tensor([101]))
    n = int(alone_lengths[0])
    assert lengths.tolist() == [n, 51]
    torch.testing.assert_close(together[0, :n], alone[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(together[1], long_alone[0], atol=1e-5, rtol=1e-5)
    tagged = weights_digest(encoder)
    monkeypatch.setattr(WhisperSpeechEncoder, "computation", None)
    assert weights_digest(encoder) != tagged  # outputs stored before the mask are not read as current ones


@pytest.mark.parametrize("layers", [0, 1])
def test_adapter_context_sees_neighbours_but_not_batch_padding(layers):
    torch.manual_seed(0)
    adapter = FrameStackAdapter(8, 16, stack=2, hidden=64, context=5, layers=layers).eval()
    short, long = torch.randn(1, 6, 8), torch.randn(1, 14, 8)
    alone, alone_lengths = adapter(short, torch.tensor([6]))
    batch = torch.cat([torch.cat([short, torch.full((1, 8, 8), 7.0)], dim=1), long])  # padding is not zeros
    together, lengths = adapter(batch, torch.tensor([6, 14]))
    assert lengths.tolist() == [3, 7] and alone_lengths.tolist() == [3]
    torch.testing.assert_close(together[0, :3], alone[0])
    # a change at frame 0 reaches output frames within the kernel's reach (2 stacked frames each side) only
    nudged = short.clone()
    nudged[0, 0] += 1.0
    moved = (adapter(nudged, torch.tensor([6]))[0] - alone).abs().sum(-1)[0]
    assert moved[0] > 0 and moved[2] > 0
    plain = FrameStackAdapter(8, 16, stack=2).eval()
    assert (plain(nudged, torch.tensor([6]))[0] - plain(short, torch.tensor([6]))[0]).abs().sum(-1)[0, 1:].max() == 0
    with pytest.raises(ValueError, match="odd kernel"):
        FrameStackAdapter(8, 16, context=4)
    with pytest.raises(ValueError, match="divisible by 64"):
        FrameStackAdapter(8, 16, hidden=48, layers=1)


def test_frame_masking_zeroes_whole_spans_in_training_only():
    torch.manual_seed(0)
    masking = FrameMasking(time_prob=0.05, time_span=4, channel_prob=0.1, channel_span=3)
    frames = torch.randn(3, 200, 24) + 5.0  # no value is zero by chance
    masked = masking.apply(frames)
    assert masked.shape == frames.shape and (frames > 0).all()  # the input is left as it is
    zero_time = (masked == 0).all(-1)  # frames masked over every channel
    assert zero_time.any() and not zero_time.all()
    for row in zero_time:  # time masks come in runs of at least one span (overlapping spans join)
        edges = torch.diff(torch.cat([torch.tensor([0]), row.int(), torch.tensor([0])])).nonzero().flatten()
        for start, end in zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True):
            assert end - start >= 4 or end == row.numel()  # only the utterance's end may cut a span
    zero_channels = (masked == 0).all(1)  # channels masked at every frame
    assert zero_channels.any()
    assert not (masked == 0).all()
    adapter = FrameStackAdapter(24, 16, stack=2, masking=masking)
    lengths = torch.tensor([200, 200, 200])
    adapter.eval()
    torch.testing.assert_close(adapter(frames, lengths)[0], adapter(frames, lengths)[0])  # no masking in eval
    adapter.train()
    torch.manual_seed(1)
    first = adapter(frames, lengths)[0]
    torch.manual_seed(1)
    torch.testing.assert_close(adapter(frames, lengths)[0], first)  # seeded
    assert not torch.allclose(adapter(frames, lengths)[0], first)  # and random
    with pytest.raises(ValueError, match="time_prob must be in"):
        FrameMasking(time_prob=1.0)
    with pytest.raises(ValueError, match="channel_span must be at least 1"):
        FrameMasking(channel_span=0)

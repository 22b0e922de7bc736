"""Generation patterns on hand-made responses: ratios, padding, switch and end tokens, delays."""

import pytest
import torch

from speechbraid.batching import IGNORE_INDEX, collate, flatten_braid
from speechbraid.braid import ParallelSpan, SpecialSpan, TextSpan, UnitSpan, VocabLayout
from speechbraid.patterns import (
    InterleavedPattern,
    ParallelPattern,
    build_generation_braid,
    get_pattern,
    interleave_response,
    parallel_response,
    response_steps,
)

TEXT = [11, 12, 13]  # three text tokens
UNITS = list(range(25))  # 25 speech units


def sequence(spans) -> list:
    out = []
    for span in spans:
        if isinstance(span, TextSpan):
            out += [f"t{t}" for t in span.tokens]
        elif isinstance(span, UnitSpan):
            out += [f"u{u}" for u in span.units]
        else:
            out.append(span.token)
    return out


def test_plain_interleaved_pads_text_chunks_to_keep_the_ratio():
    seq = sequence(interleave_response(InterleavedPattern("i", 2, 5), TEXT, UNITS))
    assert seq[:7] == ["t11", "t12", "u0", "u1", "u2", "u3", "u4"]
    assert seq[7:9] == ["t13", "<|eot|>"]
    # after the text has ended, every text chunk is two pads, every speech chunk five units
    assert seq[14:16] == ["<|tpad|>", "<|tpad|>"] and seq[16:21] == [f"u{i}" for i in range(10, 15)]
    assert seq[-3:] == ["<|tpad|>", "<|tpad|>", "<|eos_speech|>"]
    assert seq.count("<|tpad|>") == 8 and len(seq) == 38


def test_esi_switches_after_end_of_text_and_never_pads():
    seq = sequence(interleave_response(InterleavedPattern("e", 2, 5, early_stop=True), TEXT, UNITS))
    assert seq[:10] == ["t11", "t12", "u0", "u1", "u2", "u3", "u4", "t13", "<|eot|>", "<|S|>"]
    assert seq[10:] == [f"u{i}" for i in range(5, 25)] + ["<|eos_speech|>"]
    assert "<|tpad|>" not in seq and len(seq) == 31


def test_speech_ending_first_lets_the_text_finish_alone():
    for early_stop in (False, True):
        seq = sequence(interleave_response(InterleavedPattern("x", 2, 5, early_stop), [1, 2, 3, 4, 5, 6, 7], [0, 1]))
        assert seq == ["t1", "t2", "u0", "u1", "<|eos_speech|>", "t3", "t4", "t5", "t6", "t7", "<|eot|>"]


def test_parallel_delays_speech_and_pads_both_streams():
    span = parallel_response(ParallelPattern("p", speech_delay=2), TEXT, [7, 8, 9])
    assert span.text == (11, 12, 13, "<|eot|>", "<|tpad|>", "<|tpad|>")
    assert span.speech == ("<|spad|>", "<|spad|>", 7, 8, 9, "<|eos_speech|>")
    long_text = parallel_response(ParallelPattern("p", speech_delay=1), [1, 2, 3, 4, 5], [7])
    assert long_text.speech == ("<|spad|>", 7, "<|eos_speech|>", "<|spad|>", "<|spad|>", "<|spad|>")
    with pytest.raises(ValueError, match="differ in length"):
        ParallelSpan((1,), (), loss=True)


def test_declared_patterns_and_esi_is_shorter_than_plain_interleaved():
    assert get_pattern("interleaved").text_chunk == 5 and get_pattern("interleaved").speech_chunk == 10
    assert (get_pattern("interleaved-13-26").text_chunk, get_pattern("interleaved-5-15").speech_chunk) == (13, 15)
    prompt = [TextSpan((5, 6), False)]
    text, units = list(range(100, 112)), list(range(75))  # 12 text tokens, 3 s of 25 Hz speech
    plain = build_generation_braid(get_pattern("interleaved"), prompt, text, units)
    esi = build_generation_braid(get_pattern("esi"), prompt, text, units)
    parallel = build_generation_braid(get_pattern("parallel"), prompt, text, units)
    assert response_steps(esi) < response_steps(plain)
    assert response_steps(esi) == len(text) + 2 + len(units) + 1  # + eot, switch, eos_speech
    assert response_steps(parallel) == len(units) + 2  # delay 1 + units + eos_speech
    with pytest.raises(ValueError, match="must not carry loss"):
        build_generation_braid(get_pattern("esi"), [TextSpan((1,), True)], text, units)
    with pytest.raises(ValueError, match="unknown pattern"):
        get_pattern("zigzag")


def test_every_response_token_is_a_target_and_prompt_is_not():
    vocab = VocabLayout(text_size=200, num_units=100)
    braid = build_generation_braid(get_pattern("esi"), [TextSpan((5, 6), False)], TEXT, [1, 2, 3])
    flat = flatten_braid(braid, vocab, 12.5)
    resp = flat.tokens.index(vocab.special_id("<|resp|>"))
    assert all(label == IGNORE_INDEX for label in flat.labels[: resp + 1])
    assert flat.labels[resp + 1 :] == flat.tokens[resp + 1 :]
    assert vocab.special_id("<|S|>") in flat.labels and vocab.unit_id(3) in flat.labels
    assert isinstance(braid.spans[1], SpecialSpan) and not braid.spans[1].loss


def test_parallel_braid_collates_two_streams():
    vocab = VocabLayout(text_size=200, num_units=100)
    braid = build_generation_braid(get_pattern("parallel"), [TextSpan((5,), False)], TEXT, [4, 5])
    batch = collate([[flatten_braid(braid, vocab, 12.5)]])
    assert batch.stream_ids.shape == batch.input_ids.shape
    assert batch.stream_ids[0, :2].tolist() == [-1, -1]  # prompt and <|resp|> have no speech stream
    assert batch.stream_ids[0, 2:].tolist() == [vocab.special_id("<|spad|>"), vocab.unit_id(4), vocab.unit_id(5),
                                                vocab.special_id("<|eos_speech|>")]
    assert batch.num_loss_tokens == 8  # 4 text-stream + 4 speech-stream targets
    assert torch.equal(batch.stream_labels[0, 2:], batch.stream_ids[0, 2:])

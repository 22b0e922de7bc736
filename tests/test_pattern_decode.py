"""Pattern decoding (interleaved, ESI, parallel) on tiny random Llama models: KV cache vs recompute, batching,
schedule conformance, stopping, delays, streaming, and the teacher-forced sequence lengths."""

import functools

import numpy as np
import pytest
import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from speechbraid.batching import collate, flatten_braid
from speechbraid.braid import Braid, SpecialSpan, TextSpan, UnitSpan, VocabLayout
from speechbraid.errors import ConfigError
from speechbraid.inference.patterns import (
    PatternDecodeConfig,
    TextChunk,
    UnitChunk,
    VocoderStream,
    generate_response,
    measure_pattern_decoding,
    teacher_forced_lengths,
)
from speechbraid.models.speech_llm import SpeechLLM
from speechbraid.patterns import InterleavedPattern, InterleaveSchedule, ParallelPattern, get_pattern
from speechbraid.patterns.build import interleave_response, parallel_response, response_steps

VOCAB = VocabLayout(text_size=40, num_units=30)
EOT, EOS, TPAD, SPAD, SWITCH = (VOCAB.special_id(t) for t in ("<|eot|>", "<|eos_speech|>", "<|tpad|>", "<|spad|>",
                                                                  "<|S|>"))
PLAIN = InterleavedPattern("plain-2-3", 2, 3)
ESI = InterleavedPattern("esi-2-3", 2, 3, early_stop=True)
PARALLEL = ParallelPattern("parallel-2", speech_delay=2)
PATTERNS = [PLAIN, ESI, PARALLEL]
# different prompt lengths: rows need 0..6 columns of left padding
PROMPTS = [Braid((TextSpan(tuple(range(1, 1 + n)), False),), id=f"p{n}") for n in (3, 9, 5)]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@functools.cache
def tiny_model(parallel: bool, eot_bias: float = 1.0, eos_bias: float = 1.0) -> SpeechLLM:
    """A random Llama with peaky logits (init std 0.3), so greedy decoding ends some responses early and
    runs others to max_steps; ``*_bias`` on both heads make the end tokens more or less likely."""
    torch.manual_seed(0)
    llm = LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB.size, hidden_size=32, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
                                       max_position_embeddings=256, initializer_range=0.3))
    model = SpeechLLM(None, None, llm.eval(), VOCAB, speech_head=parallel).eval()
    for head in (model.llm.lm_head, model.speech_head):
        if head is not None:
            bias = torch.zeros(head.out_features)
            bias[EOT], bias[EOS] = eot_bias, eos_bias
            head.bias = nn.Parameter(bias)
    return model


def decode(pattern, prompts=PROMPTS, use_cache=True, on_chunk=None, model=None, **config):
    model = model or tiny_model(isinstance(pattern, ParallelPattern))
    config = PatternDecodeConfig(**{"max_steps": 40, **config})
    return generate_response(model, prompts, pattern, None, config, on_chunk, use_cache=use_cache)


def summary(responses):
    return [(r.tokens, r.speech_stream, r.text, r.units, r.steps, r.length, r.finish_reason, r.first_unit_step)
            for r in responses]


def vocab_ids(spans) -> list[int]:
    out: list[int] = []
    for span in spans:
        if isinstance(span, TextSpan):
            out += span.tokens
        elif isinstance(span, UnitSpan):
            out += [VOCAB.unit_id(u) for u in span.units]
        elif isinstance(span, SpecialSpan):
            out.append(VOCAB.special_id(span.token))
    return out


def stream_ids(stream, units: bool) -> list[int]:
    return [VOCAB.special_id(t) if isinstance(t, str) else VOCAB.unit_id(t) if units else t for t in stream]


@pytest.mark.parametrize("pattern", PATTERNS, ids=lambda p: p.name)
def test_cached_equals_full_recompute(pattern):
    cached = decode(pattern)
    full = decode(pattern, use_cache=False)
    assert summary(cached) == summary(full)
    assert len({r.steps for r in cached}) > 1  # rows leave the batch at different steps


def test_cached_equals_full_recompute_when_sampling():
    config = {"do_sample": True, "temperature": 0.8, "top_k": 20, "top_p": 0.9, "seed": 3}
    for pattern in (ESI, PARALLEL):
        cached = decode(pattern, **config)
        assert summary(cached) == summary(decode(pattern, use_cache=False, **config))
        assert summary(cached) == summary(decode(pattern, **config))  # seeded: reproducible
        assert summary(cached) != summary(decode(pattern, **{**config, "seed": 4}))


@pytest.mark.parametrize("pattern", PATTERNS, ids=lambda p: p.name)
def test_batched_equals_one_by_one(pattern):
    model = tiny_model(isinstance(pattern, ParallelPattern))
    batched = decode(pattern, model=model)
    alone = [decode(pattern, [p], model=model)[0] for p in PROMPTS]
    assert summary(batched) == summary(alone)
    assert [r.length - r.steps for r in batched] == [4, 10, 6]  # prompt + <|resp|>


@pytest.mark.parametrize("pattern", [PLAIN, ESI], ids=lambda p: p.name)
def test_interleaved_responses_follow_the_schedule(pattern):
    """Sampled responses (varied lengths and endings) are exactly what the training builder lays out."""
    finished = 0
    for seed in range(4):
        for r in decode(pattern, do_sample=True, seed=seed, max_steps=40):
            schedule = InterleaveSchedule(pattern)
            for token in r.tokens:  # replaying never raises
                kind = {SWITCH: "switch"}.get(token, "speech" if token == EOS or token >= VOCAB.unit_offset else "text")
                schedule.advance(kind, ended=token in (EOT, EOS))
            rebuilt = vocab_ids(interleave_response(pattern, r.text, r.units))
            assert list(r.tokens) == rebuilt[: len(r.tokens)]  # n:m chunks, pads, switch: all as in training
            if r.finish_reason == "stop":
                finished += 1
                assert schedule.expect() == "done" and list(r.tokens) == rebuilt and r.steps == len(rebuilt)
            else:
                assert r.steps == 40 and schedule.expect() != "done"
            if pattern.early_stop:
                assert TPAD not in r.tokens
    assert finished >= 3


def test_plain_interleaved_pads_text_chunks_esi_switches():
    plain = next(r for r in decode(PLAIN, max_steps=60) if EOT in r.tokens)
    eot = plain.tokens.index(EOT)
    after = plain.tokens[eot + 1:]
    # the text chunk holding <|eot|> is completed with pads, then 3 speech : 2 pads until speech ends
    assert after[: (eot + 1) % 2] == (TPAD,) * ((eot + 1) % 2)
    assert TPAD in after and SWITCH not in plain.tokens and all(t != EOT for t in after)
    esi = next(r for r in decode(ESI, max_steps=60) if EOT in r.tokens)
    eot = esi.tokens.index(EOT)
    assert esi.tokens[eot + 1] == SWITCH and TPAD not in esi.tokens
    assert all(t >= VOCAB.unit_offset or t == EOS for t in esi.tokens[eot + 2:])


def test_forced_end_tokens_stop_each_pattern():
    strong = 50.0
    for pattern in PATTERNS:
        model = tiny_model(isinstance(pattern, ParallelPattern), eot_bias=strong, eos_bias=strong)
        r = decode(pattern, model=model)[0]
        assert r.finish_reason == "stop" and r.text == () and r.units == ()
        if isinstance(pattern, ParallelPattern):
            span = parallel_response(pattern, [], [])
            assert list(r.tokens) == stream_ids(span.text, False)
            assert list(r.speech_stream) == stream_ids(span.speech, True)
        else:
            assert list(r.tokens) == vocab_ids(interleave_response(pattern, [], []))
    # only the text ends: ESI switches and speaks until max_steps; only the speech ends: the text goes on alone
    text_ends = decode(ESI, model=tiny_model(False, eot_bias=strong, eos_bias=-strong))[0]
    assert text_ends.tokens[:2] == (EOT, SWITCH) and len(text_ends.units) == 38 and text_ends.finish_reason == "length"
    speech_ends = decode(PLAIN, model=tiny_model(False, eot_bias=-strong, eos_bias=strong))[0]
    assert speech_ends.tokens[2] == EOS and speech_ends.units == () and len(speech_ends.text) == 39
    assert speech_ends.first_unit_step is None and speech_ends.first_unit_s is None


@pytest.mark.parametrize("delay", [0, 1, 3])
def test_parallel_respects_the_speech_delay(delay):
    pattern = ParallelPattern(f"p{delay}", speech_delay=delay)
    for r in decode(pattern, do_sample=True, seed=1):
        assert r.speech_stream[:delay] == (SPAD,) * delay
        assert delay == len(r.speech_stream) or r.speech_stream[delay] != SPAD  # speech starts right after
        assert r.first_unit_step is None or r.first_unit_step == delay + 1
        span = parallel_response(pattern, r.text, r.units)
        assert list(r.tokens) == stream_ids(span.text, False)[: r.steps]
        assert list(r.speech_stream) == stream_ids(span.speech, True)[: r.steps]
        if r.finish_reason == "stop":
            assert r.steps == len(span.text)


def test_parallel_needs_a_speech_head_and_prompts_end_before_resp():
    with pytest.raises(ConfigError, match="speech head"):
        decode(PARALLEL, model=tiny_model(False))
    with pytest.raises(ValueError, match="already ends with"):
        decode(ESI, prompts=[Braid((TextSpan((1,), False), SpecialSpan("<|resp|>")))])
    with pytest.raises(ConfigError, match="unit_chunk"):
        PatternDecodeConfig(unit_chunk=0)
    with pytest.raises(ConfigError, match="top_p"):
        PatternDecodeConfig(top_p=0.0)


@pytest.mark.parametrize("pattern", PATTERNS, ids=lambda p: p.name)
def test_streaming_chunks_arrive_in_order_and_add_up(pattern):
    events: list[tuple[int, object]] = []
    responses = decode(pattern, on_chunk=lambda i, chunk: events.append((i, chunk)), unit_chunk=4, max_steps=40)
    assert summary(responses) == summary(decode(pattern, max_steps=40))  # streaming changes nothing
    for i, r in enumerate(responses):
        mine = [c for j, c in events if j == i]
        texts = [c for c in mine if isinstance(c, TextChunk)]
        units = [c for c in mine if isinstance(c, UnitChunk)]
        assert tuple(t for c in texts for t in c.tokens) == r.text
        assert tuple(u for c in units for u in c.units) == r.units
        assert [c.step for c in mine] == sorted(c.step for c in mine)  # in decoding order
        assert all(len(c.units) == 4 for c in units[:-1]) and 0 <= len(units[-1].units) <= 4
        assert [c.last for c in units] == [False] * (len(units) - 1) + [True]
        if r.units:  # each full chunk is sent at the step of its 4th unit
            assert units[0].step >= r.first_unit_step


def fake_vocoder(units):
    return np.repeat(np.asarray(units, dtype=np.float32), 4)  # 4 samples per unit


class FakeStream:
    """Holds back the last 2 units until flush, like a vocoder that needs right context."""

    def __init__(self) -> None:
        self.pending: list[int] = []

    def push(self, units):
        self.pending += list(units)
        ready, self.pending = self.pending[:-2], self.pending[-2:]
        return fake_vocoder(ready)

    def flush(self):
        ready, self.pending = self.pending, []
        return fake_vocoder(ready)


def test_vocoder_stream_turns_unit_chunks_into_audio():
    played: list[tuple[int, int]] = []
    texts: list[int] = []
    stream = VocoderStream(FakeStream, on_audio=lambda i, audio: played.append((i, len(audio))),
                           on_text=lambda i, chunk: texts.extend(chunk.tokens) if i == 0 else None)
    responses = decode(ESI, on_chunk=stream, unit_chunk=5, max_steps=40)
    for i, r in enumerate(responses):
        np.testing.assert_array_equal(stream.waveform(i), fake_vocoder(r.units))
        assert all(n <= 20 for j, n in played if j == i)
    assert tuple(texts) == responses[0].text
    assert any(len(r.units) > 5 for r in responses)  # several chunks really were vocoded


def test_teacher_forced_lengths_esi_is_shorter():
    text, units = list(range(12)), list(range(75))  # 12 text tokens, 3 s of 25 Hz units
    plain, esi, par = (teacher_forced_lengths(get_pattern(n), [(text, units)])[0]
                       for n in ("interleaved", "esi", "parallel"))
    assert esi == 12 + 1 + 1 + 75 + 1  # text, eot, switch, units, eos_speech
    # plain 5:10: 3 text chunks (12 tokens, eot, 2 pads), then 5 all-pad text chunks before the speech chunks
    # that carry the remaining 45 units and eos_speech
    assert plain == 15 + 5 * 5 + 75 + 1
    assert par == 1 + 75 + 1
    assert esi < plain and par < esi


def test_measure_pattern_decoding_reports_every_pattern():
    model = tiny_model(True)
    report = measure_pattern_decoding(model, PROMPTS, [PLAIN, ESI, PARALLEL], None, PatternDecodeConfig(max_steps=20))
    assert [row["pattern"] for row in report] == [p.name for p in PATTERNS]
    for row, pattern in zip(report, PATTERNS, strict=True):
        responses = decode(pattern, model=model, max_steps=20)
        assert row["steps_mean"] == pytest.approx(sum(r.steps for r in responses) / 3)
        assert row["units"] == sum(len(r.units) for r in responses)
        assert row["wall_s"] > 0 and row["units_per_s"] == pytest.approx(row["units"] / row["wall_s"])
        assert row["first_chunk_s_mean"] is None or 0 < row["first_chunk_s_mean"] <= row["wall_s"]


@pytest.mark.parametrize("pattern", PATTERNS, ids=lambda p: p.name)
def test_greedy_tokens_are_constrained_argmaxes_of_the_training_forward(pattern):
    """Replay each finished response as a training braid through prepare_inputs (combine_streams for the
    parallel streams) and both heads: every free choice is the argmax over what its rule allows."""
    model = tiny_model(isinstance(pattern, ParallelPattern))
    text_rule = [*range(VOCAB.text_size), EOT]
    speech_rule = [*range(VOCAB.unit_offset, VOCAB.size), EOS]
    checked = 0
    for prompt, r in zip(PROMPTS, decode(pattern, model=model), strict=True):
        if r.finish_reason != "stop":
            continue
        response = ([parallel_response(pattern, r.text, r.units)] if isinstance(pattern, ParallelPattern)
                    else interleave_response(pattern, r.text, r.units))
        braid = Braid((*prompt.spans, SpecialSpan("<|resp|>"), *response))
        batch = collate([[flatten_braid(braid, VOCAB, 12.5)]])
        with torch.no_grad():
            inputs = model.prepare_inputs(batch)
            out = model.llm(inputs_embeds=inputs.inputs_embeds, attention_mask=inputs.attention_mask,
                            position_ids=inputs.position_ids, output_hidden_states=True)
        start = len(prompt.spans[0].tokens)  # the <|resp|> position predicts the first response token
        heads = [(out.logits[0], r.tokens)]
        if model.speech_head is not None:
            heads.append((model.speech_head(out.hidden_states[-1][0]), r.speech_stream))
        for logits, stream in heads:  # response_steps of the training braid == decoding steps
            assert len(stream) == r.steps == response_steps(braid) == inputs.inputs_embeds.shape[1] - start - 1
            for i, token in enumerate(stream):
                for rule in (text_rule, speech_rule):
                    if token in rule:
                        scores = logits[start + i, rule]
                        assert rule[int(scores.argmax())] == token
                        checked += 1
    assert checked >= 10

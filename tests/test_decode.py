"""Decoding on tiny real HF models: KV cache vs full recompute, left padding, beam search, stopping, sampling."""

from dataclasses import replace

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from speechbraid.batching import collate, flatten_braid
from speechbraid.braid import Braid, SpecialSpan, SpeechSpan, TextSpan, VocabLayout
from speechbraid.data.records import Utterance
from speechbraid.errors import ConfigError
from speechbraid.inference import DecodeConfig, asr_prompt, generate, measure_decode_speed
from speechbraid.models.adapter import FrameStackAdapter
from speechbraid.models.encoders import ConformerConfig, ConformerEncoder
from speechbraid.models.lm_state import LMState
from speechbraid.models.speech_llm import SpeechLLM

RATE = 12.5
VOCAB = VocabLayout(text_size=64)
FAMILIES = ["llama", "gpt2"]


def tiny_model(family: str) -> SpeechLLM:
    torch.manual_seed(0)
    if family == "llama":
        llm = LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB.size, hidden_size=32, num_hidden_layers=2,
                                           num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
                                           max_position_embeddings=256))
    else:
        llm = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB.size, n_embd=32, n_layer=2, n_head=4, n_positions=256,
                                         bos_token_id=0, eos_token_id=0))
    encoder = ConformerEncoder(ConformerConfig(d_model=16, n_layers=1, n_heads=2, dropout=0.0))
    return SpeechLLM(encoder, FrameStackAdapter(16, 32), llm.eval(), VOCAB, RATE).eval()


def features(path: str) -> torch.Tensor:
    """Deterministic fake log-mels: the path names a seed and a duration, e.g. ``"3-0.4.wav"``."""
    seed, duration = path.removesuffix(".wav").split("-")
    return torch.randn(int(float(duration) * 100), 80, generator=torch.Generator().manual_seed(int(seed)))


def speech_prompt(seed: int, duration: float, context: tuple[int, ...] = ()) -> Braid:
    spans = ((TextSpan(context, False),) if context else ()) + (SpeechSpan(0.0, duration), SpecialSpan("<|asr|>"))
    return Braid(spans, id=f"p{seed}", audio=f"{seed}-{duration}.wav", duration=duration)


def text_prompt(tokens: tuple[int, ...]) -> Braid:
    return Braid((TextSpan(tokens, False),), id="t")


# Same audio duration (the speech encoder is not invariant to padding inside a batch of audios), different
# prompt lengths through the text context, plus a text-only prompt: rows need 0..10 columns of left padding.
PROMPTS = [
    speech_prompt(1, 0.4),
    speech_prompt(2, 0.4, context=(3, 4, 5, 6, 7, 8, 9, 10)),
    text_prompt((11, 12, 13)),
]


def teacher_forced_log_prob(model: SpeechLLM, prompt: Braid, tokens: tuple[int, ...]) -> float:
    """log p(tokens | prompt) through the training path (model.forward), independent of the decoder."""
    braid = Braid((*prompt.spans, TextSpan(tokens, True)), id=prompt.id, audio=prompt.audio,
                  duration=prompt.duration)
    batch = collate([[flatten_braid(braid, VOCAB, RATE)]], features)
    with torch.no_grad():
        _, logits = model(batch)
    n = len(tokens)
    logp = torch.log_softmax(logits[0, -n - 1:-1].float(), dim=-1)
    return float(logp.gather(1, torch.tensor(tokens)[:, None]).sum())


@pytest.mark.parametrize("family", FAMILIES)
def test_cached_greedy_equals_full_recompute(family):
    model = tiny_model(family)
    config = DecodeConfig(max_new_tokens=10)
    cached = generate(model, PROMPTS, features, config)
    full = generate(model, PROMPTS, features, config, use_cache=False)
    assert [r.tokens for r in cached] == [r.tokens for r in full]
    assert all(len(r.tokens) == 10 and r.finish_reason == "length" and r.steps == 10 for r in cached)
    assert [r.log_prob for r in cached] == pytest.approx([r.log_prob for r in full], abs=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("inputs", ["ids", "embeds"])
def test_lm_state_gives_the_same_logits_with_and_without_the_cache(family, inputs):
    """The one stepper over several steps fed token ids or embeddings, with a beam-like reorder that repeats rows
    and a finished row dropped: the KV cache gives the logits and hidden states of recomputing everything."""
    model = tiny_model(family)
    generator = torch.Generator().manual_seed(0)

    def same(outs, n):
        (cached_logits, cached_hidden), (full_logits, full_hidden) = outs
        assert cached_logits.shape == (n, VOCAB.size) and cached_hidden.shape == (n, 32)
        torch.testing.assert_close(cached_logits, full_logits, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(cached_hidden, full_hidden, atol=1e-5, rtol=1e-4)

    with torch.no_grad():
        states = [LMState.from_prompts(model, PROMPTS, features, use_cache, hidden=True) for use_cache in (True, False)]
        n = len(PROMPTS)
        same([state.first() for state in states], n)
        for rows in (None, [2, 0, 0, 1], None, [3, 1, 2], None):
            if rows is not None:
                for state in states:
                    state.select(torch.tensor(rows))
                n = len(rows)
            new = (torch.randint(0, VOCAB.size, (n,), generator=generator) if inputs == "ids"
                   else 0.02 * torch.randn(n, 32, generator=generator))
            same([state.step(new) for state in states], n)
    assert states[0].embeds is None and states[1].embeds.shape[:2] == states[1].mask.shape  # only one recomputes


@pytest.mark.parametrize("family", FAMILIES)
def test_batched_left_padding_equals_one_by_one(family):
    model = tiny_model(family)
    assert len({len(flatten_braid(p, VOCAB, RATE)) for p in PROMPTS}) == 3  # really different lengths
    config = DecodeConfig(max_new_tokens=8)
    batched = generate(model, PROMPTS, features, config)
    alone = [generate(model, [p], features, config)[0] for p in PROMPTS]
    assert [r.tokens for r in batched] == [r.tokens for r in alone]
    assert [r.log_prob for r in batched] == pytest.approx([r.log_prob for r in alone], abs=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_scores_are_the_models_log_probabilities(family):
    model = tiny_model(family)
    results = generate(model, PROMPTS, features, DecodeConfig(max_new_tokens=6, length_penalty=1.0))
    for prompt, result in zip(PROMPTS, results, strict=True):
        expected = teacher_forced_log_prob(model, prompt, result.tokens)
        assert result.log_prob == pytest.approx(expected, abs=1e-4)
        assert result.score == pytest.approx(expected / 6, abs=1e-5)
        # greedy: every step took the argmax under the same teacher-forced distribution
        assert result.n_best[0].tokens == result.tokens


def test_beam_size_one_equals_greedy():
    model = tiny_model("llama")
    greedy = generate(model, PROMPTS, features, DecodeConfig(max_new_tokens=8))
    beam1 = generate(model, PROMPTS, features, DecodeConfig(max_new_tokens=8, beam_size=1))
    assert [(r.tokens, r.log_prob) for r in greedy] == [(r.tokens, r.log_prob) for r in beam1]


@pytest.mark.parametrize("family", FAMILIES)
def test_beam_search_cached_equals_uncached_and_one_by_one(family):
    model = tiny_model(family)
    config = DecodeConfig(max_new_tokens=6, beam_size=3, length_penalty=0.7)
    cached = generate(model, PROMPTS, features, config)
    full = generate(model, PROMPTS, features, config, use_cache=False)
    alone = [generate(model, [p], features, config)[0] for p in PROMPTS]
    for c, f, a in zip(cached, full, alone, strict=True):
        assert [h.tokens for h in c.n_best] == [h.tokens for h in f.n_best] == [h.tokens for h in a.n_best]
        assert [h.score for h in c.n_best] == pytest.approx([h.score for h in f.n_best], abs=1e-5)
        assert len(c.n_best) == 3 and len({h.tokens for h in c.n_best}) == 3
        assert [h.score for h in c.n_best] == sorted((h.score for h in c.n_best), reverse=True)
        assert c.tokens == c.n_best[0].tokens


def test_full_width_beam_search_finds_the_exact_optimum_and_beats_greedy():
    """With beam_size = vocabulary size, two steps of beam search are exhaustive."""
    model = tiny_model("gpt2")
    prompt = PROMPTS[0]
    vocab = VOCAB.size
    braids = [Braid((*prompt.spans, TextSpan((t,), True)), audio=prompt.audio, duration=prompt.duration)
              for t in range(vocab)]
    batch = collate([[flatten_braid(b, VOCAB, RATE)] for b in braids], features)
    with torch.no_grad():
        _, logits = model(batch)
    logp = torch.log_softmax(logits[:, -2:].float(), dim=-1)  # every row has the same length
    totals = logp[:, 0].gather(1, torch.arange(vocab)[:, None]) + logp[:, 1]  # (first token, second token)
    best = int(totals.argmax())
    config = DecodeConfig(max_new_tokens=2, beam_size=vocab, length_penalty=0.0)
    beam = generate(model, [prompt], features, config)[0]
    greedy = generate(model, [prompt], features, DecodeConfig(max_new_tokens=2, length_penalty=0.0))[0]
    assert beam.tokens == (best // vocab, best % vocab)
    assert beam.score == pytest.approx(float(totals.max()), abs=1e-4)
    assert beam.score >= greedy.score - 1e-6


def test_stop_token_ends_only_its_sequence():
    model = tiny_model("llama")
    free = generate(model, PROMPTS, features, DecodeConfig(max_new_tokens=8))
    # the first token the first prompt emits for the first time after step 1 becomes the stop token
    k = next(i for i, t in enumerate(free[0].tokens) if i > 0 and t not in free[0].tokens[:i])
    stop_id = free[0].tokens[k]
    config = DecodeConfig(max_new_tokens=8, stop_ids=(stop_id,))
    batched = generate(model, PROMPTS, features, config)
    assert batched[0].tokens == free[0].tokens[:k]
    assert batched[0].finish_reason == "stop" and batched[0].steps == k + 1
    assert batched[0].log_prob == pytest.approx(
        teacher_forced_log_prob(model, PROMPTS[0], free[0].tokens[: k + 1]), abs=1e-4)  # stop token counts
    alone = [generate(model, [p], features, config)[0] for p in PROMPTS]
    uncached = generate(model, PROMPTS, features, config, use_cache=False)
    assert [r.tokens for r in batched] == [r.tokens for r in alone] == [r.tokens for r in uncached]
    for r in batched:
        assert stop_id not in r.tokens
        assert len(r.tokens) == (r.steps - 1 if r.finish_reason == "stop" else 8)


def eos_dominated_model(eos: int) -> SpeechLLM:
    """A tiny model whose every prediction is ``eos`` by far."""
    model = tiny_model("llama")
    bias = torch.zeros(VOCAB.size)
    bias[eos] = 50.0
    model.llm.lm_head.bias = torch.nn.Parameter(bias)
    return model


@pytest.mark.parametrize("beam_size", [1, 3])
def test_forced_eos_stops_immediately(beam_size):
    eos = 2
    model = eos_dominated_model(eos)
    results = generate(model, PROMPTS, features, DecodeConfig(max_new_tokens=5, beam_size=beam_size,
                                                              stop_ids=(eos,)))
    assert all(r.tokens == () and r.finish_reason == "stop" and r.log_prob > -1e-3 for r in results)
    # greedy stops at once; beam search first needs beam_size finished hypotheses (HF semantics): the other
    # first tokens are followed by EOS at step 2, after which no live beam can compete
    assert all(r.steps == (1 if beam_size == 1 else 2) for r in results)
    if beam_size > 1:
        assert all(len(r.n_best) == beam_size and r.n_best[1].finish_reason == "stop" for r in results)


@pytest.mark.parametrize("beam_size", [1, 3])
def test_min_new_tokens_rules_out_stop_ids_until_reached(beam_size):
    """Regression: an ASR-tuned SmolLM2 ended every spoken-QA prompt with EOS at once (all answers empty)."""
    eos = 2
    model = eos_dominated_model(eos)
    config = DecodeConfig(max_new_tokens=5, min_new_tokens=2, beam_size=beam_size, stop_ids=(eos,))
    for r in generate(model, PROMPTS, features, config):
        assert len(r.tokens) == 2 and eos not in r.tokens and r.finish_reason == "stop" and r.steps == 3


def test_sampling_is_reproducible_with_a_seed():
    model = tiny_model("llama")

    def sample(seed: int, **kw):
        config = DecodeConfig(max_new_tokens=12, do_sample=True, seed=seed, **kw)
        return [r.tokens for r in generate(model, PROMPTS, features, config)]

    assert sample(7, temperature=1.5) == sample(7, temperature=1.5)
    assert sample(7, temperature=1.5) != sample(8, temperature=1.5)
    greedy = [r.tokens for r in generate(model, PROMPTS, features, DecodeConfig(max_new_tokens=12))]
    assert sample(3, top_k=1) == greedy  # top-k = 1 leaves only the argmax
    assert sample(3, top_p=1e-6) == greedy  # so does a tiny nucleus


def test_asr_prompt_places_context_before_speech_and_decodes():
    class Tok:
        eos_id = bos_id = 1

        def encode(self, text: str) -> list[int]:
            return [3 + len(w) for w in text.split()]

        def decode(self, ids: list[int]) -> str:
            return " ".join(map(str, ids))

    record = Utterance(id="u", text="hello", audio="5-0.4.wav", duration=0.4)
    plain = asr_prompt(record)
    with_context = asr_prompt(record, "cardiology clinic", Tok())
    assert [type(s) for s in plain.spans] == [SpeechSpan, SpecialSpan]
    assert with_context.spans[0] == TextSpan((13, 9), False, "cardiology clinic")
    assert with_context.spans[1:] == plain.spans
    results = generate(tiny_model("llama"), [plain, with_context], features, DecodeConfig(max_new_tokens=3))
    assert len(results) == 2 and results[0].log_prob != pytest.approx(results[1].log_prob)  # context matters
    with pytest.raises(ValueError, match="no audio"):
        asr_prompt(Utterance(id="x", text="t"))
    with pytest.raises(ValueError, match="tokenizer"):
        asr_prompt(record, "context")


class ZeroScorer:
    def step_scores(self, tokens, candidates, stop_ids):
        return [0.0] * len(candidates)

    def proposals(self, tokens):
        return []


class DictatingScorer:
    """Allows only the next token of ``target`` (a penalty on anything else), then only a stop id."""

    def __init__(self, target: tuple[int, ...], propose: bool = False) -> None:
        self.target = target
        self.propose = propose

    def proposals(self, tokens):
        return self.target[len(tokens):len(tokens) + 1] if self.propose else []

    def step_scores(self, tokens, candidates, stop_ids):
        if tuple(tokens) != self.target[:len(tokens)]:
            return [-50.0] * len(candidates)
        wanted = self.target[len(tokens)] if len(tokens) < len(self.target) else None
        return [0.0 if c == wanted or (wanted is None and c in stop_ids) else -50.0 for c in candidates]


def test_a_neutral_prefix_scorer_leaves_beam_search_as_it_is():
    model = tiny_model("llama")
    config = DecodeConfig(max_new_tokens=6, beam_size=3, stop_ids=(2,))
    plain = generate(model, PROMPTS, features, config)
    joint = generate(model, PROMPTS, features, config, scorers=[ZeroScorer()] * len(PROMPTS))
    assert [[h.tokens for h in r.n_best] for r in joint] == [[h.tokens for h in r.n_best] for r in plain]
    assert [r.score for r in joint] == pytest.approx([r.score for r in plain], abs=1e-5)


@pytest.mark.parametrize("beam_size", [1, 3])
def test_a_prefix_scorer_steers_each_prompt_to_its_own_text(beam_size):
    """Joint decoding: a heavy-weighted scorer (here dictating a token sequence, as a CTC bridge keeps an LLM on
    the audio) wins over the LM, prompt by prompt, at any beam size (greedy too)."""
    model = tiny_model("llama")
    targets = [(5, 6, 7, 8), (9, 10), (11, 12, 13)]
    config = DecodeConfig(max_new_tokens=8, beam_size=beam_size, stop_ids=(2,), ctc_weight=0.9,
                          pre_beam=VOCAB.size)
    results = generate(model, PROMPTS, features, config, scorers=[DictatingScorer(t) for t in targets])
    assert [r.tokens for r in results] == targets
    assert all(r.finish_reason == "stop" for r in results)
    # with one candidate per step (pre_beam 1) the targets are reached only through the scorer's proposals
    narrow = replace(config, pre_beam=1)
    assert [r.tokens for r in generate(model, PROMPTS, features, narrow,
                                       scorers=[DictatingScorer(t) for t in targets])] != targets
    assert [r.tokens for r in generate(model, PROMPTS, features, narrow,
                                       scorers=[DictatingScorer(t, propose=True) for t in targets])] == targets
    with pytest.raises(ValueError, match="one scorer per prompt"):
        generate(model, PROMPTS, features, config, scorers=[ZeroScorer()])
    with pytest.raises(ValueError, match="not sampling"):
        generate(model, PROMPTS[:1], features, DecodeConfig(do_sample=True, ctc_weight=0.5), scorers=[ZeroScorer()])


@pytest.mark.parametrize("bad", [dict(max_new_tokens=0), dict(beam_size=0), dict(temperature=0.0),
                                 dict(top_p=0.0), dict(top_k=-1), dict(do_sample=True, beam_size=2),
                                 dict(min_new_tokens=-1), dict(max_new_tokens=2, min_new_tokens=3),
                                 dict(ctc_weight=1.0), dict(ctc_weight=-0.1), dict(pre_beam=0)])
def test_invalid_decode_config_is_a_config_error(bad):
    with pytest.raises(ConfigError):
        DecodeConfig(**bad)


def test_measure_decode_speed_reports_both_paths():
    model = tiny_model("gpt2")
    stats = measure_decode_speed(model, PROMPTS, features, DecodeConfig(max_new_tokens=6))
    assert stats["same_tokens"] is True and stats["new_tokens"] == 18
    assert stats["cached_s"] > 0 and stats["uncached_s"] > 0
    assert stats["speedup"] == pytest.approx(stats["uncached_s"] / stats["cached_s"])

"""Decoding settings, kept apart from the decoders (which need torch) so the CLI derives its options from them
without importing torch: :class:`DecodeConfig` for text decoding (ASR, spoken QA) and :class:`PatternDecodeConfig`
for joint text-speech responses under a generation pattern."""

from __future__ import annotations

from dataclasses import dataclass

from speechbraid.errors import ConfigError


@dataclass(frozen=True)
class DecodeConfig:
    """How to decode. ``stop_ids`` end a sequence (pass the tokenizer's EOS, and e.g. ``<|eot|>``'s id).

    Scores are ``log_prob / steps ** length_penalty`` where ``log_prob`` is the model's (untempered)
    log-probability of the generated tokens INCLUDING the stop token and ``steps`` counts them too;
    beam search ranks hypotheses by this score, and greedy/sampled results report it the same way.
    """

    max_new_tokens: int = 64
    # stop ids are ruled out before this many new tokens (a forced non-empty answer); those steps' log-probabilities
    # are renormalised over the other tokens
    min_new_tokens: int = 0
    beam_size: int = 1
    length_penalty: float = 1.0
    stop_ids: tuple[int, ...] = ()
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0  # 0 = no top-k filter
    top_p: float = 1.0  # 1.0 = no nucleus filter
    seed: int = 0
    # joint decoding with prefix scorers (a CTC bridge): their weight against the LM's, and how many of each beam's
    # likeliest LM tokens they score per step
    ctc_weight: float = 0.0
    pre_beam: int = 8

    def __post_init__(self) -> None:
        if not 0 <= self.ctc_weight < 1:
            raise ConfigError(f"ctc_weight must be in [0, 1), got {self.ctc_weight}")
        if self.pre_beam < 1:
            raise ConfigError(f"pre_beam must be >= 1, got {self.pre_beam}")
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise ConfigError(f"min_new_tokens must be in [0, max_new_tokens={self.max_new_tokens}], "
                              f"got {self.min_new_tokens}")
        if self.beam_size < 1:
            raise ConfigError(f"beam_size must be >= 1, got {self.beam_size}")
        if self.do_sample and self.beam_size > 1:
            raise ConfigError("sampling and beam search cannot be combined; set beam_size=1 or do_sample=False")
        if self.temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")
        if self.top_k < 0:
            raise ConfigError(f"top_k must be >= 0, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")


@dataclass(frozen=True)
class PatternDecodeConfig:
    """How to decode a response. ``max_steps`` bounds the response positions (parallel: one per text/speech
    pair); ``unit_chunk`` is how many units a streamed :class:`UnitChunk` carries (the last one may be shorter).
    Sampling settings mean what they mean in :class:`DecodeConfig`."""

    max_steps: int = 512  # response positions at most
    do_sample: bool = False  # sample instead of greedy
    temperature: float = 1.0  # sampling temperature
    top_k: int = 0  # 0 = no top-k filter
    top_p: float = 1.0  # 1.0 = no nucleus filter
    seed: int = 0  # seed of the sampler
    unit_chunk: int = 10  # units per streamed chunk

    def __post_init__(self) -> None:
        if self.unit_chunk < 1:
            raise ConfigError(f"unit_chunk must be >= 1, got {self.unit_chunk}")
        self.sampling()  # the same validation as the text decoder's settings

    def sampling(self) -> DecodeConfig:
        return DecodeConfig(max_new_tokens=self.max_steps, do_sample=self.do_sample, temperature=self.temperature,
                            top_k=self.top_k, top_p=self.top_p, seed=self.seed)

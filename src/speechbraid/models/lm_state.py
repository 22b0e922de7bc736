"""The decoding state of a :class:`~speechbraid.models.speech_llm.SpeechLLM`: a batch of rows and its KV cache.

It sits beside the model (as Moshi's ``LMGen`` beside its ``LMModel``) and owns how the LM advances; the search
loops in ``speechbraid.inference`` - greedy, sampling and beam search for ASR and text, the interleaved / ESI /
parallel generation patterns - only decide what comes next.

Prompts are braid prefixes, assembled by ``SpeechLLM.prepare_inputs`` (the one embedding-assembly place) and moved
to LEFT padding so every row's last prompt position is the last column: one forward pass yields every row's
next-token logits, and each new position is appended in the same column for all rows. The LM gets a 2D attention
mask (1 = real, 0 = pad) and position ids that count real positions only, so a padded row computes exactly what it
would compute alone.

With ``use_cache`` the KV cache (``DynamicCache``) holds the sequence so far and a step feeds one position; without
it every step recomputes the whole sequence - the reference the cache is tested and benchmarked against.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from speechbraid.batching.collate import collate, flatten_braid
from speechbraid.braid.spans import Braid
from speechbraid.models.speech_llm import SpeechLLM

Next = tuple[torch.Tensor, torch.Tensor | None]  # next-token logits (N, V), last hidden state (N, D) if asked


class LMState:
    """Rows being decoded: ``first()`` runs the prompts, ``step()`` appends one position per row, ``select()``
    keeps, reorders or repeats rows (finished rows leave, beams follow their source). ``hidden`` also returns the
    last hidden state (the speech head's input in the parallel pattern)."""

    def __init__(self, model: SpeechLLM, embeds: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
                 use_cache: bool = True, hidden: bool = False) -> None:
        self.model = model
        self.use_cache = use_cache
        self.hidden = hidden
        self.embeds: torch.Tensor | None = embeds  # (N, L, D) left-padded; dropped once the cache holds the prompt
        self.mask = mask  # (N, L) 1 = real
        self.positions = positions  # (N, L) 0.. over real positions; 0 at padding
        self.cache: Any = None

    @classmethod
    def from_prompts(cls, model: SpeechLLM, prompts: Sequence[Braid], features: Callable[[str], torch.Tensor] | None,
                     use_cache: bool = True, hidden: bool = False) -> LMState:
        """Collate the prompt braids (one per row), assemble their embeddings and left-align the rows.

        ``features(path)`` gives ``(T, n_mels)`` for a prompt's audio (None if no prompt has speech).
        """
        device = next(model.parameters()).device
        select = model.frame_selector(features) if features is not None else None
        flats = [flatten_braid(p, model.vocab, model.frame_rate, select) for p in prompts]
        for p, flat in zip(prompts, flats, strict=True):
            if len(flat) == 0:
                raise ValueError(f"prompt {p.id!r} is empty; decoding needs at least one prompt position")
        batch = collate([[f] for f in flats], features).to(device)
        prepared = model.prepare_inputs(batch)
        real = batch.example_ids > 0  # collate right-pads; shift every row right by its padding
        lengths = real.sum(dim=1, keepdim=True)
        width = real.shape[1]
        cols = torch.arange(width, device=device)[None, :]
        source = (cols - (width - lengths)).clamp(min=0)
        is_real = cols >= width - lengths
        embeds = prepared.inputs_embeds.gather(1, source[..., None].expand_as(prepared.inputs_embeds))
        embeds = embeds * is_real[..., None].to(embeds.dtype)
        positions = torch.where(is_real, prepared.position_ids.gather(1, source), 0)
        return cls(model, embeds, is_real.long(), positions, use_cache, hidden)

    def first(self) -> Next:
        """The next-token logits (and hidden state) after the prompts."""
        out = self._run(self.embeds, self.positions)
        if self.use_cache:
            self.embeds = None  # the cache holds everything the prompt contributes from here on
        return out

    def step(self, inputs: torch.Tensor) -> Next:
        """Append one position per row - token ids ``(N,)`` or input embeddings ``(N, D)`` (a parallel position
        combines two streams) - and return the next-token logits (and hidden state)."""
        # ids go through the lookup the LM itself does for input_ids, so both input kinds take one path
        embeds = (inputs if inputs.is_floating_point() else self.model.embed_tokens(inputs))[:, None]
        new = self.positions[:, -1:] + 1
        self.mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], dim=1)
        self.positions = torch.cat([self.positions, new], dim=1)
        if self.use_cache:
            return self._run(embeds, new)
        self.embeds = torch.cat([self.embeds, embeds], dim=1)
        return self._run(self.embeds, self.positions)

    def select(self, rows: torch.Tensor) -> None:
        """Keep the rows ``rows`` (indices; repeats allowed) in this order, in the mask, positions and cache."""
        self.mask, self.positions = self.mask[rows], self.positions[rows]
        if self.cache is not None:
            self.cache.batch_select_indices(rows)
        if self.embeds is not None:
            self.embeds = self.embeds[rows]

    def _run(self, embeds: torch.Tensor, positions: torch.Tensor) -> Next:
        out = self.model.lm_forward(embeds, self.mask, positions, self.cache, use_cache=self.use_cache, keep=1,
                                    hidden=self.hidden)
        self.cache = out.cache
        return out.logits[:, -1], (out.hidden[:, -1] if self.hidden else None)

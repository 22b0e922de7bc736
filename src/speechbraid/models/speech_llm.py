"""The decoder-only speech LLM: speech encoder -> adapter -> embeddings assembly -> causal LM.

:meth:`SpeechLLM.prepare_inputs` is the one place in the toolkit that turns a batch of braids into
``inputs_embeds``, labels and attention structure. It runs the encoder once per distinct audio in the
batch (word-level interleaving included: spans are cut from the whole-utterance encoding, never
encoded one by one) and scatters adapter frames to the speech positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from speechbraid.batching.collate import IGNORE_INDEX, BraidBatch
from speechbraid.braid.vocab import VocabLayout


@dataclass
class PreparedInputs:
    inputs_embeds: torch.Tensor  # (B, L, D)
    attention_mask: torch.Tensor  # (B, 1, L, L) additive: 0 = may attend, dtype-min = blocked
    position_ids: torch.Tensor  # (B, L)
    labels: torch.Tensor  # (B, L) shifted: labels[:, i] is the target predicted at position i
    stream_labels: torch.Tensor | None = None  # (B, L) shifted targets of the speech head (parallel pattern)


def packed_causal_mask(example_ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Block-diagonal causal mask: position i sees j only if j <= i and both belong to the same example.

    Padding (example id 0) sees only itself, so no row of the softmax is empty.
    """
    length = example_ids.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=example_ids.device).tril()
    same = example_ids[:, :, None] == example_ids[:, None, :]
    allowed = (same & causal) | torch.eye(length, dtype=torch.bool, device=example_ids.device)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=example_ids.device)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min)[:, None]


def shift_labels(labels: torch.Tensor, example_ids: torch.Tensor) -> torch.Tensor:
    """Targets for next-token prediction that never cross an example boundary in a packed row."""
    shifted = torch.full_like(labels, IGNORE_INDEX)
    shifted[:, :-1] = labels[:, 1:]
    crossing = example_ids[:, 1:] != example_ids[:, :-1]
    shifted[:, :-1][crossing] = IGNORE_INDEX
    return shifted


class SpeechLLM(nn.Module):
    """``encoder`` maps (features, lengths) to (frames, lengths); ``adapter`` maps those into the LLM width;
    ``llm`` is any Hugging Face causal LM whose embeddings cover ``vocab.size``.

    With ``speech_head`` the model also predicts a second (speech) stream at every position: the parallel
    generation pattern's separate head; its input embedding is combined with the text stream's by
    ``stream_combine`` ("sum" or "mean").
    """

    def __init__(self, encoder: nn.Module | None, adapter: nn.Module | None, llm: nn.Module, vocab: VocabLayout,
                 frame_rate: float = 12.5, speech_head: bool = False, stream_combine: str = "sum") -> None:
        super().__init__()
        if stream_combine not in ("sum", "mean"):
            raise ValueError(f"stream_combine must be 'sum' or 'mean', got {stream_combine!r}")
        self.encoder = encoder
        self.adapter = adapter
        self.llm = llm
        self.vocab = vocab
        self.frame_rate = frame_rate
        self.stream_combine = stream_combine
        # audio path -> encoder output, filled while the encoder is frozen (stage 1 re-uses it every epoch)
        self.encoder_cache: dict[str, torch.Tensor] | None = None
        if llm.get_input_embeddings().num_embeddings < vocab.size:
            llm.resize_token_embeddings(vocab.size)
        width = llm.get_input_embeddings().embedding_dim
        self.speech_head = nn.Linear(width, vocab.size, bias=False) if speech_head else None

    def encode_speech(self, batch: BraidBatch) -> torch.Tensor:
        """Adapter frames for every audio of the batch, padded/trimmed to the declared frame counts: (A, F, D)."""
        if self.encoder is None or self.adapter is None:
            raise ValueError("this model has no speech encoder, but the batch holds speech")
        if batch.features is None or batch.feature_lengths is None:
            raise ValueError("batch holds speech but no features; pass a feature function to collate()")
        frames, lengths = self._encode(batch)
        frames, _ = self.adapter(frames, lengths)
        declared = int(batch.audio_frames.max())
        if frames.shape[1] < declared:  # the encoder's rounding may give a frame fewer than the time rule
            frames = F.pad(frames, (0, 0, 0, declared - frames.shape[1]))
        return frames[:, :declared]

    def _encode(self, batch: BraidBatch) -> tuple[torch.Tensor, torch.Tensor]:
        frozen = not any(p.requires_grad for p in self.encoder.parameters())
        if self.encoder_cache is None:
            return self.encoder(batch.features, batch.feature_lengths)
        if not frozen:
            # The weights are changing: what is cached belongs to older weights. A fresh private table (not a
            # cleared one): the old one may be shared with other runs that start from those older weights.
            if self.encoder_cache:
                self.encoder_cache = {}
            return self.encoder(batch.features, batch.feature_lengths)
        missing = [i for i, path in enumerate(batch.audio) if path not in self.encoder_cache]
        if missing:
            index = torch.tensor(missing, device=batch.features.device)
            with torch.no_grad():
                out, out_lengths = self.encoder(batch.features[index], batch.feature_lengths[index])
            for row, i in enumerate(missing):
                self.encoder_cache[batch.audio[i]] = out[row, : int(out_lengths[row])].detach()
        cached = [self.encoder_cache[path] for path in batch.audio]
        lengths = torch.tensor([c.shape[0] for c in cached], device=batch.features.device)
        return torch.nn.utils.rnn.pad_sequence(cached, batch_first=True), lengths

    def prepare_inputs(self, batch: BraidBatch) -> PreparedInputs:
        embed = self.llm.get_input_embeddings()
        inputs_embeds = embed(batch.input_ids)
        if bool(batch.speech_mask.any()):
            speech = self.encode_speech(batch).to(inputs_embeds.dtype)
            flat = speech.reshape(-1, speech.shape[-1])
            inputs_embeds = torch.where(batch.speech_mask[..., None], flat[batch.speech_index], inputs_embeds)
        stream_labels = None
        if batch.stream_ids is not None:
            inputs_embeds = self.combine_streams(inputs_embeds, batch.stream_ids)
            stream_labels = shift_labels(batch.stream_labels, batch.example_ids)
        return PreparedInputs(
            inputs_embeds=inputs_embeds,
            attention_mask=packed_causal_mask(batch.example_ids, inputs_embeds.dtype),
            position_ids=batch.position_ids,
            labels=shift_labels(batch.labels, batch.example_ids),
            stream_labels=stream_labels,
        )

    def combine_streams(self, text_embeds: torch.Tensor, stream_ids: torch.Tensor) -> torch.Tensor:
        """Input of a parallel position: the text and speech tokens' embeddings summed or averaged."""
        present = stream_ids >= 0
        combined = text_embeds + self.llm.get_input_embeddings()(stream_ids.clamp(min=0))
        if self.stream_combine == "mean":
            combined = combined / 2
        return torch.where(present[..., None], combined, text_embeds)

    def forward(self, batch: BraidBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean loss over target tokens of both heads, text-head logits)."""
        inputs = self.prepare_inputs(batch)
        parallel = inputs.stream_labels is not None
        if parallel and self.speech_head is None:
            raise ValueError("the batch holds parallel spans but the model has no speech head")
        out = self.llm(inputs_embeds=inputs.inputs_embeds, attention_mask=inputs.attention_mask,
                       position_ids=inputs.position_ids, use_cache=False, output_hidden_states=parallel)
        logits = out.logits
        targets = [(logits, inputs.labels)]
        if parallel:
            targets.append((self.speech_head(out.hidden_states[-1]), inputs.stream_labels))
        total = sum(F.cross_entropy(lg.float().reshape(-1, lg.shape[-1]), lb.reshape(-1), ignore_index=IGNORE_INDEX,
                                    reduction="sum") for lg, lb in targets)
        count = sum(int((lb != IGNORE_INDEX).sum()) for _, lb in targets)
        return total / max(count, 1), logits

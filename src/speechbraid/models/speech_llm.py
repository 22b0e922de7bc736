"""The decoder-only speech LLM: speech encoder -> adapter -> embeddings assembly -> causal LM.

:meth:`SpeechLLM.prepare_inputs` is the one place in the toolkit that turns a batch of braids into
``inputs_embeds``, labels and attention structure. It runs the encoder once per distinct audio in the
batch (word-level interleaving included: spans are cut from the whole-utterance encoding, never
encoded one by one) and scatters adapter frames to the speech positions.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from speechbraid.batching.collate import IGNORE_INDEX, BraidBatch
from speechbraid.braid.vocab import VocabLayout

SPEECH_INPUTS = ("adapter", "ctc", "hypothesis")  # LLM input at speech frames: adapter output, posterior-weighted
# unit embeddings (LegoSLM), or the embeddings of the CTC bridge's greedy hypothesis read as the LLM's own tokens


@dataclass
class PreparedInputs:
    inputs_embeds: torch.Tensor  # (B, L, D)
    attention_mask: torch.Tensor  # (B, 1, L, L) additive: 0 = may attend, dtype-min = blocked
    position_ids: torch.Tensor  # (B, L)
    labels: torch.Tensor  # (B, L) shifted: labels[:, i] is the target predicted at position i
    stream_labels: torch.Tensor | None = None  # (B, L) shifted targets of the speech head (parallel pattern)


@dataclass
class LMOutput:
    logits: torch.Tensor  # (B, K, V) at the kept positions
    hidden: torch.Tensor | None  # (B, L, D) last-layer states of every position (the speech head's input), if asked
    cache: Any  # the KV cache after the call (an HF ``Cache``); None without use_cache


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


def kept_frames(classes: Sequence[int]) -> tuple[int, ...]:
    """CTC compression: the first frame of every run of one non-blank class (blanks and repeats dropped)."""
    return tuple(i for i, c in enumerate(classes) if c != 0 and (i == 0 or c != classes[i - 1]))


@dataclass(frozen=True)
class Spelling:
    """What a character-unit CTC bridge needs of the LLM's tokenizer: each token's text (to spell transcripts),
    the text normalisation it spells (lower case, words between single spaces), and the tokenizer's encoder with
    character offsets (to read a spelled hypothesis back as the LLM's own tokens)."""

    token_text: Sequence[str]  # LLM token id -> its text
    normalize: Callable[[str], str]
    encode: Callable[[str], tuple[list[int], list[tuple[int, int]]]]  # text -> (token ids, (start, end) offsets)


@dataclass(frozen=True)
class Hypothesis:
    """The CTC bridge's greedy output as LLM tokens, each with the adapter frame it is read at (increasing)."""

    tokens: tuple[int, ...]
    frames: tuple[int, ...]


class CTCBridge(nn.Module):
    """CTC over units the LLM knows, scored through the LLM's (frozen) input embeddings plus a learned blank.

    Tsunoo et al. / LegoSLM (METHODS.md section 4): training the adapter with this CTC loss places its output
    in the LLM's embedding space before any LLM step is paid for. Classes: 0 is blank, ``k`` is the LLM token
    ``token_ids[k - 1]``. Units are either the LLM's tokens of the transcripts the vocabulary was built from, or,
    with a ``spelling``, the LLM's single-character tokens of the normalised transcripts: ~30 classes that every
    word is spelled with, so words never heard in training (held-out entities) can still be written, and a step
    costs a fraction of a 5k-token output layer. ``eos_id`` is never a CTC target.
    """

    def __init__(self, token_ids: Sequence[int], width: int, eos_id: int, temperature: float = 1.0,
                 spelling: Spelling | None = None) -> None:
        super().__init__()
        self.register_buffer("token_ids", torch.as_tensor(sorted(set(token_ids)), dtype=torch.long))
        self.blank = nn.Parameter(torch.zeros(width))
        self.eos_id = eos_id
        self.temperature = temperature
        self.spelling = spelling
        self._class_of: dict[int, int] | None = None

    @property
    def units(self) -> str:
        return "tokens" if self.spelling is None else "chars"

    def logits(self, frames: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        """(A, F, D) adapter frames -> (A, F, 1 + V) class scores."""
        table = embedding[self.token_ids].to(frames.dtype)
        return torch.cat([frames @ self.blank.to(frames.dtype)[:, None], frames @ table.T], dim=-1)

    def embed(self, frames: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        """The LLM input at each frame: its unit posterior (blank removed, renormalised) times the units'
        embeddings - a point inside the distribution the LLM was trained on (LegoSLM)."""
        probs = (self.logits(frames, embedding) / self.temperature).softmax(-1)[..., 1:]
        probs = probs / probs.sum(-1, keepdim=True).clamp_min(1e-8)
        return probs @ embedding[self.token_ids].to(probs.dtype)

    def classes(self, tokens: Sequence[int]) -> list[int]:
        """CTC target classes of a transcript's LLM tokens (EOS dropped); a unit outside the vocabulary is an error."""
        if self._class_of is None:
            self._class_of = {int(t): k + 1 for k, t in enumerate(self.token_ids.tolist())}
        tokens = [t for t in tokens if t != self.eos_id]
        if self.spelling is not None:
            text = self.spelling.normalize("".join(self.spelling.token_text[t] for t in tokens))
            tokens = [self._char_token(char) for char in text]
        out = []
        for token in tokens:
            if token not in self._class_of:
                raise ValueError(f"token {token} is not in the CTC vocabulary (built from model.ctc.vocab_from); "
                                 "add the texts that hold it")
            out.append(self._class_of[token])
        return out

    def labels(self) -> list[str]:
        """Each class's text, blank (class 0) as ``""``: the characters of a spelling bridge (``" "`` between
        words), for beam search over words; a token-unit bridge has no spelling to search."""
        if self.spelling is None:
            raise ValueError("a CTC bridge over LLM tokens (model.ctc.units: tokens) has no spelling to beam-search")
        return ["", *self._chars()]

    def _char_token(self, char: str) -> int:
        chars = self._chars()
        if char not in chars:
            raise ValueError(f"character {char!r} is not in the CTC vocabulary (built from model.ctc.vocab_from); "
                             "add the texts that hold it")
        return int(self.token_ids[chars.index(char)])

    def _chars(self) -> list[str]:
        return [self.spelling.token_text[t] for t in self.token_ids.tolist()]

    def hypothesis(self, classes: Sequence[int]) -> Hypothesis:
        """Greedy CTC decoding of per-frame classes (repeats merged, blanks dropped) as LLM tokens. Token units
        are read at their own frames; a spelled text is tokenized the LLM's usual way, each token read at the
        frame of its first letter, so a token lies inside the word it spells (the braid's time rule holds)."""
        kept = kept_frames(classes)
        ids = self.token_ids.tolist()
        if self.spelling is None:
            return Hypothesis(tuple(ids[classes[f] - 1] for f in kept), kept)
        chars = self._chars()
        text, at = "", []
        for frame in kept:
            char = chars[classes[frame] - 1]
            if char == " " and (not text or text[-1] == " "):
                continue  # words between single spaces, as the transcripts were spelled
            text += char
            at.append(frame)
        if text.endswith(" "):
            text, at = text[:-1], at[:-1]
        tokens, offsets = self.spelling.encode(text)
        frames = []
        for start, end in offsets:
            letters = [i for i in range(start, end) if text[i] != " "]
            frames.append(at[letters[0] if letters else start])
        return Hypothesis(tuple(tokens), tuple(frames))


class SpeechLLM(nn.Module):
    """``encoder`` maps (features, lengths) to (frames, lengths); ``adapter`` maps those into the LLM width;
    ``llm`` is any Hugging Face causal LM whose embeddings cover ``vocab.size``.

    With ``speech_head`` the model also predicts a second (speech) stream at every position: the parallel
    generation pattern's separate head; its input embedding is combined with the text stream's by
    ``stream_combine`` ("sum" or "mean").
    """

    def __init__(self, encoder: nn.Module | None, adapter: nn.Module | None, llm: nn.Module, vocab: VocabLayout,
                 frame_rate: float = 12.5, speech_head: bool = False, stream_combine: str = "sum",
                 ctc: CTCBridge | None = None, speech_input: str = "adapter", compress: bool = False) -> None:
        super().__init__()
        if stream_combine not in ("sum", "mean"):
            raise ValueError(f"stream_combine must be 'sum' or 'mean', got {stream_combine!r}")
        if speech_input not in SPEECH_INPUTS:
            raise ValueError(f"speech_input must be one of {', '.join(SPEECH_INPUTS)}, got {speech_input!r}")
        if (speech_input != "adapter" or compress) and ctc is None:
            raise ValueError(f"speech_input={speech_input!r} and compress need a CTC bridge")
        if speech_input == "hypothesis" and not compress:
            raise ValueError("speech_input='hypothesis' reads one token per kept frame: it needs compress")
        self.encoder = encoder
        self.adapter = adapter
        self.llm = llm
        self.vocab = vocab
        self.frame_rate = frame_rate
        self.stream_combine = stream_combine
        self.ctc = ctc
        self.speech_input = speech_input
        self.compress = compress
        # audio path -> encoder output, filled while the encoder is frozen (a dict, or an EncoderOutputStore)
        self.encoder_cache: MutableMapping[str, torch.Tensor] | None = None
        self._kept: dict[str, Hypothesis] = {}  # audio path -> CTC hypothesis (its frames: what compression keeps)
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
        declared = int(batch.audio_frames.max())
        if self.speech_input == "hypothesis":
            return self._hypothesis_inputs(batch, declared)
        frames, lengths = self._encode(batch.audio, batch.features, batch.feature_lengths)
        frames, _ = self.adapter(frames, lengths)
        if self.speech_input == "ctc":
            frames = self.ctc.embed(frames, self.llm.get_input_embeddings().weight)
        if frames.shape[1] < declared:  # the encoder's rounding may give a frame fewer than the time rule
            frames = F.pad(frames, (0, 0, 0, declared - frames.shape[1]))
        return frames[:, :declared]

    def _encode(self, audio: list[str], features: torch.Tensor,
                feature_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        frozen = not any(p.requires_grad for p in self.encoder.parameters())
        if self.encoder_cache is None:
            return self.encoder(features, feature_lengths)
        if not frozen:
            # The weights are changing: what is cached belongs to older weights. A fresh private table (not a
            # cleared one): the old one may be shared with other runs that start from those older weights.
            if self.encoder_cache:
                self.encoder_cache = {}
            return self.encoder(features, feature_lengths)
        device = features.device
        missing = [i for i, path in enumerate(audio) if path not in self.encoder_cache]
        if missing:
            index = torch.tensor(missing, device=device)
            with torch.no_grad():
                out, out_lengths = self.encoder(features[index], feature_lengths[index])
            # one update per batch: a store writes the batch's outputs as one shard
            self.encoder_cache.update({audio[i]: out[row, : int(out_lengths[row])].detach()
                                       for row, i in enumerate(missing)})
        cached = [self.encoder_cache[path].to(device) for path in audio]
        lengths = torch.tensor([c.shape[0] for c in cached], device=device)
        return torch.nn.utils.rnn.pad_sequence(cached, batch_first=True), lengths

    def _hypothesis_inputs(self, batch: BraidBatch, declared: int) -> torch.Tensor:
        """(A, F, D) LLM inputs that hold, at each audio's kept frames, the embeddings of its CTC hypothesis."""
        missing = [i for i, path in enumerate(batch.audio) if path not in self._kept]
        if missing:
            index = torch.tensor(missing, device=batch.features.device)
            frames = self._adapter_eval([batch.audio[i] for i in missing], batch.features[index],
                                        batch.feature_lengths[index])
            for i, row in zip(missing, frames, strict=True):
                self._kept[batch.audio[i]] = self._hypothesis(self._ctc_logits(row))
        embed = self.llm.get_input_embeddings()
        out = embed.weight.new_zeros(len(batch.audio), declared, embed.embedding_dim)
        for a, path in enumerate(batch.audio):
            hyp = self._kept[path]
            inside = [k for k, frame in enumerate(hyp.frames) if frame < declared]
            if inside:
                tokens = torch.tensor([hyp.tokens[k] for k in inside], device=out.device)
                out[a, torch.tensor([hyp.frames[k] for k in inside], device=out.device)] = embed(tokens)
        return out

    def _ctc_logits(self, frames: torch.Tensor) -> torch.Tensor:
        """The CTC bridge's ``(frames, 1 + units)`` logits for one audio's adapter frames ``(frames, D)``."""
        return self.ctc.logits(frames[None], self.llm.get_input_embeddings().weight)[0]

    def _hypothesis(self, logits: torch.Tensor) -> Hypothesis:
        """The bridge's greedy hypothesis (kept frames and tokens) of one audio's CTC logits."""
        return self.ctc.hypothesis(logits.argmax(-1).tolist())

    def adapter_frames(self, paths: Sequence[str], features: Callable[[str], torch.Tensor]) -> list[torch.Tensor]:
        """Adapter output per audio file, each ``(frames, D)`` (no grad; for selection and CTC decoding)."""
        device = next(self.parameters()).device
        feats = [features(p) for p in paths]
        lengths = torch.tensor([f.shape[0] for f in feats], device=device)
        padded = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True).to(device)
        return self._adapter_eval(list(paths), padded, lengths)

    def _adapter_eval(self, paths: list[str], padded: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        modes = [(module, module.training) for module in (self.encoder, self.adapter)]
        for module, _ in modes:
            module.eval()  # no dropout: kept frames and CTC transcripts must not depend on chance
        try:
            with torch.no_grad():
                out, out_lengths = self._encode(paths, padded, lengths)
                frames, frame_lengths = self.adapter(out, out_lengths)
        finally:
            for module, training in modes:
                module.train(training)
        return [frames[i, : int(n)] for i, n in enumerate(frame_lengths)]

    def ctc_hypotheses(self, paths: Sequence[str], features: Callable[[str], torch.Tensor]) -> list[Hypothesis]:
        """The CTC bridge's greedy output for each audio file (no LLM step)."""
        return [self._hypothesis(self._ctc_logits(frames)) for frames in self.adapter_frames(paths, features)]

    def ctc_log_probs(self, paths: Sequence[str], features: Callable[[str], torch.Tensor]) -> list[torch.Tensor]:
        """Per-frame CTC class log-probabilities ``(frames, 1 + units)`` for each audio file (class 0 is blank;
        :meth:`CTCBridge.labels` names the others), in float32 on the CPU, for beam search. Under compression the
        greedy hypotheses are remembered as these files' frame selection, so joint decoding encodes each audio
        once (the encoder masks batch padding: a file's frames do not depend on its batch-mates)."""
        if self.ctc is None:
            raise ValueError("this model has no CTC bridge")
        out = []
        with torch.no_grad():
            for path, frames in zip(paths, self.adapter_frames(paths, features), strict=True):
                logits = self._ctc_logits(frames)
                if self.compress and path not in self._kept:
                    self._kept[path] = self._hypothesis(logits)
                out.append(logits.float().log_softmax(-1).cpu())
        return out

    def frame_selector(self, features: Callable[[str], torch.Tensor]) -> Callable[[str], tuple[int, ...]] | None:
        """``path -> frames to keep`` under CTC compression (None without it). Kept frames are remembered per path:
        call :meth:`forget_selection` whenever the encoder, adapter or CTC bridge change."""
        if not self.compress:
            return None

        def select(path: str) -> tuple[int, ...]:
            if path not in self._kept:
                self._kept[path] = self.ctc_hypotheses([path], features)[0]
            return self._kept[path].frames

        return select

    def forget_selection(self) -> None:
        self._kept = {}

    @property
    def has_speech_head(self) -> bool:
        return self.speech_head is not None

    @property
    def max_positions(self) -> int | None:
        """The LLM's context length (``max_position_embeddings``); None when its config does not say."""
        return getattr(self.llm.config, "max_position_embeddings", None)

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """The LLM's input embeddings of vocabulary ids: ``(...,)`` -> ``(..., D)``."""
        return self.llm.get_input_embeddings()(ids)

    def lm_forward(self, embeds: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: Any = None, *,
                   use_cache: bool = False, keep: int | torch.Tensor = 0, hidden: bool = False) -> LMOutput:
        """The causal LM on input embeddings ``(B, L, D)``. ``mask`` is 2D (1 = real) or :func:`packed_causal_mask`;
        ``cache`` holds the positions before these; ``keep`` limits the logits to the last ``keep`` positions
        (0 = all) or to given positions per row (a ``(B, K)`` tensor), as HF's ``logits_to_keep``."""
        # past_key_values only when there is a cache: naming it, even as None, draws a deprecation warning (5.25)
        past = {"past_key_values": cache} if cache is not None else {}
        out = self.llm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=use_cache,
                       logits_to_keep=keep, output_hidden_states=hidden, **past)
        return LMOutput(out.logits, out.hidden_states[-1] if hidden else None,
                        out.past_key_values if use_cache else None)

    def unit_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The speech head's logits over the vocabulary for last-layer states (the parallel pattern's speech stream)."""
        return self.speech_head(hidden)

    def prepare_inputs(self, batch: BraidBatch) -> PreparedInputs:
        inputs_embeds = self.embed_tokens(batch.input_ids)
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
        combined = text_embeds + self.embed_tokens(stream_ids.clamp(min=0))
        if self.stream_combine == "mean":
            combined = combined / 2
        return torch.where(present[..., None], combined, text_embeds)

    def forward(self, batch: BraidBatch, objective: str = "lm") -> tuple[torch.Tensor, torch.Tensor | None]:
        """(mean loss over target tokens of both heads, text-head logits); ``objective="ctc"`` trains the
        adapter through the CTC bridge alone (no LLM forward) and returns no logits."""
        if objective == "ctc":
            return self.ctc_loss(batch), None
        inputs = self.prepare_inputs(batch)
        parallel = inputs.stream_labels is not None
        if parallel and self.speech_head is None:
            raise ValueError("the batch holds parallel spans but the model has no speech head")
        out = self.lm_forward(inputs.inputs_embeds, inputs.attention_mask, inputs.position_ids, hidden=parallel)
        logits = out.logits
        targets = [(logits, inputs.labels)]
        if parallel:
            targets.append((self.unit_logits(out.hidden), inputs.stream_labels))
        total = sum(F.cross_entropy(lg.float().reshape(-1, lg.shape[-1]), lb.reshape(-1), ignore_index=IGNORE_INDEX,
                                    reduction="sum") for lg, lb in targets)
        count = sum(int((lb != IGNORE_INDEX).sum()) for _, lb in targets)
        return total / max(count, 1), logits

    def ctc_loss(self, batch: BraidBatch) -> torch.Tensor:
        """Mean CTC loss per target token over the batch's ASR examples (their transcript is the target)."""
        if self.ctc is None:
            raise ValueError("a ctc objective needs model.ctc (the CTC bridge)")
        if batch.features is None or batch.feature_lengths is None:
            raise ValueError("a ctc objective needs speech: the batch holds no features")
        out, lengths = self._encode(batch.audio, batch.features, batch.feature_lengths)
        frames, frame_lengths = self.adapter(out, lengths)
        targets = self._ctc_targets(batch)
        # CTC cannot emit more classes than frames (plus a blank between repeats): such an example has no path
        # and would add a silent zero, so it is left out, and a batch with nothing left is an error.
        feasible = {slot: t for slot, t in targets.items()
                    if len(t) + sum(a == b for a, b in zip(t, t[1:], strict=False)) <= int(frame_lengths[slot])}
        if targets and not feasible:
            slot, target = next(iter(targets.items()))
            raise ValueError(f"every CTC target of the batch is longer than its speech frames (e.g. {len(target)} "
                             f"classes for {int(frame_lengths[slot])} frames of {batch.audio[slot]}); raise the frame "
                             "rate (model.adapter_stack) or use coarser units (model.ctc.units=tokens)")
        targets = feasible
        log_probs = self.ctc.logits(frames, self.llm.get_input_embeddings().weight).float().log_softmax(-1)
        slots = sorted(targets)
        flat = torch.tensor([c for slot in slots for c in targets[slot]], dtype=torch.long, device=frames.device)
        target_lengths = torch.tensor([len(targets[slot]) for slot in slots], device=frames.device)
        index = torch.tensor(slots, device=frames.device)
        total = F.ctc_loss(log_probs[index].transpose(0, 1), flat, frame_lengths[index], target_lengths, blank=0,
                           reduction="sum", zero_infinity=True)
        return total / max(int(target_lengths.sum()), 1)

    def _ctc_targets(self, batch: BraidBatch) -> dict[int, list[int]]:
        """Audio slot -> CTC classes of its example's target tokens (the transcript of an ``asr`` braid)."""
        grid = int(batch.audio_frames.max())
        targets: dict[int, list[int]] = {}
        for row in range(batch.example_ids.shape[0]):
            for example in batch.example_ids[row].unique().tolist():
                where = (batch.example_ids[row] == example) & (example > 0)
                speech = where & batch.speech_mask[row]
                if not bool(speech.any()):
                    continue  # text-only examples carry no CTC target
                slot = int(batch.speech_index[row][speech][0]) // grid
                labels = [t for t in batch.labels[row][where].tolist()
                          if t != IGNORE_INDEX and self.vocab.kind_of(t) == "text"]
                targets[slot] = self.ctc.classes(labels)
        return targets

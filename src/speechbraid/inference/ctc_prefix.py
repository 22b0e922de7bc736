"""CTC prefix scores of an LLM's partial transcripts: joint CTC/LLM decoding (hybrid CTC/attention, Watanabe et al.
2017; ESPnet's ``CTCPrefixScore``).

An attention decoder - here the speech LLM - may drop, repeat or invent words the audio does not hold (a 135M LLM
tuned for a few dozen steps rewrites hard sentences into fluent ones of its own). The CTC bridge under it is
monotonic: it cannot skip audio or make words up, only misspell them. Scoring every beam candidate by
``(1 - w) * log p_llm(token) + w * (log p_ctc(new prefix) - log p_ctc(old prefix))`` keeps the LLM's written
form and its prior over words while the CTC posteriors keep it on the audio; a finished hypothesis adds
``w * (log p_ctc(whole text) - log p_ctc(prefix))``.

The bridge spells the WER-normalised transcript with single characters, the LLM writes the transcript with case,
punctuation and multi-character tokens, so a hypothesis is compared in the spelled form: its text normalised as
the transcripts were (:func:`speechbraid.data.normalize.normalize_for_wer`). A token the CTC cannot score would
be a free way out of it (measured: a tuned 135M LLM then writes ``"1111..."``, newlines or runs of ``"'"``), so
tokens with characters that are neither spelled by the bridge, nor punctuation, nor a space (digits, newlines,
symbols) are ruled out, and a token that spells nothing (punctuation) is allowed only right after one that spells
something.

With a word n-gram (:class:`~speechbraid.inference.ctc_beam.WordFusion`, the shallow fusion of ``--decoder
ctc-lm``) the scorer's score of a spelled text also holds the n-gram's fused score of its completed words and the
cost of an unfinished word no LM word starts with; a finished hypothesis adds its last word and the sentence end.
So the LLM's beam is ranked by ``(1 - w) * LLM + w * (CTC + n-gram)``: the CTC-LM decoder's score mixed with the
speech LLM's.

The LLM's beam only tries its own likeliest tokens, and a weakly tuned LLM may rank none of the words the audio
holds among them; ``guides`` - whole transcripts from the CTC bridge's own beam search (with the n-gram: the
``ctc-lm`` decoder's n-best) - add, at every step, the next token of each guide the hypothesis still agrees with,
so the beam can always follow the bridge's best readings and the LLM chooses among them and its own.

The prefix probability of a string sums over every frame at which its last character may be emitted; the
forward variables over all frames follow in closed form (cumulative sums and ``logcumsumexp``), so extending a
prefix by one character is a handful of vector operations, not a loop over frames.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from speechbraid.inference.ctc_beam import WordFusion

NEG_INF = -math.inf
MIN_LOG_PROB = -1e4  # keeps every frame's log-probability finite, so no inf - inf appears


class CTCPrefixScorer:
    """Prefix and whole-text CTC log-probabilities of the spellings of LLM hypotheses, for one audio.

    ``log_probs`` are the bridge's per-frame class log-probabilities ``(frames, classes)``, class 0 the blank;
    ``labels[k]`` is class ``k``'s character (``" "`` between words). ``decode(tokens)`` turns LLM token ids into
    text, ``normalize`` that text into what the bridge spells; ``words`` adds a word n-gram's fused scores;
    ``guides`` are written transcripts whose next tokens (``tokenize``) are proposed (module docstring). Forward
    variables of every prefix met are kept, so a beam extends its parent's.
    """

    def __init__(self, log_probs: torch.Tensor, labels: Sequence[str], decode: Callable[[Sequence[int]], str],
                 normalize: Callable[[str], str], words: WordFusion | None = None, guides: Sequence[str] = (),
                 tokenize: Callable[[str], Sequence[int]] | None = None) -> None:
        if log_probs.ndim != 2 or log_probs.shape[1] != len(labels):
            raise ValueError(f"expected (frames, {len(labels)}) CTC log-probabilities, got {tuple(log_probs.shape)}")
        if not labels or labels[0] != "":
            raise ValueError("class 0 must be the blank, labelled ''")
        self.log_probs = log_probs.detach().to("cpu", torch.float64).clamp_min(MIN_LOG_PROB)
        self.class_of = {label: k for k, label in enumerate(labels) if k > 0}
        self.decode, self.normalize, self.words = decode, normalize, words
        if guides and tokenize is None:
            raise ValueError("guide transcripts need the LLM's tokenizer to propose their tokens")
        # a guide is followed through its normalised form, so both must line up character by character
        self.guides = [(guide, spelled) for guide in guides
                       if len(spelled := normalize(guide)) == len(guide) and spelled]
        self.tokenize = tokenize
        self._writable: dict[int, bool] = {}
        self._blank_cum = self.log_probs[:, 0].cumsum(0)
        # prefix -> (forward variables ending in a character, ending in blank, log p(prefix))
        empty = torch.full_like(self._blank_cum, NEG_INF)
        self._states: dict[str, tuple[torch.Tensor, torch.Tensor, float]] = {"": (empty, self._blank_cum, 0.0)}
        self._spelled: dict[tuple[int, ...], str] = {}

    def spelling(self, tokens: Sequence[int]) -> str:
        """The spelled form of the tokens: their text normalised as the transcripts the bridge spells."""
        key = tuple(tokens)
        if key not in self._spelled:
            self._spelled[key] = self.normalize(self.decode(key))
        return self._spelled[key]

    def writable(self, token: int) -> bool:
        """Whether the token's text is made of characters the bridge spells, punctuation and spaces only."""
        if token not in self._writable:
            text = self.decode((token,))
            self._writable[token] = (all(char == " " or not char.isspace() for char in text)
                                     and all(char == " " or char in self.class_of for char in self.normalize(text)))
        return self._writable[token]

    def prefix(self, text: str) -> float:
        """log p(the transcript starts with ``text``); -inf if the bridge cannot spell it."""
        return self._state(text)[2] if self._spellable(text) else NEG_INF

    def whole(self, text: str) -> float:
        """log p(the transcript is ``text``); -inf if the bridge cannot spell it."""
        if not self._spellable(text):
            return NEG_INF
        ends_char, ends_blank, _ = self._state(text)
        return float(torch.logaddexp(ends_char[-1], ends_blank[-1]))

    def _spellable(self, text: str) -> bool:
        return all(char in self.class_of for char in text)

    def _state(self, text: str) -> tuple[torch.Tensor, torch.Tensor, float]:
        known = len(text)
        while text[:known] not in self._states:
            known -= 1
        state = self._states[text[:known]]
        for end in range(known + 1, len(text) + 1):
            state = self._states[text[:end]] = self._extend(state, text[:end - 1], text[end - 1])
        return state

    def _extend(self, state: tuple[torch.Tensor, torch.Tensor, float], before: str, char: str
                ) -> tuple[torch.Tensor, torch.Tensor, float]:
        ends_char, ends_blank, _ = state
        x = self.log_probs[:, self.class_of[char]]
        # log p(the prefix is complete at frame t and ``char`` may follow at t + 1): a repeated character needs a
        # blank between the two
        ready = ends_blank if before.endswith(char) else torch.logaddexp(ends_char, ends_blank)
        start = torch.tensor([0.0 if not before else NEG_INF], dtype=x.dtype)
        ready = torch.cat([start, ready[:-1]])  # shifted: ready to emit at frame t
        emit = ready + x  # log p(``char`` first emitted at frame t after the prefix)
        cum = x.cumsum(0)
        # ends_char[t] = (ends_char[t-1] (+) ready[t]) + x[t], solved for all t at once
        new_char = cum + torch.logcumsumexp(emit - cum, 0)
        previous = torch.cat([torch.tensor([NEG_INF], dtype=x.dtype), new_char[:-1]])
        # ends_blank[t] = (ends_blank[t-1] (+) ends_char[t-1]) + blank[t]
        blank = self.log_probs[:, 0]
        new_blank = self._blank_cum + torch.logcumsumexp(previous + blank - self._blank_cum, 0)
        return new_char, new_blank, float(torch.logsumexp(emit, 0))

    def proposals(self, tokens: Sequence[int]) -> list[int]:
        """The next token of every guide that the tokens' spelling starts (to try beside the LLM's own)."""
        spelled = self.spelling(tokens)
        out = []
        for guide, guide_spelled in self.guides:
            if guide_spelled.startswith(spelled) and len(guide) > len(spelled):
                out += list(self.tokenize(guide[len(spelled):]))[:1]
        return out

    def step_scores(self, tokens: Sequence[int], candidates: Sequence[int], stop_ids: Sequence[int]) -> list[float]:
        """For each candidate next token, the change of the score (CTC, plus the n-gram's when there is one):
        ``log p(prefix + token) - log p(prefix)``, or for a stop id ``log p(whole prefix) - log p(prefix)``; -inf
        where the audio cannot hold the text (more characters than frames) or the token is ruled out."""
        spelled = self.spelling(tokens)
        before = self._scored(spelled, final=False)
        # punctuation follows a token that spelled something, never opens the transcript or follows punctuation
        may_punctuate = bool(tokens) and self.spelling(tokens[:-1]) != spelled
        stop = set(stop_ids)
        out = []
        for token in candidates:
            if token in stop:
                after = self._scored(spelled, final=True)
            elif not self.writable(token):
                after = NEG_INF
            else:
                text = self.spelling((*tokens, token))
                after = self._scored(text, final=False) if text != spelled or may_punctuate else NEG_INF
            out.append(after - before if after > NEG_INF and before > NEG_INF else NEG_INF)
        return out

    def _scored(self, text: str, final: bool) -> float:
        """The CTC log-probability of ``text`` as a prefix (``final``: as the whole transcript), plus the n-gram's."""
        ctc = self.whole(text) if final else self.prefix(text)
        return ctc + self.words.text_score(text, final) if self.words is not None and ctc > NEG_INF else ctc

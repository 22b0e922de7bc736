"""CTC prefix beam search over the bridge's spelling, fused with a word n-gram LM.

The character CTC bridge gets most letters right but few whole words (on the default test set ~12% character
errors become ~40% word errors); a prefix beam search that scores every completed word with a word n-gram
built from the text a user has (speech transcripts, domain text, general text) and penalises spellings that
lead to no known word turns those spellings into words. This is shallow fusion (Hannun et al. 2014): a prefix
is ranked by ``log p_ctc + sum over its words (alpha * ln p_lm(word | history) + beta)``, a word the LM does not
know costs ``alpha * unknown`` more, and a partial word that starts no known word costs ``unknown`` while it
grows. The n-gram is :class:`speechbraid.models.ngram_lm.NgramLM` (or any ARPA file). Its words may be cased: the
bridge spells in lower case, a spelled word is matched case-blind and written in the LM's likeliest form of it
after its history ("on may fifth" -> "on May fifth"), so names come out as written.

Written here rather than taken from pyctcdecode (the usual library) because its releases pin numpy < 2, which
the rest of the stack has left behind.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from speechbraid.models.ngram_lm import BOS, EOS, NgramLM

NEG_INF = -math.inf
LN10 = math.log(10.0)


@dataclass(frozen=True)
class LMFusion:
    """Shallow-fusion weights and search limits (chosen on the default corpus's dev set, see the README)."""

    alpha: float = 0.7  # weight of the LM's natural-log word probability
    beta: float = 2.5  # bonus per word (keeps the LM from preferring short outputs)
    unknown: float = -10.0  # for a word (alpha-weighted) or a partial word (as is) that leads to no known word
    beam_width: int = 64
    char_min_log_prob: float = -5.0  # characters less likely than this at a frame are not tried there
    beam_margin: float = 10.0  # prefixes ranked this far below the best are dropped


@dataclass
class _Prefix:
    blank: float = NEG_INF  # log p(prefix, path ends in blank)
    char: float = NEG_INF  # log p(prefix, path ends in its last character)
    lm: float = 0.0  # fused LM score of the prefix's completed words
    words: tuple[str, ...] = ()  # its completed words as the LM writes them

    @property
    def acoustic(self) -> float:
        return _log_add(self.blank, self.char)


def _log_add(a: float, b: float) -> float:
    """log(exp(a) + exp(b)) on Python floats (numpy's ufunc costs more per call than this whole search step)."""
    if a < b:
        a, b = b, a
    return a if b == NEG_INF else a + math.log1p(math.exp(b - a))


class WordFusion:
    """Shallow fusion of a word n-gram into a search over spelled (lower-case) text: the score of each completed
    word after its history, how the LM writes it, what an unfinished word costs, and the sentence end. Used by
    :class:`CTCBeamDecoder` and by joint LLM/CTC decoding (:mod:`speechbraid.inference.ctc_prefix`)."""

    def __init__(self, lm: NgramLM, fusion: LMFusion = LMFusion()) -> None:
        self.lm = lm
        self.fusion = fusion
        self._forms: dict[str, list[str]] = {}  # spelled (lower-case) word -> the LM's words spelled so
        for word in lm.vocabulary:
            self._forms.setdefault(word.lower(), []).append(word)
        self._starts = {w[:i] for w in self._forms for i in range(1, len(w) + 1)}
        self.score_word = lru_cache(maxsize=200_000)(self._score_word)

    def history(self, words: tuple[str, ...]) -> tuple[str, ...]:
        return (BOS, *words)[-max(self.lm.order - 1, 1):]

    def _score_word(self, history: tuple[str, ...], spelled: str) -> tuple[float, str]:
        """The fused score of a completed word after ``history`` and how it is written (the LM's likeliest form)."""
        forms = self._forms.get(spelled)
        if forms is None:
            log_p = self.lm.log10_prob(history, spelled) * LN10 + self.fusion.unknown
            written = spelled
        else:
            log10_p, written = max((self.lm.log10_prob(history, form), form) for form in forms)
            log_p = log10_p * LN10
        return self.fusion.alpha * log_p + self.fusion.beta, written

    def partial(self, text: str) -> float:
        """What the unfinished last word costs while it starts no word of the LM (longer ones cost more)."""
        partial = text.rsplit(" ", 1)[-1]
        if not partial or partial in self._starts:
            return 0.0
        return self.fusion.unknown * max(1.0, len(partial) / 6)

    def end(self, words: tuple[str, ...]) -> float:
        """The fused score of the sentence ending after ``words``."""
        return self.fusion.alpha * self.lm.log10_prob(self.history(words), EOS) * LN10

    def text_score(self, text: str, final: bool) -> float:
        """The fused score of a spelled text (words between single spaces): its completed words and, unless
        ``final``, the unfinished last word's cost; ``final`` also completes the last word and ends the sentence."""
        spelled = text.split()
        done = spelled if final else spelled[:-1]
        score, words = 0.0, ()
        for word in done:
            word_score, written = self.score_word(self.history(words), word)
            score, words = score + word_score, (*words, written)
        return score + (self.end(words) if final else self.partial(text))


class CTCBeamDecoder:
    """Beam search of per-frame CTC log-probabilities ``(frames, classes)``; class 0 is blank, ``labels[k]`` the
    text of class ``k`` (characters; ``" "`` separates words). Without an LM it is a plain prefix beam search."""

    def __init__(self, labels: Sequence[str], lm: NgramLM | None, fusion: LMFusion = LMFusion()) -> None:
        if not labels or labels[0] != "":
            raise ValueError("class 0 must be the blank, labelled ''")
        self.labels = list(labels)
        self.fusion = fusion
        self.words = WordFusion(lm, fusion) if lm is not None else None

    def decode(self, log_probs: np.ndarray) -> str:
        """The best transcript: words separated by single spaces."""
        return self.n_best(log_probs, 1)[0]

    def n_best(self, log_probs: np.ndarray, n: int) -> list[str]:
        """The ``n`` best distinct transcripts (fewer if the beam holds fewer), best first."""
        log_probs = np.asarray(log_probs, dtype=np.float64)
        if log_probs.ndim != 2 or log_probs.shape[1] != len(self.labels):
            raise ValueError(f"expected (frames, {len(self.labels)}) log-probabilities, got {log_probs.shape}")
        beams: dict[str, _Prefix] = {"": _Prefix(blank=0.0)}
        for row in log_probs.tolist():
            tried = [c for c in range(1, len(self.labels)) if row[c] >= self.fusion.char_min_log_prob]
            grown: dict[str, _Prefix] = {}
            for text, prefix in beams.items():
                total = prefix.acoustic
                self._extend(grown, text, prefix, "blank", total + row[0])
                for c in tried:
                    self._add_char(grown, text, prefix, self.labels[c], row[c])
            beams = self._prune(grown)
        ranked = sorted((self._final(text, p) for text, p in beams.items()), key=lambda x: x[0], reverse=True)
        return list(dict.fromkeys(text for _, text in ranked))[:n]

    # ------------------------------------------------------------------------------------------------------------

    def _add_char(self, grown: dict[str, _Prefix], text: str, prefix: _Prefix, char: str, log_p: float) -> None:
        last = text[-1:] if text else ""
        if char == " " and (not text or last == " "):
            # a space before any word or after a space adds nothing to the text
            self._extend(grown, text, prefix, "char", prefix.acoustic + log_p)
        elif char == last:
            # the same character again: the path continues it, unless a blank separated the two
            self._extend(grown, text, prefix, "char", prefix.char + log_p)
            self._extend(grown, text + char, prefix, "char", prefix.blank + log_p, completes=char == " ")
        else:
            self._extend(grown, text + char, prefix, "char", prefix.acoustic + log_p, completes=char == " ")

    def _extend(self, grown: dict[str, _Prefix], text: str, parent: _Prefix, ending: str, log_p: float,
                completes: bool = False) -> None:
        entry = grown.get(text)
        if entry is None:
            entry = grown[text] = _Prefix(lm=parent.lm, words=parent.words)
            if completes:  # a space after a word: the word is scored once, when it is completed
                score, written = self._word(parent.words, text[:-1].rsplit(" ", 1)[-1])
                entry.lm, entry.words = parent.lm + score, (*parent.words, written)
        if ending == "blank":
            entry.blank = _log_add(entry.blank, log_p)
        else:
            entry.char = _log_add(entry.char, log_p)

    def _word(self, words: tuple[str, ...], spelled: str) -> tuple[float, str]:
        return self.words.score_word(self.words.history(words), spelled) if self.words else (0.0, spelled)

    def _partial(self, text: str) -> float:
        return self.words.partial(text) if self.words else 0.0

    def _prune(self, grown: dict[str, _Prefix]) -> dict[str, _Prefix]:
        ranked = sorted(grown.items(), key=lambda kv: kv[1].acoustic + kv[1].lm + self._partial(kv[0]),
                        reverse=True)[: self.fusion.beam_width]
        best = ranked[0][1].acoustic + ranked[0][1].lm + self._partial(ranked[0][0])
        return {text: p for text, p in ranked
                if p.acoustic + p.lm + self._partial(text) >= best - self.fusion.beam_margin}

    def _final(self, text: str, prefix: _Prefix) -> tuple[float, str]:
        """The prefix as a whole transcript, its last word and the sentence end scored: (score, written text)."""
        score, words = prefix.acoustic + prefix.lm, prefix.words
        last = text.rsplit(" ", 1)[-1]
        if last:
            word_score, written = self._word(words, last)
            score, words = score + word_score, (*words, written)
        if self.words is not None:
            score += self.words.end(words)
        return score, " ".join(words)

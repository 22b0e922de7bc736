"""Text normalisation for CTC alignment: transcript words -> character targets, and back.

Rule (alignment only; not the scoring normalisation):
- the transcript is split on whitespace; each token is one word and keeps its surface form exactly
  (case, attached punctuation), so aligned words match ``Utterance.text.split()`` one to one;
- a word's characters: Unicode NFKD, combining marks dropped (``café`` -> ``cafe``), casefolded, typographic
  apostrophes mapped to ``'``; then only the vocabulary characters (a-z, 0-9, ``'``) are kept, in order.
  Punctuation and symbols are silent, so dropping them costs nothing;
- words are separated by the word-boundary token ``|``, which the model must emit between words;
- a word left with no characters (``-``, ``&``, ``%``, an emoji) is not aligned acoustically but keeps its
  position: it gets a zero-length span at the end of the previous aligned word (at the start of the
  next one when it comes first) and no score.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

BLANK = "<blank>"
WORD_BOUNDARY = "|"
CHARACTERS = "'abcdefghijklmnopqrstuvwxyz0123456789"
VOCAB: tuple[str, ...] = (BLANK, WORD_BOUNDARY, *CHARACTERS)  # blank is index 0, as torch.nn.CTCLoss expects
BLANK_ID = 0
BOUNDARY_ID = 1
_CHAR_ID = {ch: i for i, ch in enumerate(VOCAB)}
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})


def word_characters(word: str) -> str:
    """The vocabulary characters a word is aligned with (may be empty; see the module rule)."""
    decomposed = unicodedata.normalize("NFKD", word.translate(_APOSTROPHES))
    folded = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()
    return "".join(ch for ch in folded if ch in _CHAR_ID and ch != WORD_BOUNDARY)


@dataclass(frozen=True)
class Targets:
    """CTC targets of a transcript, with which target positions belong to which word.

    ``spans[i]`` is ``(first, last)`` (end exclusive) into ``ids`` for word ``i``; ``first == last`` for a
    word with no vocabulary characters.
    """

    words: list[str]
    ids: list[int]
    spans: list[tuple[int, int]]

    @property
    def min_frames(self) -> int:
        """Fewest CTC frames that can carry these targets: one per token plus a blank between repeats."""
        repeats = sum(1 for a, b in zip(self.ids, self.ids[1:], strict=False) if a == b)
        return len(self.ids) + repeats


def encode_transcript(text: str) -> Targets:
    """Character targets of ``text`` (words joined by the boundary token); see the module rule."""
    words = text.split()
    ids: list[int] = []
    spans: list[tuple[int, int]] = []
    for word in words:
        chars = word_characters(word)
        if chars and ids:
            ids.append(BOUNDARY_ID)
        first = len(ids)
        ids.extend(_CHAR_ID[ch] for ch in chars)
        spans.append((first, len(ids)))
    return Targets(words, ids, spans)

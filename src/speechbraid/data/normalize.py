"""The one place that decides what text scoring compares: WER normalises, TER and EER do not.

Three views of a transcript, each used by exactly one metric:

* **WER** (:func:`tokens_for_wer`): the text after :func:`normalize_for_wer` split at whitespace.
  Case, punctuation and Unicode presentation forms do not count as errors.
* **TER** (:func:`tokens_for_ter`): the raw text split at whitespace, nothing else. Case and
  punctuation count, and punctuation stays attached to its word, so ``"day."`` against ``"day"`` is
  one substitution and ``"Day"`` against ``"day"`` is one substitution. This is exactly how jiwer
  tokenises a raw string, so TER equals ``jiwer.process_words`` on the raw text (up to whitespace
  other than spaces, which jiwer does not split on).
* **EER** (:func:`text_for_entities`): the raw text, not normalised at all (METHODS.md: spelling,
  case and formatting count). Entity matching rules live in :mod:`speechbraid.metrics.asr`.

TER and EER apply only Unicode NFC: canonically equivalent strings (``"é"`` precomposed or as ``e`` +
combining accent) are the same text in any renderer, so treating them as different would score the
encoding, not the recognition. NFC never changes case, spelling, punctuation or width.
"""

from __future__ import annotations

import unicodedata

# Typographic variants of the two punctuation marks kept inside words; NFKC does not fold these
# (it maps U+2011 to U+2010 but neither to "-", and leaves U+2019 alone), yet a hypothesis writing
# "don’t" for a reference "don't" is the same word.
_APOSTROPHES = {"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u2032": "'"}
_HYPHENS = {"\u2010": "-", "\u2011": "-"}
_FOLD = str.maketrans({**_APOSTROPHES, **_HYPHENS})

# Kept between two letters/digits: "don't", "x-ray", "covid-19".
_WORD_INTERNAL = frozenset("'-")
# Kept between two digits, so "2.5" and "1,000" stay one word (doses, amounts) rather than two.
_NUMBER_INTERNAL = frozenset(".,")
# Unicode files these under punctuation (Po), but they are read aloud as words (percent, per mille,
# and, at, number); dropping them would make "5%" score equal to "5".
_SPOKEN_MARKS = frozenset("%\u2030&@#")


def normalize_for_wer(text: str, casefold: bool = True) -> str:
    """Normalise a transcript for WER; the result is single-space separated words. ``casefold=False`` keeps the
    case (step 1 is then NFKC alone): the written words of a text, e.g. for an n-gram LM that writes names.

    Steps, in order:

    1. Unicode NFKC (fold compatibility forms: full-width letters, ligatures, superscripts), then
       casefold (stronger than ``lower``: ``"ß"`` -> ``"ss"``), then NFKC again because casefolding
       can produce sequences that are not NFKC-normal.
    2. Typographic apostrophes (’ ‘ ʼ) become ``'`` and Unicode hyphens (‐ ‑) become ``-``.
    3. Every Unicode punctuation character (general category ``P*``) becomes a space, except an
       apostrophe or hyphen with a letter/digit on both sides (``"don't"``, ``"x-ray"`` stay one word)
       and a ``.`` or ``,`` with a digit on both sides (``"2.5"``). So ``"U.S."`` becomes ``"u s"``
       and ``"well--then"`` becomes ``"well then"``: punctuation separates words, it never glues them.
       Marks read aloud as words are kept: symbols (category ``S*``: ``$``, ``+``, ``°``) and the
       ``P*`` characters ``% ‰ & @ #``.
    4. Whitespace runs collapse to one space; leading and trailing whitespace is removed.
    """
    text = unicodedata.normalize("NFKC", text)
    if casefold:
        text = unicodedata.normalize("NFKC", text.casefold())
    text = text.translate(_FOLD)
    chars = list(text)
    for i, char in enumerate(chars):
        if char in _SPOKEN_MARKS or not unicodedata.category(char).startswith("P"):
            continue
        before = text[i - 1] if i > 0 else ""
        after = text[i + 1] if i + 1 < len(text) else ""
        if char in _WORD_INTERNAL and before.isalnum() and after.isalnum():
            continue
        if char in _NUMBER_INTERNAL and before.isdigit() and after.isdigit():
            continue
        chars[i] = " "
    return " ".join("".join(chars).split())


def tokens_for_wer(text: str) -> list[str]:
    """The words WER compares: :func:`normalize_for_wer` split at whitespace."""
    return normalize_for_wer(text).split()


def tokens_for_ter(text: str) -> list[str]:
    """The tokens TER compares: the raw text (NFC only) split at whitespace; case and punctuation kept."""
    return unicodedata.normalize("NFC", text).split()


def text_for_entities(text: str) -> str:
    """The text entity matching sees: the raw text (NFC only). EER never normalises."""
    return unicodedata.normalize("NFC", text)

"""Turning raw English text from dictionaries and quotation files into speakable sentences.

Both the TTS engine and the ASR model must agree on what a sentence *says*, so the general corpus
keeps only sentences whose spoken form is unambiguous. The rules, applied in this order:

1. Split into sentences after ``.``, ``?`` or ``!`` (optionally followed by closing quotes or
   brackets) when the next word starts with a capital letter; whitespace runs become one space.
2. Remove quotation attributions: everything from a ``--`` that is followed by a capitalised name
   at the end of a passage (``... wisdom. -- Mark Twain``) is cut before splitting.
3. Drop a sentence that contains: a URL or e-mail address (``http``, ``www.``, ``@``, ``.com``),
   markup or code characters (``< > { } [ ] \\ | _ * # ^ ~ = ` / $ +``), any non-ASCII character,
   a word written in capitals of two or more letters (``NASA``, ``FORTRAN``: acronyms are spoken
   letter by letter or as words, unpredictably), a period inside the sentence (abbreviations such
   as ``e.g.``, ``Mr.``, initials), parentheses, or digits that rule 5 cannot expand.
4. Typographic fixes: double quotes and backticks are removed; ``--`` becomes ``, ``; ``&`` becomes
   ``and``; apostrophes stay only inside words (``don't``, ``o'clock``).
5. Numbers: a standalone whole number from 0 to 999 is written out in words (``42`` ->
   ``forty-two``), and ``%`` right after it becomes ``percent``. Any other digit (years, decimals,
   ordinals like ``3rd``, times, large numbers) drops the sentence.
6. Allowed characters afterwards: ASCII letters, space, apostrophe, hyphen between letters, comma,
   semicolon and one final ``.``, ``?`` or ``!``. Anything else drops the sentence.
7. Length: MIN_WORDS to MAX_WORDS words (4 to 25), counted on whitespace.
8. The first letter is capitalised and the sentence ends with ``.``, ``?`` or ``!`` (a ``.`` is
   added when no final mark is there; a trailing comma, colon or semicolon is replaced by it).

Deduplication (case- and punctuation-insensitive) is done by :func:`dedupe`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from num2words import num2words

MIN_WORDS = 4
MAX_WORDS = 25

_SPLIT = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]*[A-Z])")
# Words after which a period does not end a sentence: titles, initials, "etc." - the pieces are
# re-joined so the whole sentence is dropped by the inner-period rule instead of leaving a fragment.
_ABBREVIATION = re.compile(
    r"(?:^|\s)(?:[A-Za-z]|Mr|Mrs|Ms|Dr|St|Jr|Sr|Prof|Gen|Col|Capt|Lt|Rev|Hon|Gov|vs|etc|No|Mt|Ft|Co|Inc)\.$"
)
_ATTRIBUTION = re.compile(r"\s*--\s*[A-Z][^\n]*$")
_URLISH = re.compile(r"https?:|www\.|@|\.com\b|\.org\b|\.net\b", re.IGNORECASE)
_FORBIDDEN = re.compile(r"[<>{}\[\]\\|_*#^~=`/$+()]")
_ALL_CAPS = re.compile(r"\b[A-Z]{2,}\b")
_NUMBER = re.compile(r"(?<![\w.,])(\d{1,3})(%?)(?![\w.,]\d|\w)")
_ALLOWED = re.compile(r"[A-Za-z][A-Za-z ,;'-]*[A-Za-z][.?!]?")
_BAD_APOSTROPHE = re.compile(r"(?<![A-Za-z])'|'(?![A-Za-z])")
_BAD_HYPHEN = re.compile(r"(?<![A-Za-z])-|-(?![A-Za-z])")
_NORMALISE_KEY = re.compile(r"[^a-z ]+")


def split_sentences(text: str) -> list[str]:
    """Split a passage into sentence candidates (rule 1); attributions are removed first (rule 2)."""
    text = _ATTRIBUTION.sub("", text.strip())
    text = " ".join(text.split())
    pieces: list[str] = []
    for part in _SPLIT.split(text):
        part = part.strip()
        if pieces and _ABBREVIATION.search(pieces[-1]):
            pieces[-1] = f"{pieces[-1]} {part}"
        elif part:
            pieces.append(part)
    return pieces


def clean_sentence(raw: str) -> str | None:
    """Apply rules 3-8 to one sentence candidate; None when the sentence cannot be spoken reliably."""
    text = " ".join(raw.split())
    if not text or not text.isascii() or _URLISH.search(text):
        return None
    text = text.replace('"', "").replace("``", "").replace("''", "")
    text = text.replace("--", ", ").replace("&", " and ")
    if _FORBIDDEN.search(text) or _ALL_CAPS.search(text):
        return None
    text = _NUMBER.sub(_spell_number, text)
    if any(ch.isdigit() for ch in text):
        return None
    text = text.strip(" '")
    text = re.sub(r"\s+([,;:.?!])", r"\1", " ".join(text.split()))
    text = re.sub(r",(\s*,)+", ",", text)
    text = re.sub(r"[,;:]+$", "", text)
    if "." in text[:-1] or "?" in text[:-1] or "!" in text[:-1]:
        return None
    if _BAD_APOSTROPHE.search(text) or _BAD_HYPHEN.search(text):
        return None
    if not _ALLOWED.fullmatch(text):
        return None
    if not MIN_WORDS <= len(text.split()) <= MAX_WORDS:
        return None
    if text[-1] not in ".?!":
        text += "."
    return text[0].upper() + text[1:]


def _spell_number(match: re.Match[str]) -> str:
    words = num2words(int(match.group(1))).replace(",", "")
    return words + (" percent" if match.group(2) else "")


def dedupe(sentences: Iterable[str]) -> Iterator[str]:
    """Yield each sentence once; two sentences are the same when their lowercased letters and spaces are."""
    seen: set[str] = set()
    for sentence in sentences:
        key = sentence_key(sentence)
        if key not in seen:
            seen.add(key)
            yield sentence


def sentence_key(sentence: str) -> str:
    """The identity used for deduplication and disjointness checks: case and punctuation ignored."""
    return " ".join(_NORMALISE_KEY.sub(" ", sentence.lower().replace("-", " ")).split())

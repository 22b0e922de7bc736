"""General English sentences from Debian packages that ship text offline (no download at run time).

Sources (each yields raw passages that :mod:`speechbraid.corpora.clean` turns into sentences):

- ``wordnet``: WordNet 3.0 (package ``wordnet-base``): the quoted example sentences of every synset
  in ``/usr/share/wordnet/data.{noun,verb,adj,adv}``, plus noun glosses that start with an article,
  rewritten as definitions ("A kill is the destruction of an enemy plane or ship or tank or missile.").
- ``fortunes``: the quotation files of package ``fortunes`` (``/usr/share/games/fortunes``),
  one passage per ``%``-separated entry, attribution lines removed.
- ``gcide``: the GNU Collaborative International Dictionary of English (package ``dict-gcide``,
  ``/usr/share/dictd/gcide.dict.dz``, dictzip = gzip): the indented literary quotations that
  illustrate a sense, with their ``--Author`` attribution removed.
"""

from __future__ import annotations

import functools
import gzip
import re
from collections.abc import Iterator
from pathlib import Path

from speechbraid.corpora.clean import clean_sentence, dedupe, split_sentences
from speechbraid.errors import InputError

WORDNET_DIR = Path("/usr/share/wordnet")
FORTUNES_DIR = Path("/usr/share/games/fortunes")
GCIDE_FILE = Path("/usr/share/dictd/gcide.dict.dz")

SOURCES: dict[str, tuple[Path, str]] = {
    "wordnet": (WORDNET_DIR, "wordnet-base"),
    "fortunes": (FORTUNES_DIR, "fortunes"),
    "gcide": (GCIDE_FILE, "dict-gcide"),
}

_QUOTED = re.compile(r'"([^"]+)"')
_GLOSS_ARTICLE = re.compile(r"^(?:a|an|the|any)\s")
_GCIDE_TAG = re.compile(r"^\s*\[[^\]]*\]\s*$")  # "[1913 Webster]" source lines
_GCIDE_AUTHOR = re.compile(r"\s--\s?[A-Z][^\n]*$")


def wordnet_passages(root: Path = WORDNET_DIR) -> Iterator[str]:
    """Example sentences of all synsets, then article-led noun glosses as "A <lemma> is <gloss>."."""
    for pos in ("noun", "verb", "adj", "adv"):
        for line in _read_lines(root / f"data.{pos}"):
            if line.startswith("  ") or "|" not in line:
                continue  # licence header lines start with two spaces
            fields, gloss = line.split("|", 1)
            yield from _QUOTED.findall(gloss)
            if pos == "noun":
                definition = gloss.split(";")[0].strip()
                lemma = fields.split()[4].replace("_", " ")
                if _GLOSS_ARTICLE.match(definition) and lemma.isalpha() and lemma.islower():
                    article = "An" if lemma[0] in "aeiou" else "A"
                    yield f"{article} {lemma} is {definition}."


def fortune_passages(root: Path = FORTUNES_DIR) -> Iterator[str]:
    """One passage per fortune; lines that start with ``--`` (attributions) are left out."""
    if not root.is_dir():
        raise InputError("fortunes directory not found (install the Debian package 'fortunes')", root)
    for path in sorted(root.iterdir()):
        if path.suffix or path.is_symlink() or not path.is_file():
            continue  # skip the .dat index files and the .u8 links to the same text
        text = path.read_text(encoding="utf-8", errors="replace")
        for entry in re.split(r"^%\s*$", text, flags=re.MULTILINE):
            kept = [ln for ln in entry.splitlines() if not ln.strip().startswith("--")]
            if kept:
                yield "\n".join(kept)


def gcide_passages(path: Path = GCIDE_FILE) -> Iterator[str]:
    """Literary quotations: paragraphs indented deeper than a sense and ending with ``--Author``."""
    if not path.is_file():
        raise InputError("GCIDE dictionary not found (install the Debian package 'dict-gcide')", path)
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as handle:
        text = handle.read()
    for paragraph in text.split("\n\n"):
        lines = [ln for ln in paragraph.split("\n") if ln.strip() and not _GCIDE_TAG.match(ln)]
        if not lines or not all(ln.startswith(" " * 8) for ln in lines):
            continue
        passage = " ".join(ln.strip() for ln in lines)
        if _GCIDE_AUTHOR.search(passage):
            yield _GCIDE_AUTHOR.sub("", passage)


_READERS = {"wordnet": wordnet_passages, "fortunes": fortune_passages, "gcide": gcide_passages}


@functools.lru_cache(maxsize=1)  # parsing takes seconds; several builds in one process reuse it
def general_sentences() -> dict[str, tuple[str, ...]]:
    """Cleaned, deduplicated sentences per source, in source order (callers shuffle with their seed).

    A sentence found in two sources is kept only under the first (wordnet, fortunes, gcide order).
    """
    out: dict[str, tuple[str, ...]] = {}
    seen: set[str] = set()
    for name, reader in _READERS.items():
        cleaned = (clean_sentence(s) for passage in reader() for s in split_sentences(passage))
        kept = [s for s in dedupe(c for c in cleaned if c is not None) if s.lower() not in seen]
        seen.update(s.lower() for s in kept)
        out[name] = tuple(kept)
    return out


def _read_lines(path: Path) -> Iterator[str]:
    if not path.is_file():
        raise InputError("WordNet data file not found (install the Debian package 'wordnet-base')", path)
    with path.open(encoding="utf-8", errors="replace") as handle:
        yield from handle

"""A word n-gram language model in ARPA form, built here with interpolated Kneser-Ney.

The CTC bridge spells what it hears; a word n-gram over the text a user has (speech transcripts, domain text,
general text) turns those spellings into words during beam search (shallow fusion, see
:mod:`speechbraid.inference.ctc_beam`). The model is stored as a standard ARPA file (optionally gzipped), so a
KenLM-built ARPA plugs in the same way.

Building: n-grams of the highest order keep their counts, lower orders their continuation counts (the number of
distinct words seen before them; raw counts for n-grams that start at ``<s>``, which nothing precedes), each
discounted by a fixed ``discount`` and interpolated with the next lower order; the unigram level is interpolated
with a uniform distribution over the vocabulary plus ``<unk>``. In ARPA terms each listed n-gram carries its
interpolated probability and, as a history, the mass its discounts freed (its back-off weight).
"""

from __future__ import annotations

import gzip
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

from speechbraid.data.normalize import normalize_for_wer
from speechbraid.errors import InputError
from speechbraid.files import atomic_open, read_text_lines

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
NEVER = -99.0  # ARPA's log10 probability of what is never predicted (<s>)


class NgramLM:
    """``tables[k - 1]`` maps each listed k-gram (a tuple of words) to ``(log10 p, log10 back-off)``."""

    def __init__(self, tables: list[dict[tuple[str, ...], tuple[float, float]]]) -> None:
        if not tables or not tables[0]:
            raise ValueError("an n-gram LM needs at least one unigram")
        self.tables = tables
        self.vocabulary = frozenset(w for (w,) in tables[0] if w not in (BOS, EOS, UNK))

    @property
    def order(self) -> int:
        return len(self.tables)

    def log10_prob(self, history: tuple[str, ...], word: str) -> float:
        """log10 p(word | history) with ARPA back-off; a word outside the vocabulary scores as ``<unk>``."""
        if (word,) not in self.tables[0]:
            word = UNK
        history = history[len(history) - self.order + 1:] if self.order > 1 else ()
        backoff = 0.0
        for start in range(len(history) + 1):
            context = history[start:]
            entry = self.tables[len(context)].get((*context, word))
            if entry is not None:
                return backoff + entry[0]
            if context:
                backoff += self.tables[len(context) - 1].get(context, (0.0, 0.0))[1]
        raise AssertionError("unreachable: <unk> is always a unigram")

    # ------------------------------------------------------------------------------------------------------------
    # ARPA files

    def write_arpa(self, path: str | Path) -> Path:
        """Write the model as ARPA text (gzipped when ``path`` ends in ``.gz``), atomically."""
        path = Path(path)
        lines = ["", "\\data\\"] + [f"ngram {k + 1}={len(t)}" for k, t in enumerate(self.tables)]
        for k, table in enumerate(self.tables):
            lines += ["", f"\\{k + 1}-grams:"]
            highest = k + 1 == self.order
            for gram, (logp, bow) in table.items():
                lines.append(f"{logp:.6f}\t{' '.join(gram)}" + ("" if highest else f"\t{bow:.6f}"))
        lines += ["", "\\end\\", ""]
        data = "\n".join(lines).encode("utf-8")
        with atomic_open(path, "wb") as raw:
            if path.suffix == ".gz":
                with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as packed:
                    packed.write(data)
            else:
                raw.write(data)
        return path

    @classmethod
    def read_arpa(cls, path: str | Path) -> NgramLM:
        """Read an ARPA file (gzipped when it ends in ``.gz``); a malformed line is an :class:`InputError` naming
        the file and line."""
        path = Path(path)
        if not path.is_file():
            raise InputError("n-gram LM file not found", path)
        opener = gzip.open if path.suffix == ".gz" else open
        tables: list[dict[tuple[str, ...], tuple[float, float]]] = []
        order = 0
        try:
            with opener(path, "rt", encoding="utf-8") as handle:
                for line_no, line in enumerate(handle, start=1):
                    text = line.strip()
                    if not text or text.startswith("ngram ") or text in ("\\data\\", "\\end\\"):
                        continue
                    if text.startswith("\\") and text.endswith("-grams:"):
                        order = int(text[1:-len("-grams:")])
                        if order != len(tables) + 1:
                            raise InputError(f"section {text} out of order", path, line_no)
                        tables.append({})
                        continue
                    fields = text.split()
                    if order == 0 or len(fields) not in (order + 1, order + 2):
                        raise InputError(f"not an ARPA {order}-gram line: {text[:60]!r}", path, line_no)
                    try:
                        logp = float(fields[0])
                        bow = float(fields[order + 1]) if len(fields) == order + 2 else 0.0
                    except ValueError:
                        raise InputError(f"not an ARPA {order}-gram line: {text[:60]!r}", path, line_no) from None
                    tables[-1][tuple(fields[1:order + 1])] = (logp, bow)
        except (OSError, EOFError, UnicodeDecodeError) as exc:  # gzip.BadGzipFile is an OSError
            raise InputError(f"cannot read the n-gram LM: {exc}", path) from None
        if not tables or (UNK,) not in tables[0]:
            raise InputError(f"not an ARPA n-gram LM with an {UNK} unigram (sections found: {len(tables)})", path)
        return cls(tables)


def build_kneser_ney(sentences: Iterable[str], order: int = 3, discount: float = 0.75) -> NgramLM:
    """An interpolated Kneser-Ney model of whitespace-separated ``sentences`` (already normalised)."""
    if order < 1 or not 0.0 < discount < 1.0:
        raise ValueError(f"need order >= 1 and 0 < discount < 1 (got order {order}, discount {discount})")
    counts: Counter[tuple[str, ...]] = Counter()  # highest-order n-grams (shorter ones at sentence starts)
    for sentence in sentences:
        words = [BOS, *sentence.split(), EOS]
        if len(words) == 2:
            continue
        for end in range(1, len(words)):
            counts[tuple(words[max(0, end - order + 1):end + 1])] += 1
    if not counts:
        raise ValueError("no words to build an n-gram LM from")
    # adjusted[k]: counts of k-grams - raw for the highest order and for n-grams starting at <s>, else the number
    # of distinct words that precede them (continuation counts)
    adjusted: list[Counter[tuple[str, ...]]] = [Counter() for _ in range(order)]
    for gram, count in counts.items():
        adjusted[len(gram) - 1][gram] += count
    for k in range(order - 1, 0, -1):
        for gram in adjusted[k]:  # every distinct k-gram type is one left extension of its suffix
            adjusted[k - 1][gram[1:]] += 1

    # unigrams: discounted, interpolated with uniform over the vocabulary + <unk>
    total = sum(adjusted[0].values())
    freed = discount * len(adjusted[0]) / total
    uniform = 1.0 / (len(adjusted[0]) + 1)
    probs: list[dict[tuple[str, ...], float]] = [{g: (c - discount) / total + freed * uniform
                                                  for g, c in adjusted[0].items()}]
    probs[0][(UNK,)] = freed * uniform
    backoffs: list[dict[tuple[str, ...], float]] = []
    for k in range(1, order):
        totals: dict[tuple[str, ...], float] = defaultdict(float)
        types: Counter[tuple[str, ...]] = Counter()
        for gram, count in adjusted[k].items():
            totals[gram[:-1]] += count
            types[gram[:-1]] += 1
        backoff = {h: discount * types[h] / totals[h] for h in totals}
        backoffs.append(backoff)
        level: dict[tuple[str, ...], float] = {}
        for gram, count in adjusted[k].items():
            lower = _lower_prob(probs, backoffs, gram[1:])
            level[gram] = (count - discount) / totals[gram[:-1]] + backoff[gram[:-1]] * lower
        probs.append(level)
    tables = []
    for k in range(order):
        bows = backoffs[k] if k < order - 1 else {}
        table = {g: (math.log10(p), math.log10(bows[g]) if g in bows else 0.0) for g, p in probs[k].items()}
        if k == 0:
            table[(BOS,)] = (NEVER, math.log10(bows[(BOS,)]) if (BOS,) in bows else 0.0)
        tables.append(table)
    return NgramLM(tables)


def _lower_prob(probs: list[dict[tuple[str, ...], float]], backoffs: list[dict[tuple[str, ...], float]],
                gram: tuple[str, ...]) -> float:
    """p(gram[-1] | gram[:-1]) from the orders built so far, backing off through unseen histories."""
    weight = 1.0
    while len(gram) > 1:
        p = probs[len(gram) - 1].get(gram)
        if p is not None:
            return weight * p
        weight *= backoffs[len(gram) - 2].get(gram[:-1], 1.0)
        gram = gram[1:]
    return weight * probs[0].get(gram, probs[0][(UNK,)])


def build_ngram_lm_file(text_files: Sequence[str | Path], out: str | Path, order: int = 3,
                        discount: float = 0.75) -> NgramLM:
    """Build a Kneser-Ney n-gram of the non-blank lines of ``text_files`` and write it to ``out`` as ARPA (gzipped
    for ``.gz``). Lines are normalised as transcripts are for WER but keep their case, so the LM writes names as
    written ("Lustral", "February") while the beam search matches spellings case-blind."""
    lm = build_kneser_ney((normalize_for_wer(line, casefold=False) for line in read_text_lines(text_files)), order,
                          discount)
    lm.write_arpa(out)
    return lm

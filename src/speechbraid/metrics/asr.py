"""ASR metrics: WER, TER (jiwer alignments) and the entity error rate (exact surface matching).

Rates are fractions (0.25 means 25 %), corpus level: total edits over total reference words, the
way jiwer computes them, never a mean of per-utterance rates. A rate with nothing to count (no
reference words, no entities) is ``None``, not 0.

Which text each metric sees is decided once, in :mod:`speechbraid.data.normalize`.

**Entity error rate.** EER = 1 - recall over the annotated entity instances of the references
(METHODS.md), on the raw hypothesis. A reference entity instance ``(text, type)`` counts as
recognised when its exact surface string occurs in the hypothesis as a whole-word match:

* case and spelling count: ``"Aspirin"`` or ``"asprin"`` do not match ``"aspirin"``;
* the match must be bounded by a non-alphanumeric character or a string end on each side, so
  adjacent punctuation does not matter (``"aspirin,"`` matches) but ``"aspirins"`` does not;
* a run of whitespace inside a multi-word entity matches any run of whitespace (``"New  York"``);
* multiplicity: k instances of one surface string in a reference need k non-overlapping occurrences
  in the hypothesis; when there are fewer, the earliest instances (by reference position) are the
  recognised ones and the later ones are reported as missed. Occurrences are shared across entity
  types: the surface string, not the type, is what the hypothesis must contain.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jiwer

from speechbraid.data.normalize import text_for_entities, tokens_for_ter, tokens_for_wer
from speechbraid.data.records import EntitySpan, Utterance, voice_family
from speechbraid.errors import InputError
from speechbraid.files import iter_text_lines

NO_DOMAIN = "(none)"  # the domain key for records that have no domain


@dataclass(frozen=True)
class ErrorCounts:
    """Edit counts from a word alignment; they add up across utterances."""

    hits: int = 0
    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0

    @property
    def ref_words(self) -> int:
        return self.hits + self.substitutions + self.deletions

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float | None:
        """Errors over reference words; None when there are no reference words."""
        return self.errors / self.ref_words if self.ref_words else None

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(
            self.hits + other.hits,
            self.substitutions + other.substitutions,
            self.deletions + other.deletions,
            self.insertions + other.insertions,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "errors": self.errors,
            "ref_words": self.ref_words,
            "substitutions": self.substitutions,
            "deletions": self.deletions,
            "insertions": self.insertions,
            "hits": self.hits,
        }


@dataclass
class ErrorRateResult:
    """A corpus scored with one tokenisation: totals, per-utterance counts and jiwer's alignments."""

    total: ErrorCounts
    utterances: list[ErrorCounts]
    references: list[list[str]]  # the tokens that were compared, per utterance
    hypotheses: list[list[str]]
    alignments: list[list[jiwer.AlignmentChunk]]

    @property
    def rate(self) -> float | None:
        return self.total.rate


def wer(refs: Sequence[str], hyps: Sequence[str]) -> ErrorRateResult:
    """Word error rate on normalised text (:func:`~speechbraid.data.normalize.normalize_for_wer`)."""
    return _error_rate(refs, hyps, tokens_for_wer)


def ter(refs: Sequence[str], hyps: Sequence[str]) -> ErrorRateResult:
    """Token error rate on raw text: case and punctuation count (:func:`~.normalize.tokens_for_ter`)."""
    return _error_rate(refs, hyps, tokens_for_ter)


def _error_rate(refs: Sequence[str], hyps: Sequence[str], tokenize: Callable[[str], list[str]]) -> ErrorRateResult:
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    ref_tokens = [tokenize(text) for text in refs]
    hyp_tokens = [tokenize(text) for text in hyps]
    if not ref_tokens:
        return ErrorRateResult(ErrorCounts(), [], [], [], [])
    # Tokens never contain whitespace, so joining with single spaces hands jiwer exactly these tokens
    # (its default transform splits at spaces).
    output = jiwer.process_words([" ".join(t) for t in ref_tokens], [" ".join(t) for t in hyp_tokens])
    per_utt = [_counts(chunks) for chunks in output.alignments]
    total = ErrorCounts(output.hits, output.substitutions, output.deletions, output.insertions)
    return ErrorRateResult(total, per_utt, output.references, output.hypotheses, output.alignments)


def _counts(chunks: Sequence[jiwer.AlignmentChunk]) -> ErrorCounts:
    sizes: dict[str, int] = defaultdict(int)
    for chunk in chunks:
        ref_len = chunk.ref_end_idx - chunk.ref_start_idx
        sizes[chunk.type] += ref_len if chunk.type != "insert" else chunk.hyp_end_idx - chunk.hyp_start_idx
    return ErrorCounts(sizes["equal"], sizes["substitute"], sizes["delete"], sizes["insert"])


# ---------------------------------------------------------------------------------------------
# Entity error rate


@dataclass(frozen=True)
class MissedEntity:
    """A reference entity instance the hypothesis did not contain (for error analysis)."""

    utterance_id: str
    text: str
    type: str
    domain: str
    start: int  # character offsets in the reference text
    end: int
    hypothesis: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.utterance_id, "text": self.text, "type": self.type, "domain": self.domain,
            "start": self.start, "end": self.end, "hypothesis": self.hypothesis,
        }


@dataclass
class EntityTally:
    total: int = 0
    recognised: int = 0

    @property
    def missed(self) -> int:
        return self.total - self.recognised

    @property
    def eer(self) -> float | None:
        """1 - recall; None when there are no entities to recall."""
        return self.missed / self.total if self.total else None

    def to_dict(self) -> dict[str, Any]:
        return {"eer": self.eer, "total": self.total, "recognised": self.recognised, "missed": self.missed}


@dataclass
class EntityReport:
    """EER overall, by entity type, by domain and by voice family, and every missed instance."""

    overall: EntityTally = field(default_factory=EntityTally)
    by_type: dict[str, EntityTally] = field(default_factory=dict)
    by_domain: dict[str, EntityTally] = field(default_factory=dict)
    by_voice_family: dict[str, EntityTally] = field(default_factory=dict)
    missed: list[MissedEntity] = field(default_factory=list)

    @property
    def eer(self) -> float | None:
        return self.overall.eer

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.overall.to_dict(),
            "by_type": {k: v.to_dict() for k, v in sorted(self.by_type.items())},
            "by_domain": {k: v.to_dict() for k, v in sorted(self.by_domain.items())},
            "by_voice_family": {k: v.to_dict() for k, v in sorted(self.by_voice_family.items())},
            "missed_entities": [m.to_dict() for m in self.missed],
        }


def count_occurrences(surface: str, hypothesis: str) -> int:
    """Non-overlapping whole-word occurrences of ``surface`` in the raw ``hypothesis`` (case-sensitive)."""
    surface = text_for_entities(surface).strip()
    if not surface:
        raise ValueError("an entity with empty text cannot be matched")
    body = r"\s+".join(re.escape(part) for part in surface.split())
    # [^\W_] is "a letter or digit": the boundary is any non-alphanumeric character or a string end.
    pattern = rf"(?<![^\W_]){body}(?![^\W_])"
    return sum(1 for _ in re.finditer(pattern, text_for_entities(hypothesis)))


def recognised_entities(entities: Sequence[EntitySpan], hypothesis: str) -> list[bool]:
    """For each entity instance, whether the hypothesis recognised it (see the module docstring)."""
    available: dict[str, int] = {}
    result = [False] * len(entities)
    for index in sorted(range(len(entities)), key=lambda i: (entities[i].start, i)):
        surface = entities[index].text
        if surface not in available:
            available[surface] = count_occurrences(surface, hypothesis)
        if available[surface] > 0:
            available[surface] -= 1
            result[index] = True
    return result


def entity_error_rate(records: Sequence[Utterance], hyps: Sequence[str]) -> EntityReport:
    """EER of raw hypotheses against the annotated entities of ``records`` (one hypothesis per record)."""
    if len(records) != len(hyps):
        raise ValueError(f"{len(records)} records but {len(hyps)} hypotheses")
    report = EntityReport()
    for record, hyp in zip(records, hyps, strict=True):
        domain = record.domain or NO_DOMAIN
        try:
            hits = recognised_entities(record.entities, hyp)
        except ValueError as exc:
            raise ValueError(f"utterance {record.id!r}: {exc}") from None
        for entity, hit in zip(record.entities, hits, strict=True):
            for tally in (
                report.overall,
                report.by_type.setdefault(entity.type, EntityTally()),
                report.by_domain.setdefault(domain, EntityTally()),
                report.by_voice_family.setdefault(voice_family(record.source), EntityTally()),
            ):
                tally.total += 1
                tally.recognised += hit
            if not hit:
                report.missed.append(
                    MissedEntity(record.id, entity.text, entity.type, domain, entity.start, entity.end, hyp)
                )
    return report


# ---------------------------------------------------------------------------------------------
# Everything together


def evaluate(records: Sequence[Utterance], hyps: Sequence[str]) -> dict[str, Any]:
    """WER, TER and EER overall, per domain and per voice family, plus per-entity-type EER and the missed entities.

    Returns a JSON-serialisable dict: ``overall`` and each ``by_domain`` and ``by_voice_family`` entry hold
    ``utterances``, ``wer``, ``ter``, ``eer`` (fractions or None) and the underlying counts (``wer_counts``,
    ``ter_counts``, ``entities``); ``by_entity_type`` holds entity tallies; ``missed_entities`` lists
    every missed instance. The voice family comes from each record's ``source``
    (:func:`~speechbraid.data.records.voice_family`: ``espeak``, ``piper``, ``recorded``), so synthetic and
    recorded speech in one test set are read apart.
    """
    if len(records) != len(hyps):
        raise ValueError(f"{len(records)} records but {len(hyps)} hypotheses")
    refs = [r.text for r in records]
    word_result, token_result = wer(refs, hyps), ter(refs, hyps)
    entities = entity_error_rate(records, hyps)

    domains: dict[str, list[int]] = defaultdict(list)
    families: dict[str, list[int]] = defaultdict(list)
    for index, record in enumerate(records):
        domains[record.domain or NO_DOMAIN].append(index)
        families[voice_family(record.source)].append(index)

    def summary(indices: Sequence[int], entity_tally: EntityTally) -> dict[str, Any]:
        w = sum((word_result.utterances[i] for i in indices), ErrorCounts())
        t = sum((token_result.utterances[i] for i in indices), ErrorCounts())
        return {
            "utterances": len(indices),
            "wer": w.rate,
            "ter": t.rate,
            "eer": entity_tally.eer,
            "wer_counts": w.to_dict(),
            "ter_counts": t.to_dict(),
            "entities": entity_tally.to_dict(),
        }

    return {
        "overall": summary(range(len(records)), entities.overall),
        "by_domain": {
            name: summary(indices, entities.by_domain.get(name, EntityTally()))
            for name, indices in sorted(domains.items())
        },
        "by_voice_family": {
            name: summary(indices, entities.by_voice_family.get(name, EntityTally()))
            for name, indices in sorted(families.items())
        },
        "by_entity_type": {k: v.to_dict() for k, v in sorted(entities.by_type.items())},
        "missed_entities": [m.to_dict() for m in entities.missed],
    }


def format_report(result: dict[str, Any], max_missed: int = 20) -> str:
    """A plain-text table of an :func:`evaluate` result (rates in percent; ``-`` means undefined).

    Rows: overall, per domain, and per voice family when the records come from more than one.
    """

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.2f}"

    lines = [f"{'':<24} {'utts':>7} {'ref words':>10} {'WER %':>8} {'TER %':>8} {'entities':>9} {'EER %':>8}"]
    # .get: results saved before voice families were reported have none
    families = result.get("by_voice_family", {})
    sections = [(None, {"overall": result["overall"]}), ("by domain:", result["by_domain"]),
                ("by voice family:", families if len(families) > 1 else {})]
    for title, rows in sections:
        if rows and title:
            lines.append(title)
        for name, row in rows.items():
            lines.append(
                f"{name:<24} {row['utterances']:>7} {row['wer_counts']['ref_words']:>10} {pct(row['wer']):>8} "
                f"{pct(row['ter']):>8} {row['entities']['total']:>9} {pct(row['eer']):>8}"
            )
    if result["by_entity_type"]:
        lines += ["", f"{'entity type':<24} {'entities':>9} {'missed':>7} {'EER %':>8}"]
        for name, tally in result["by_entity_type"].items():
            lines.append(f"{name:<24} {tally['total']:>9} {tally['missed']:>7} {pct(tally['eer']):>8}")
    missed = result["missed_entities"]
    if missed:
        shown = missed if max_missed < 0 else missed[:max_missed]
        lines += ["", f"missed entities ({len(missed)}{'' if len(shown) == len(missed) else f', first {len(shown)}'}):"]
        lines += [f"  {m['id']}: {m['text']!r} ({m['type']}) -> hyp: {m['hypothesis']!r}" for m in shown]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Hypothesis files


@dataclass(frozen=True)
class Hypothesis:
    """One hypothesis line and where it came from."""

    id: str
    text: str
    path: str
    line: int

    def where(self) -> str:
        return f"{self.path}:{self.line}"


def read_hypotheses(path: str | Path) -> dict[str, Hypothesis]:
    """Read a hypothesis file into ``{id: Hypothesis}``; blank lines are skipped.

    Two formats, told apart by the first non-blank line: JSONL when it starts with ``{`` (one
    ``{"id": ..., "text": ...}`` object per line, other keys ignored; what ``speechbraid transcribe
    --json`` writes), otherwise ``id<TAB>text`` lines (a line without a tab splits at its first
    whitespace, as in Kaldi ``text`` files; an id alone is an empty hypothesis). A malformed line or a
    repeated id raises :class:`InputError` naming the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("hypothesis file not found", path)
    hyps: dict[str, Hypothesis] = {}
    is_jsonl: bool | None = None
    for line_no, line in iter_text_lines(path):
        if not line.strip():
            continue
        if is_jsonl is None:
            is_jsonl = line.lstrip().startswith("{")
        utt_id, text = _parse_jsonl_hyp(line, path, line_no) if is_jsonl else _parse_tsv_hyp(line)
        if not utt_id:
            raise InputError("empty utterance id", path, line_no)
        if utt_id in hyps:
            first = hyps[utt_id].line
            raise InputError(f"duplicate hypothesis id {utt_id!r} (first at line {first})", path, line_no)
        hyps[utt_id] = Hypothesis(utt_id, text, str(path), line_no)
    return hyps


def _parse_jsonl_hyp(line: str, path: Path, line_no: int) -> tuple[str, str]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON in a JSONL hypothesis file: {exc}", path, line_no) from None
    if not isinstance(obj, dict):
        raise InputError(f"expected a JSON object with 'id' and 'text', got {type(obj).__name__}", path, line_no)
    for key in ("id", "text"):
        if not isinstance(obj.get(key), str):
            raise InputError(f"field {key!r} must be a string, got {obj.get(key)!r}", path, line_no)
    return obj["id"], obj["text"]


def _parse_tsv_hyp(line: str) -> tuple[str, str]:
    if "\t" in line:
        utt_id, text = line.split("\t", 1)
        return utt_id.strip(), text.strip()
    parts = line.strip().split(maxsplit=1)
    return parts[0], parts[1] if len(parts) > 1 else ""

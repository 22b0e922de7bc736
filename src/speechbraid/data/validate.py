"""Manifest validation: find every defect in a manifest in one streaming pass, report it by file and line.

Validation decodes no audio (only the header, via :func:`audio_info`; the one exception is a record whose
words end suspiciously early, see ``speech_after_last_word``) and never keeps the records:
it holds counts, a capped list of problems and a compact table of id digests (about 12 bytes per
line, for duplicate detection), so a million-line manifest is checked in near-flat memory.

Problem codes (severity in brackets; only errors make a record "bad"):

==========================  ===========================================================================
``invalid_record``          [error] line is not JSON or lacks a required field (from the reader)
``empty_text``              [error] text is empty or whitespace only
``duplicate_id``            [error] an earlier line of the manifest already used this id
``missing_audio``           [error] the audio file does not exist
``unreadable_audio``        [error] the audio header cannot be read
``sample_rate_mismatch``    [error] declared ``sample_rate`` differs from the audio header
``unexpected_sample_rate``  [error] the audio rate differs from the expected rate
``duration_mismatch``       [error] declared ``duration`` differs from the header by more than the tolerance
``missing_duration``        [warning] audio without a declared duration (batching needs it)
``word_start_after_end``    [error] an aligned word starts after it ends
``zero_length_word``        [error] a word with letters or digits has zero duration (a collapsed alignment)
``alignment_out_of_range``  [error] a word starts before 0 or ends after the audio (plus tolerance)
``non_monotonic_words``     [error] a word starts before the previous word starts
``overlapping_words``       [error] a word starts before the previous word ends
``alignment_text_mismatch`` [error] alignment words differ from the text's words (see :func:`comparison_tokens`)
``speech_after_last_word``  [error] the words end early (< 60% into the audio) yet speech goes on after them:
                            times squeezed by a broken aligner or synthesiser (the only check that decodes
                            audio, and only for such records)
``entity_out_of_range``     [error] entity offsets outside the text, or start > end
``entity_text_mismatch``    [error] ``text[start:end]`` differs from the entity's text
``overlapping_entities``    [warning] entity spans overlap (nested entities are legal but have no markup)
==========================  ===========================================================================
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
from tqdm import tqdm

from speechbraid.data.audio import DEFAULT_SAMPLE_RATE, audio_info, load_audio, speech_seconds_after
from speechbraid.data.manifest import ManifestLine, iter_manifest, write_manifest
from speechbraid.data.records import EntitySpan, Utterance, WordAlignment
from speechbraid.errors import ConfigError, InputError, ManifestError
from speechbraid.files import atomic_open

Severity = Literal["error", "warning"]
Policy = Literal["fail", "skip"]

WARNING_CODES = frozenset({"missing_duration", "overlapping_entities"})

# Manifests store times rounded to 4 decimals, so two touching words can differ by rounding noise.
_TIME_EPS = 1e-4
# Words ending before this fraction of the audio, with at least _SPEECH_AFTER_S of speech after them (plus a
# margin for the last word's release), are squeezed: real recordings end in silence, not in more speech.
_EARLY_END_FRACTION = 0.6
_SPEECH_AFTER_S = 0.3
_RELEASE_S = 0.1


@dataclass(frozen=True)
class Problem:
    """One defect of one manifest line."""

    path: str
    line: int | None
    utterance_id: str | None
    code: str
    message: str
    severity: Severity = "error"

    def format(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: [{self.utterance_id or '-'}] {self.code}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _problem(item: ManifestLine, code: str, message: str) -> Problem:
    severity: Severity = "warning" if code in WARNING_CODES else "error"
    return Problem(item.path, item.line, item.record.id, code, message, severity)


# ---------------------------------------------------------------------------------------------
# Per-record checks
# ---------------------------------------------------------------------------------------------


def comparison_tokens(text: str) -> list[str]:
    """Whitespace tokens of ``text`` normalised for comparing alignment words with the transcript ONLY.

    Light on purpose: casefold and drop Unicode punctuation (category P*), then drop tokens left empty
    (a lone dash). Aligners differ in whether they keep case and punctuation on words; anything beyond
    that (numbers, hyphen splitting) is a real mismatch the user should see. This is not the scoring
    normalisation.
    """
    out = []
    for token in text.split():
        norm = "".join(ch for ch in token.casefold() if not unicodedata.category(ch).startswith("P"))
        if norm:
            out.append(norm)
    return out


def _word_label(index: int, word: WordAlignment) -> str:
    return f"words[{index}] {word.word!r}"


def _more(messages: list[str]) -> str:
    """First finding of a kind, plus how many more of the same kind the record has."""
    extra = f" (and {len(messages) - 1} more in this record)" if len(messages) > 1 else ""
    return messages[0] + extra


def _check_words(item: ManifestLine, audio_duration: float | None, tolerance: float) -> list[Problem]:
    words = item.record.words or []
    found: dict[str, list[str]] = {}
    for i, word in enumerate(words):
        if word.start > word.end:
            found.setdefault("word_start_after_end", []).append(
                f"{_word_label(i, word)} starts at {word.start:.3f} s after it ends at {word.end:.3f} s"
            )
        elif word.start == word.end and any(c.isalnum() for c in word.word):
            # a spoken word with no duration: its speech is elsewhere (a collapsed alignment)
            found.setdefault("zero_length_word", []).append(
                f"{_word_label(i, word)} has zero duration at {word.start:.3f} s"
            )
        if word.start < 0:
            found.setdefault("alignment_out_of_range", []).append(
                f"{_word_label(i, word)} starts at {word.start:.3f} s, before the start of the audio"
            )
        if audio_duration is not None and word.end > audio_duration + tolerance:
            found.setdefault("alignment_out_of_range", []).append(
                f"{_word_label(i, word)} ends at {word.end:.3f} s, after the end of the audio "
                f"({audio_duration:.3f} s)"
            )
        if i == 0:
            continue
        prev = words[i - 1]
        if word.start < prev.start - _TIME_EPS:
            found.setdefault("non_monotonic_words", []).append(
                f"{_word_label(i, word)} starts at {word.start:.3f} s, before {_word_label(i - 1, prev)} "
                f"starts at {prev.start:.3f} s"
            )
        elif word.start < prev.end - _TIME_EPS:
            found.setdefault("overlapping_words", []).append(
                f"{_word_label(i, word)} starts at {word.start:.3f} s, before {_word_label(i - 1, prev)} "
                f"ends at {prev.end:.3f} s"
            )
    return [_problem(item, code, _more(messages)) for code, messages in found.items()]


def _check_speech_after_words(item: ManifestLine, audio_duration: float) -> list[Problem]:
    """Decode the audio only when the words end suspiciously early, and look for speech after them."""
    words = item.record.words or []
    last_end = max((w.end for w in words), default=0.0)
    if not words or last_end >= _EARLY_END_FRACTION * audio_duration:
        return []
    try:
        samples, rate = load_audio(item.record.audio, None)  # type: ignore[arg-type]
    except InputError as exc:
        return [_problem(item, "unreadable_audio", f"cannot decode {item.record.audio}: {exc.message}")]
    after = speech_seconds_after(samples, rate, last_end + _RELEASE_S)
    if after < _SPEECH_AFTER_S:
        return []
    return [_problem(item, "speech_after_last_word",
                     f"the last word ends at {last_end:.3f} s, {100 * last_end / audio_duration:.0f}% into "
                     f"{audio_duration:.3f} s of audio, but {after:.2f} s of speech follow it: the word times "
                     "do not describe this audio")]


def _check_alignment_text(item: ManifestLine) -> list[Problem]:
    """Compare alignment words with the text's words; name the first position where they differ."""
    record = item.record
    text_tokens = comparison_tokens(record.text)
    # An aligner may emit a multi-word unit ("New York") as one word: split it like the text.
    aligned: list[tuple[int, str]] = []
    for i, word in enumerate(record.words or []):
        aligned.extend((i, token) for token in comparison_tokens(word.word))
    if [token for _, token in aligned] == text_tokens:
        return []
    pos = next(
        (k for k, (a, t) in enumerate(zip(aligned, text_tokens, strict=False)) if a[1] != t),
        min(len(aligned), len(text_tokens)),
    )
    words = record.words or []
    counts = f"alignment has {len(aligned)} words, text has {len(text_tokens)}"
    if pos < len(aligned) and pos < len(text_tokens):
        index = aligned[pos][0]
        detail = f"{_word_label(index, words[index])} != text word {pos} {text_tokens[pos]!r}"
    elif pos < len(text_tokens):
        detail = f"text word {pos} {text_tokens[pos]!r} has no aligned word"
    else:
        index = aligned[pos][0]
        detail = f"{_word_label(index, words[index])} has no word in the text"
    return [_problem(item, "alignment_text_mismatch", f"first difference at word {pos}: {detail} ({counts})")]


def _check_entities(item: ManifestLine) -> list[Problem]:
    text = item.record.text
    found: dict[str, list[str]] = {}
    valid: list[tuple[int, EntitySpan]] = []
    for i, ent in enumerate(item.record.entities):
        label = f"entities[{i}] {ent.text!r}"
        if ent.start < 0 or ent.end > len(text) or ent.start > ent.end:
            found.setdefault("entity_out_of_range", []).append(
                f"{label} has offsets [{ent.start}, {ent.end}) outside the text (length {len(text)})"
            )
        elif text[ent.start : ent.end] != ent.text:
            found.setdefault("entity_text_mismatch", []).append(
                f"{label} but text[{ent.start}:{ent.end}] is {text[ent.start : ent.end]!r}"
            )
        else:
            valid.append((i, ent))
    valid.sort(key=lambda pair: (pair[1].start, pair[1].end))
    for (i_prev, prev), (i, ent) in zip(valid, valid[1:], strict=False):
        if ent.start < prev.end:
            found.setdefault("overlapping_entities", []).append(
                f"entities[{i}] {ent.text!r} [{ent.start}, {ent.end}) overlaps entities[{i_prev}] "
                f"{prev.text!r} [{prev.start}, {prev.end})"
            )
    return [_problem(item, code, _more(messages)) for code, messages in found.items()]


def _check_audio(
    item: ManifestLine, expected_sample_rate: int | None, tolerance: float
) -> tuple[list[Problem], float | None]:
    """Header checks; returns the problems and the header duration (None when the header is unusable)."""
    record: Utterance = item.record
    assert record.audio is not None
    if not Path(record.audio).is_file():
        return [_problem(item, "missing_audio", f"audio file not found: {record.audio}")], None
    try:
        rate, duration = audio_info(record.audio)
    except InputError as exc:
        return [_problem(item, "unreadable_audio", f"cannot read the header of {record.audio}: {exc.message}")], None
    problems = []
    if record.sample_rate is not None and record.sample_rate != rate:
        problems.append(_problem(
            item, "sample_rate_mismatch",
            f"declared sample_rate {record.sample_rate} but {record.audio} is {rate} Hz",
        ))
    if expected_sample_rate is not None and rate != expected_sample_rate:
        problems.append(_problem(
            item, "unexpected_sample_rate", f"{record.audio} is {rate} Hz, expected {expected_sample_rate} Hz"
        ))
    if record.duration is None:
        problems.append(_problem(
            item, "missing_duration", f"no declared duration; the header of {record.audio} says {duration:.3f} s"
        ))
    elif abs(record.duration - duration) > tolerance:
        problems.append(_problem(
            item, "duration_mismatch",
            f"declared duration {record.duration:.3f} s but {record.audio} lasts {duration:.3f} s "
            f"(tolerance {tolerance} s)",
        ))
    return problems, duration


def validate_record(
    item: ManifestLine,
    *,
    expected_sample_rate: int | None = DEFAULT_SAMPLE_RATE,
    duration_tolerance: float = 0.05,
    check_audio: bool = True,
) -> list[Problem]:
    """Every defect of one record that can be seen without the rest of the manifest (not duplicates).

    ``expected_sample_rate=None`` accepts any rate; ``check_audio=False`` skips the file and header
    checks (then the declared ``sample_rate``/``duration`` stand in for the header).
    """
    record = item.record
    problems: list[Problem] = []
    text_ok = bool(record.text.strip())
    if not text_ok:
        problems.append(_problem(item, "empty_text", "text is empty or whitespace only"))
    audio_duration = record.duration
    header_ok = False
    if record.audio is not None and check_audio:
        audio_problems, header_duration = _check_audio(item, expected_sample_rate, duration_tolerance)
        problems.extend(audio_problems)
        if header_duration is not None:
            audio_duration = header_duration
            header_ok = True
    elif expected_sample_rate is not None and record.sample_rate not in (None, expected_sample_rate):
        problems.append(_problem(
            item, "unexpected_sample_rate",
            f"declared sample_rate {record.sample_rate} Hz, expected {expected_sample_rate} Hz",
        ))
    if record.words is not None:
        problems.extend(_check_words(item, audio_duration, duration_tolerance))
        if check_audio and header_ok and audio_duration:
            problems.extend(_check_speech_after_words(item, audio_duration))
        if text_ok:  # an empty text is already reported; a mismatch against it says nothing new
            problems.extend(_check_alignment_text(item))
    problems.extend(_check_entities(item))
    return problems


# ---------------------------------------------------------------------------------------------
# Whole manifest
# ---------------------------------------------------------------------------------------------


@dataclass
class ValidationReport:
    """Outcome of :func:`validate_manifest`: counts for everything, problem details up to a cap."""

    manifest: str
    policy: Policy
    records_total: int = 0  # parseable records plus unparseable lines
    records_ok: int = 0  # records without errors (warnings allowed)
    records_bad: int = 0  # records with at least one error (skipped under policy "skip")
    problem_total: int = 0
    counts: Counter[str] = field(default_factory=Counter)  # problems per code
    problems: list[Problem] = field(default_factory=list)  # the first ``max_problems`` problems
    output: str | None = None  # clean manifest written under policy "skip"
    records_written: int = 0
    rejects: str | None = None  # JSONL of every bad record with its reasons

    @property
    def ok(self) -> bool:
        """True when no record has an error (warnings do not count)."""
        return self.records_bad == 0

    @property
    def problems_not_listed(self) -> int:
        return self.problem_total - len(self.problems)

    def to_dict(self) -> dict[str, Any]:
        return {
            "manifest": self.manifest,
            "policy": self.policy,
            "ok": self.ok,
            "records_total": self.records_total,
            "records_ok": self.records_ok,
            "records_bad": self.records_bad,
            "records_skipped": self.records_bad if self.policy == "skip" else 0,
            "problem_total": self.problem_total,
            "problems_not_listed": self.problems_not_listed,
            "counts": dict(sorted(self.counts.items())),
            "problems": [p.to_dict() for p in self.problems],
            "output": self.output,
            "records_written": self.records_written,
            "rejects": self.rejects,
        }

    def format(self) -> str:
        lines = [p.format() for p in self.problems]
        if self.problems_not_listed:
            hint = f" (full list in {self.rejects})" if self.rejects else " (raise --max-report or use --rejects)"
            lines.append(f"... {self.problems_not_listed} more problems not listed{hint}")
        if self.counts:
            lines.append("problems per code:")
            width = max(len(code) for code in self.counts)
            for code, count in sorted(self.counts.items()):
                kind = "warning" if code in WARNING_CODES else "error"
                lines.append(f"  {code:<{width}}  {count:>8}  ({kind})")
        summary = (
            f"{self.manifest}: {self.records_total} records, {self.records_ok} ok, "
            f"{self.records_bad} with errors"
        )
        if self.policy == "fail":
            summary += ": OK" if self.ok else ": FAILED"
        else:
            summary += f", {self.records_bad} skipped"
            if self.output is not None:
                summary += f"; wrote {self.records_written} clean records to {self.output}"
        lines.append(summary)
        return "\n".join(lines)


class _SeenIds:
    """Which ids a manifest has used so far, and on which line, in about 12 bytes per id.

    Ids are kept as 63-bit digests (two distinct ids collide with probability ~n^2 / 2^64, about 5e-8
    for a million ids): recent ones in a small dict, older ones in sorted numpy arrays that the dict
    is merged into every ``batch`` ids. A dict of id strings would cost ~150 bytes per id.
    """

    def __init__(self, batch: int = 4096) -> None:
        self._batch = batch
        self._recent: dict[int, int] = {}
        self._keys = np.empty(0, dtype=np.int64)
        self._lines = np.empty(0, dtype=np.int32)

    def first_line(self, utt_id: str, line: int) -> int:
        """The line where ``utt_id`` was first seen; registers it on ``line`` when it is new."""
        digest = int.from_bytes(hashlib.blake2b(utt_id.encode("utf-8"), digest_size=8).digest(), "little") >> 1
        pos = int(np.searchsorted(self._keys, digest))
        if pos < self._keys.size and self._keys[pos] == digest:
            return int(self._lines[pos])
        first = self._recent.setdefault(digest, line)
        if len(self._recent) >= self._batch:
            self._merge()
        return first

    def _merge(self) -> None:
        """Insert the recent ids into the sorted arrays: O(n) per merge, no re-sort of the old ids."""
        n = len(self._recent)
        keys = np.fromiter(self._recent.keys(), dtype=np.int64, count=n)
        lines = np.fromiter(self._recent.values(), dtype=np.int32, count=n)
        order = np.argsort(keys)
        keys, lines = keys[order], lines[order]
        positions = np.searchsorted(self._keys, keys)
        self._keys = np.insert(self._keys, positions, keys)
        self._lines = np.insert(self._lines, positions, lines)
        self._recent.clear()


def _check_not_empty(path: Path) -> None:
    """A manifest without a single non-blank line validates nothing: an error, not an OK (checked before any
    output is written)."""
    if not path.is_file():
        raise InputError("manifest not found", path)
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 16):
            if chunk.strip():
                return
    raise InputError("the manifest is empty (no records to validate)", path)


def validate_manifest(
    path: str | Path,
    *,
    policy: Policy = "fail",
    output: str | Path | None = None,
    rejects: str | Path | None = None,
    expected_sample_rate: int | None = DEFAULT_SAMPLE_RATE,
    duration_tolerance: float = 0.05,
    check_audio: bool = True,
    max_problems: int | None = 1000,
    progress: bool = False,
) -> ValidationReport:
    """Check every line of a manifest in one streaming pass.

    Policy ``"fail"`` only reports (the caller exits non-zero when ``not report.ok``). Policy
    ``"skip"`` additionally writes the records without errors to ``output`` (atomically, streaming;
    records with only warnings are kept). ``rejects`` receives every bad record's file, line and
    reasons, so nothing is dropped silently even when more than ``max_problems`` problems exist
    (``None`` keeps all problems in the report).
    """
    if policy not in ("fail", "skip"):
        raise ConfigError(f"unknown validation policy {policy!r}; choose 'fail' or 'skip'")
    if output is not None and policy != "skip":
        raise ConfigError("--output writes the clean records and needs --policy skip")
    if max_problems is not None and max_problems < 0:
        raise ConfigError(f"max_problems must be >= 0, got {max_problems}")
    path = Path(path)
    _check_not_empty(path)
    report = ValidationReport(manifest=str(path), policy=policy)
    rejects_out: IO[str] | None = None  # opened below, for the run only

    def add(problems: Sequence[Problem], where: tuple[str, int | None, str | None]) -> bool:
        """Record a line's problems; True when the line is clean enough to keep."""
        report.records_total += 1
        report.problem_total += len(problems)
        report.counts.update(p.code for p in problems)
        room = len(problems) if max_problems is None else max(0, max_problems - len(report.problems))
        report.problems.extend(problems[:room])
        bad = any(p.severity == "error" for p in problems)
        if bad:
            report.records_bad += 1
            if rejects_out is not None:
                reasons = [{"code": p.code, "message": p.message} for p in problems if p.severity == "error"]
                record = {"path": where[0], "line": where[1], "id": where[2], "problems": reasons}
                rejects_out.write(json.dumps(record) + "\n")
        else:
            report.records_ok += 1
        return not bad

    def parse_problems(parse_errors: list[ManifestError]) -> None:
        for err in parse_errors:
            problem = Problem(err.path or str(path), err.line, None, "invalid_record", err.message)
            add([problem], (problem.path, problem.line, None))
        parse_errors.clear()  # drained as we go, so they never pile up

    def clean_records() -> Iterator[Utterance]:
        seen = _SeenIds()
        parse_errors: list[ManifestError] = []
        items = iter_manifest(path, errors=parse_errors)
        for item in tqdm(items, desc="validate", unit="utt", disable=None if progress else True):
            parse_problems(parse_errors)
            problems = validate_record(
                item,
                expected_sample_rate=expected_sample_rate,
                duration_tolerance=duration_tolerance,
                check_audio=check_audio,
            )
            first = seen.first_line(item.record.id, item.line)
            if first != item.line:
                problems.append(_problem(item, "duplicate_id", f"id already used on line {first}"))
            if add(problems, (item.path, item.line, item.record.id)):
                yield item.record
        parse_problems(parse_errors)

    with ExitStack() as stack:
        if rejects is not None:  # bad records stream there; the file appears only when the whole run succeeds
            rejects_out = stack.enter_context(atomic_open(rejects))
            report.rejects = str(rejects)
        if output is not None:
            report.records_written = write_manifest(clean_records(), output)
            report.output = str(output)
        else:
            for _ in clean_records():
                pass
    return report

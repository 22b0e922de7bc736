"""Adding word alignments to a manifest with a trained CTC aligner, streaming line by line.

An utterance that cannot be aligned is never kept silently: it is left out of the output, listed in
the :class:`AlignReport` with its file:line and reason, and optionally written to a rejects manifest
(the original record plus an ``align_error`` field) so it can be inspected or fixed and re-run.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from tqdm.auto import tqdm

from speechbraid.align import DEFAULT_MIN_CONFIDENCE, DEFAULT_MIN_WORD_SCORE
from speechbraid.align.model import CTCAligner, load_aligner, utterance_features
from speechbraid.align.text import encode_transcript
from speechbraid.align.viterbi import AlignmentFailure, confidence, forced_align, word_spans
from speechbraid.data.manifest import ManifestLine, iter_manifest, write_manifest
from speechbraid.data.records import Utterance, WordAlignment
from speechbraid.errors import ConfigError, InputError, ManifestError
from speechbraid.files import write_jsonl


@dataclass(frozen=True)
class Rejected:
    """An utterance left out of the aligned manifest, and why."""

    where: str  # file:line
    id: str | None
    reason: str
    confidence: float | None = None

    def format(self) -> str:
        ident = f" '{self.id}'" if self.id else ""
        return f"{self.where}:{ident} {self.reason}"


@dataclass
class AlignReport:
    """What :func:`align_manifest` did: how many were aligned, which were rejected."""

    output: str
    aligned: int = 0
    replaced: int = 0  # aligned records that already had word times (the new ones replace them)
    rejected: list[Rejected] = field(default_factory=list)
    confidences: list[float] = field(default_factory=list)

    def format(self) -> str:
        lines = [f"aligned {self.aligned} utterance(s) into {self.output}"
                 + (f" ({self.replaced} had word times, replaced)" if self.replaced else "")]
        if self.confidences:
            ordered = sorted(self.confidences)
            lines.append(f"confidence: min {ordered[0]:.3f}, median {ordered[len(ordered) // 2]:.3f}")
        if self.rejected:
            lines.append(f"rejected {len(self.rejected)} utterance(s), not in the output:")
            lines += ["  " + r.format() for r in self.rejected]
        return "\n".join(lines)


def align_record(model: CTCAligner, record: Utterance, into_blanks: bool = False
                 ) -> tuple[list[WordAlignment], float]:
    """Word alignments of one record and the utterance confidence; raises AlignmentFailure or ValueError.

    ``into_blanks``: word extent rule, see :func:`~speechbraid.align.viterbi.word_spans`."""
    targets = encode_transcript(record.text)
    if not targets.words:
        raise AlignmentFailure("empty text")
    log_probs = model.log_posteriors(utterance_features(record))
    path = forced_align(log_probs, targets.ids)
    step = model.config.frame_seconds
    limit = record.duration if record.duration is not None else len(log_probs) * step
    words = [WordAlignment(span.word, min(span.first * step, limit), min(span.last * step, limit), span.score)
             for span in word_spans(targets, path, into_blanks)]
    return words, confidence(path)


def align_manifest(
    manifest: str | Path,
    model_dir: str | Path,
    out: str | Path,
    *,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    min_word_score: float = DEFAULT_MIN_WORD_SCORE,
    rejects: str | Path | None = None,
    into_blanks: bool = False,
    device: str = "cpu",
    progress: bool = True,
) -> AlignReport:
    """Write ``out``: every record of ``manifest`` that aligns, with ``words`` (each with a ``score``).

    A record is rejected (reported with file:line, left out) when it is text-only, its text is empty or
    has no alignable characters, its audio is too short for its transcript, it cannot be read as a
    record, its confidence is below ``min_confidence`` or one of its words scores below ``min_word_score``
    (the usual sign of a transcript error). Unreadable audio files raise InputError.
    ``into_blanks`` picks the word extent rule (:func:`~speechbraid.align.viterbi.word_spans`).
    """
    for name, value in (("min_confidence", min_confidence), ("min_word_score", min_word_score)):
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"{name} is a probability in [0, 1], got {value}")
    if Path(out).resolve() == Path(manifest).resolve():
        raise ConfigError(f"--out must differ from the input manifest {manifest}")
    model = load_aligner(model_dir, device)
    report = AlignReport(output=str(out))
    rejected_records: list[tuple[Rejected, dict]] = []
    parse_errors: list[ManifestError] = []

    def aligned() -> Iterator[Utterance]:
        for item in tqdm(iter_manifest(manifest, errors=parse_errors), desc="align", unit="utt",
                         disable=not progress, dynamic_ncols=True):
            result = _align_item(model, item, (min_confidence, min_word_score), into_blanks)
            if isinstance(result, Rejected):
                report.rejected.append(result)
                rejected_records.append((result, replace(item.record, audio=_absolute(item.record.audio)).to_dict()))
                continue
            report.aligned += 1
            report.replaced += item.record.words is not None
            report.confidences.append(result.extra["align_confidence"])
            yield result

    write_manifest(aligned(), out)
    for error in parse_errors:  # unparseable lines: reported like the other rejects
        report.rejected.append(Rejected(f"{error.path}:{error.line}", None, error.message))
    report.rejected.sort(key=_line_order)
    if rejects is not None:
        _write_rejects(Path(rejects), rejected_records)
    return report


def _align_item(model: CTCAligner, item: ManifestLine, minimum: tuple[float, float], into_blanks: bool
                ) -> Utterance | Rejected:
    """The aligned record, or why it is rejected; ``minimum`` is (utterance confidence, word score)."""
    record = item.record
    try:
        words, conf = align_record(model, record, into_blanks)
    except ValueError as exc:  # AlignmentFailure, a text-only record, audio shorter than one analysis window
        return Rejected(item.where(), record.id, str(exc))
    except InputError as exc:
        raise InputError(f"record '{record.id}': {exc}", item.path, item.line) from None
    if conf < minimum[0]:
        return Rejected(item.where(), record.id, f"confidence {conf:.3f} below the minimum {minimum[0]}", conf)
    word, score = min(((w.word, w.score) for w in words if w.score is not None), key=lambda ws: ws[1])
    if score < minimum[1]:
        return Rejected(item.where(), record.id, f"word {word!r} scores {score:.4f}, below the minimum word score "
                        f"{minimum[1]}", conf)
    extra = {**record.extra, "align_confidence": round(conf, 4)}
    # absolute audio path: write_manifest re-relativises it to the output's directory where it can
    return replace(record, words=words, extra=extra, audio=_absolute(record.audio))


def _absolute(audio: str | None) -> str | None:
    return None if audio is None else str(Path(audio).resolve())


def _line_order(rejected: Rejected) -> tuple[str, int]:
    path, _, line = rejected.where.rpartition(":")
    return path, int(line)


def _write_rejects(path: Path, rejected: list[tuple[Rejected, dict]]) -> None:
    """JSONL of the rejected records as they were read, plus ``align_error`` (file:line and reason)."""
    write_jsonl(path, ({**obj, "align_error": why.format()} for why, obj in rejected))

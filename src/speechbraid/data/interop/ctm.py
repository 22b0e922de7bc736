"""CTM word alignments: ``<utt_id> <channel> <start> <duration> <word> [<confidence>]`` per line.

The first field is taken as the utterance id and times as seconds from the start of that utterance's
audio (what Kaldi's ``lattice-align-words`` + ``nbest-to-ctm`` and most CTC aligners write per
utterance). Lines starting with ``;;`` are NIST comments and are skipped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

from speechbraid.data.interop._files import skip_or_raise
from speechbraid.data.records import Utterance, WordAlignment
from speechbraid.errors import InputError
from speechbraid.files import atomic_open, iter_text_lines


def read_ctm(path: str | Path) -> dict[str, list[WordAlignment]]:
    """Read a CTM file into ``{utt_id: [WordAlignment, ...]}``, words sorted by start time.

    A malformed line raises :class:`InputError` naming the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("CTM file not found", path)
    out: dict[str, list[WordAlignment]] = {}
    for line_no, raw in iter_text_lines(path):
        line = raw.strip()
        if not line or line.startswith(";;"):
            continue
        utt_id, word = _parse_line(line.split(), path, line_no)
        out.setdefault(utt_id, []).append(word)
    for words in out.values():
        words.sort(key=lambda w: (w.start, w.end))
    return out


def _parse_line(fields: list[str], path: Path, line_no: int) -> tuple[str, WordAlignment]:
    if len(fields) not in (5, 6):
        raise InputError(
            f"expected 5 or 6 fields '<utt_id> <channel> <start> <duration> <word> [<conf>]', got {len(fields)}",
            path,
            line_no,
        )
    start = _number(fields[2], "start", path, line_no)
    duration = _number(fields[3], "duration", path, line_no)
    score = _number(fields[5], "confidence", path, line_no) if len(fields) == 6 else None
    if start < 0 or duration < 0:
        raise InputError(f"start and duration must be >= 0, got {fields[2]} and {fields[3]}", path, line_no)
    return fields[0], WordAlignment(word=fields[4], start=start, end=start + duration, score=score)


def _number(text: str, name: str, path: Path, line_no: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{name} must be a number, got {text!r}", path, line_no) from None
    if not math.isfinite(value):
        raise InputError(f"{name} must be finite, got {text!r}", path, line_no)
    return value


def write_ctm(
    records: Iterable[Utterance], path: str | Path, channel: str = "1", skipped: list[str] | None = None
) -> int:
    """Write the word alignments of ``records`` as CTM (atomically); return the number of words written.

    Records without an alignment cannot be represented: they raise :class:`InputError`, or, when
    ``skipped`` is a list, their ids are appended to it.
    """
    count = 0
    with atomic_open(path) as handle:
        for record in records:
            if record.words is None:
                skip_or_raise(record.id, "has no word alignment to write to CTM", skipped)
                continue
            if any(c.isspace() for c in record.id):
                raise InputError(f"record id {record.id!r} contains whitespace; CTM fields are space-separated")
            for w in record.words:
                if not w.word or any(c.isspace() for c in w.word):
                    raise InputError(f"record '{record.id}': word {w.word!r} is empty or contains whitespace")
                conf = "" if w.score is None else f" {w.score:.4f}"
                handle.write(f"{record.id} {channel} {w.start:.3f} {w.duration:.3f} {w.word}{conf}\n")
                count += 1
    return count

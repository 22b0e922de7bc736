"""Praat TextGrids as written by the Montreal Forced Aligner: a "words" and a "phones" interval tier.

Empty intervals and silence labels are gaps, not words. A directory of TextGrids maps onto a manifest
by file stem == utterance id (MFA names its output after the input audio/transcript).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from praatio import textgrid
from praatio.utilities import errors as praat_errors
from praatio.utilities.constants import Interval

from speechbraid.data.interop._files import skip_or_raise
from speechbraid.data.records import Utterance, WordAlignment
from speechbraid.errors import InputError
from speechbraid.files import atomic_path

# Labels aligners put on non-speech intervals; compared case-insensitively after stripping.
SILENCE_LABELS: frozenset[str] = frozenset({"", "sil", "sp", "<eps>"})
WORD_TIER = "words"


def read_textgrid(
    path: str | Path, tier: str = WORD_TIER, silence_labels: Iterable[str] = SILENCE_LABELS
) -> list[WordAlignment]:
    """Read the word tier of one TextGrid into word alignments, skipping silence intervals.

    ``tier`` names the word tier; for MFA multi-speaker output ("<speaker> - words") a single tier
    ending in " - <tier>" is accepted too.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("TextGrid not found", path)
    try:
        grid = textgrid.openTextgrid(str(path), includeEmptyIntervals=False, reportingMode="error")
    except (praat_errors.PraatioException, ValueError, IndexError, UnicodeDecodeError) as exc:
        raise InputError(f"unreadable TextGrid: {exc}", path) from None
    word_tier = grid.getTier(_find_tier(grid.tierNames, tier, path))
    if not isinstance(word_tier, textgrid.IntervalTier):
        raise InputError(f"tier '{word_tier.name}' is a point tier; word alignments need an interval tier", path)
    silence = {label.strip().lower() for label in silence_labels}
    return [
        WordAlignment(word=label.strip(), start=float(start), end=float(end))
        for start, end, label in word_tier.entries
        if label.strip().lower() not in silence
    ]


def _find_tier(names: Iterable[str], tier: str, path: Path) -> str:
    names = list(names)
    if tier in names:
        return tier
    speaker_tiers = [n for n in names if n.endswith(f" - {tier}")]
    if len(speaker_tiers) == 1:
        return speaker_tiers[0]
    raise InputError(f"no single tier named '{tier}' (tiers: {', '.join(names) or 'none'})", path)


def write_textgrid(record: Utterance, path: str | Path, tier: str = WORD_TIER) -> None:
    """Write one utterance's word alignment as a TextGrid with one interval tier.

    The grid spans the utterance duration (or the last word end when the duration is unknown); Praat
    fills the gaps between words with empty intervals, as MFA output has.
    """
    if record.words is None:
        raise InputError(f"record '{record.id}' has no word alignment to write")
    entries = [Interval(w.start, w.end, w.word) for w in record.words]
    end = max([w.end for w in record.words] + [record.duration or 0.0])
    if end <= 0:
        raise InputError(f"record '{record.id}' has neither words nor a duration; a TextGrid needs a time span")
    grid = textgrid.Textgrid(minTimestamp=0.0, maxTimestamp=end)
    try:
        grid.addTier(textgrid.IntervalTier(tier, entries, 0.0, end), reportingMode="error")
    except praat_errors.PraatioException as exc:
        raise InputError(f"record '{record.id}': cannot build a TextGrid: {exc}") from None
    with atomic_path(path, suffix=".TextGrid") as tmp:
        grid.save(str(tmp), format="long_textgrid", includeBlankSpaces=True, reportingMode="error")


def write_textgrids(
    records: Iterable[Utterance], directory: str | Path, skipped: list[str] | None = None
) -> int:
    """Write ``<directory>/<id>.TextGrid`` per record; return how many were written.

    Records without an alignment raise, or are appended to ``skipped`` when it is a list.
    """
    directory = Path(directory)
    count = 0
    for record in records:
        if record.words is None:
            skip_or_raise(record.id, "has no word alignment to write as a TextGrid", skipped)
            continue
        if "/" in record.id or record.id in ("", ".", ".."):
            raise InputError(f"record id {record.id!r} cannot be used as a file name")
        write_textgrid(record, directory / f"{record.id}.TextGrid")
        count += 1
    return count


class TextGridDirectory(Mapping[str, list[WordAlignment]]):
    """``{stem: word alignment}`` over the ``*.TextGrid`` files of a directory, read on access.

    Lazy so attaching a large MFA output directory to a manifest holds one grid in memory at a time.
    Files are searched recursively (MFA mirrors the corpus' speaker sub-directories).
    """

    def __init__(self, directory: str | Path, tier: str = WORD_TIER, silence_labels: Iterable[str] = SILENCE_LABELS):
        directory = Path(directory)
        if not directory.is_dir():
            raise InputError("TextGrid directory not found", directory)
        self.tier = tier
        self.silence_labels = frozenset(silence_labels)
        self._paths: dict[str, Path] = {}
        for path in sorted(directory.rglob("*")):
            if path.suffix.lower() != ".textgrid" or not path.is_file():
                continue
            if path.stem in self._paths:
                raise InputError(f"two TextGrids for id '{path.stem}': {self._paths[path.stem]} and {path}", directory)
            self._paths[path.stem] = path

    def __getitem__(self, utt_id: str) -> list[WordAlignment]:
        return read_textgrid(self._paths[utt_id], self.tier, self.silence_labels)

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)

    def __contains__(self, utt_id: object) -> bool:
        return utt_id in self._paths

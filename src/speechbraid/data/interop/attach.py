"""Attach word alignments from an external aligner (CTM, TextGrid) to a manifest, matching by utterance id.

Ids are never dropped silently: records without an alignment pass through unchanged and are listed in
the report, and alignment ids that match no record are listed there too.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

from speechbraid.data.records import Utterance, WordAlignment


@dataclass
class AttachReport:
    """What an attach pass did. ``unmatched`` is filled once the record stream has been consumed."""

    attached: int = 0
    without_alignment: list[str] = field(default_factory=list)  # manifest ids the source has no alignment for
    unmatched: list[str] = field(default_factory=list)  # alignment ids absent from the manifest

    def summary(self, show: int = 5) -> str:
        lines = [f"attached alignments to {self.attached} record(s)"]
        for label, ids in (
            ("record(s) in the manifest had no alignment (kept unchanged)", self.without_alignment),
            ("alignment(s) matched no manifest id (not used)", self.unmatched),
        ):
            if ids:
                more = f", ... (+{len(ids) - show} more)" if len(ids) > show else ""
                lines.append(f"{len(ids)} {label}: {', '.join(ids[:show])}{more}")
        return "\n".join(lines)


def attach_alignments(
    records: Iterable[Utterance],
    alignments: Mapping[str, Sequence[WordAlignment]],
    report: AttachReport,
) -> Iterator[Utterance]:
    """Yield ``records`` with ``words`` replaced by ``alignments[record.id]`` where there is one.

    Lazy over ``records``; ``alignments`` may itself be lazy
    (:class:`~speechbraid.data.interop.textgrid.TextGridDirectory` reads one file per access).
    """
    used: set[str] = set()
    for record in records:
        words = alignments.get(record.id)
        if words is None:
            report.without_alignment.append(record.id)
            yield record
            continue
        used.add(record.id)
        report.attached += 1
        yield replace(record, words=list(words))
    report.unmatched.extend(sorted(key for key in alignments if key not in used))

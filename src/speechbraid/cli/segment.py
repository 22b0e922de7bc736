"""``speechbraid segment``: segment aligned manifests and print the segment-length distribution."""

from __future__ import annotations

import argparse
import json
from contextlib import ExitStack
from typing import Any

from tqdm import tqdm

from speechbraid.data.manifest import iter_manifest
from speechbraid.data.segment import DEFAULT_GAP, SEGMENT_MODES, SegmentStats, segment_words
from speechbraid.errors import ConfigError, ManifestError
from speechbraid.files import atomic_open


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "segment",
        description=(
            "Merge each record's aligned words into segments (as JSTIP segment-level interleaving does) "
            "at silences, or at silences and punctuation, and print the distribution of segment lengths "
            "in words and seconds (mean, std, coefficient of variation, p10/p50/p90, histogram) for each "
            "mode. Records without an alignment, with an unusable one, or unparseable are counted and "
            "the first of each is named."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("manifest", metavar="MANIFEST", help="JSONL manifest with word alignments")
    parser.add_argument("--by", choices=(*SEGMENT_MODES, "both"), default="both",
                        help="where segments break; 'both' compares the two modes")
    parser.add_argument("--gap", type=float, default=DEFAULT_GAP,
                        help="silence in seconds that ends a segment (default: %(default)s)")
    parser.add_argument("--max-duration", type=float, default=10.0,
                        help="longest segment in seconds (longer ones split at the largest gap); 0 = no limit")
    parser.add_argument("--max-words", type=int, default=0, help="most words per segment; 0 = no limit")
    parser.add_argument("--output", metavar="SEGMENTS.jsonl",
                        help="write one line per utterance with its segments (needs a single --by mode)")
    parser.add_argument("--json", action="store_true", help="print the statistics as JSON")
    parser.set_defaults(func=run)


class _Skipped:
    """How many records of one kind were not segmented, and where the first one is."""

    def __init__(self) -> None:
        self.count = 0
        self.first: str | None = None

    def add(self, where: str) -> None:
        self.count += 1
        if self.first is None:
            self.first = where

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "first": self.first}


def run(args: argparse.Namespace) -> int:
    modes = SEGMENT_MODES if args.by == "both" else (args.by,)
    if args.output and len(modes) > 1:
        raise ConfigError("--output writes one segmentation: choose --by silence or --by silence+punct")
    options = {
        "gap": args.gap,
        "max_duration": args.max_duration or None,
        "max_words": args.max_words or None,
    }
    stats = {mode: SegmentStats() for mode in modes}
    skipped = {"no_alignment": _Skipped(), "bad_alignment": _Skipped(), "unparseable": _Skipped()}
    parse_errors: list[ManifestError] = []
    with ExitStack() as stack:
        out = stack.enter_context(atomic_open(args.output)) if args.output else None
        for item in tqdm(iter_manifest(args.manifest, errors=parse_errors), desc="segment", unit="utt", disable=None):
            record = item.record
            if not record.has_alignment:
                skipped["no_alignment"].add(item.where())
                continue
            try:
                per_mode = {mode: segment_words(record.words or [], by=mode, **options) for mode in modes}
            except ValueError as exc:
                skipped["bad_alignment"].add(f"{item.where()}: {exc}")
                continue
            for mode, segments in per_mode.items():
                stats[mode].add(segments)
                if out is not None:
                    line = {"id": record.id, "audio": record.audio, "by": mode,
                            "segments": [s.to_dict() for s in segments]}
                    out.write(json.dumps(line, ensure_ascii=False) + "\n")
        for err in parse_errors:
            skipped["unparseable"].add(str(err))
    result = {
        "manifest": args.manifest,
        "options": options,
        "modes": {mode: s.result() for mode, s in stats.items()},
        "not_segmented": {kind: s.to_dict() for kind, s in skipped.items()},
        "output": args.output,
    }
    print(json.dumps(result, indent=2, ensure_ascii=False) if args.json else _format(result))
    return 0


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _format(result: dict[str, Any]) -> str:
    lines = []
    for mode, st in result["modes"].items():
        lines.append(f"by {mode}: {st['count']} segments from {st['utterances']} utterances "
                     f"({_fmt(st['segments_per_utterance'])} per utterance)")
        for unit in ("words", "seconds"):
            s = st[unit]
            lines.append(
                f"  {unit:<7} mean {_fmt(s['mean'])}  std {_fmt(s['std'])}  cv {_fmt(s['cv'])}  "
                f"p10 {_fmt(s['p10'])}  p50 {_fmt(s['p50'])}  p90 {_fmt(s['p90'])}  "
                f"min {_fmt(s['min'])}  max {_fmt(s['max'])}"
            )
            edges, counts = s["histogram"]["edges"], s["histogram"]["counts"]
            bins = [f"[{edges[i]:g},{edges[i + 1]:g}):{c}" for i, c in enumerate(counts)]
            lines.append(f"  {'':<7} histogram " + " ".join(bins))
    for kind, s in result["not_segmented"].items():
        if s["count"]:
            lines.append(f"not segmented ({kind.replace('_', ' ')}): {s['count']} records; first: {s['first']}")
    if result["output"]:
        lines.append(f"segments written to {result['output']}")
    return "\n".join(lines)

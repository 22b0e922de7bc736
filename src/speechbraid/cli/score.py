"""``speechbraid score``: WER, TER and entity error rate of hypotheses against a reference manifest."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from speechbraid.data.manifest import iter_manifest
from speechbraid.data.records import Utterance
from speechbraid.errors import InputError
from speechbraid.metrics.asr import evaluate, format_report, read_hypotheses

_SHOW = 5  # how many missing/extra ids a message lists (the count always covers all)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "score",
        description=(
            "Match hypotheses to the utterances of a reference manifest by id and print WER (normalised "
            "text), TER (raw text: case and punctuation count) and the entity error rate (1 - recall of "
            "the annotated entities, exact surface match in the raw hypothesis), overall, per domain and "
            "per entity type. HYP is JSONL ({\"id\": ..., \"text\": ...} per line, as written by "
            "'speechbraid transcribe --json') or 'id<TAB>text' lines. Ids present on one side only are "
            "an error unless --allow-missing is given."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--ref", required=True, metavar="MANIFEST", help="reference JSONL manifest")
    parser.add_argument("--hyp", required=True, metavar="HYP", help="hypotheses: JSONL or id<TAB>text")
    parser.add_argument(
        "--allow-missing", action="store_true",
        help="score a reference without a hypothesis as an empty hypothesis (all deletions) and leave out "
        "hypotheses without a reference; both are still reported",
    )
    parser.add_argument("--max-missed", type=int, default=20, metavar="N",
                        help="list at most N missed entities in the text report; -1 lists all")
    parser.add_argument("--json", action="store_true", help="print the full result (every missed entity) as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    hyps = read_hypotheses(args.hyp)
    records: list[Utterance] = []
    texts: list[str] = []
    seen: dict[str, str] = {}
    missing: list[str] = []  # "file:line [id]" of references without a hypothesis
    for item in iter_manifest(args.ref):
        record = item.record
        if record.id in seen:
            raise InputError(f"duplicate utterance id {record.id!r} (first at {seen[record.id]})", item.path, item.line)
        seen[record.id] = item.where()
        # Keep only what scoring reads, so a manifest with long alignments does not sit in memory.
        records.append(Utterance(id=record.id, text=record.text, entities=record.entities, domain=record.domain,
                                 source=record.source))  # the source gives the voice family
        hyp = hyps.get(record.id)
        if hyp is None:
            missing.append(f"{item.where()} [{record.id}]")
        texts.append("" if hyp is None else hyp.text)
    if not records:
        raise InputError("no utterances to score", args.ref)
    extra = [f"{h.where()} [{h.id}]" for h in hyps.values() if h.id not in seen]

    problems: list[tuple[str, str]] = []  # (what is wrong, what --allow-missing does about it)
    if missing:
        what = _describe(len(missing), f"reference utterance(s) have no hypothesis in {args.hyp}", missing)
        problems.append((what, "scored as empty hypotheses"))
    if extra:
        what = _describe(len(extra), f"hypothesis id(s) are not in the reference {args.ref}", extra)
        problems.append((what, "left out"))
    if problems and not args.allow_missing:
        raise InputError(
            "; ".join(what for what, _ in problems) + "; pass --allow-missing to score missing hypotheses as empty"
        )
    for what, consequence in problems:
        print(f"speechbraid score: warning: {what}: {consequence}", file=sys.stderr)

    result = evaluate(records, texts)
    result["missing_hypotheses"] = {"count": len(missing), "first": missing[:_SHOW]}
    result["extra_hypotheses"] = {"count": len(extra), "first": extra[:_SHOW]}
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        print(f"reference: {args.ref}\nhypotheses: {args.hyp}")
        if missing or extra:
            print(f"missing hypotheses (scored as empty): {len(missing)}; extra hypotheses (left out): {len(extra)}")
        print(format_report(result, max_missed=args.max_missed))
    return 0


def _describe(count: int, what: str, where: list[str]) -> str:
    more = f", ... ({count - _SHOW} more)" if count > _SHOW else ""
    return f"{count} {what} (first: {', '.join(where[:_SHOW])}{more})"

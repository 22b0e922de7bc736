"""``speechbraid synth``: synthesise text (a text file with entity markup, or a JSONL manifest) into
word-aligned speech-text pairs."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

from speechbraid.data.manifest import ManifestLine, iter_manifest
from speechbraid.data.markup import parse_markup
from speechbraid.data.records import Utterance
from speechbraid.errors import ConfigError, InputError
from speechbraid.files import iter_text_lines

MANIFEST_SUFFIXES = (".jsonl", ".json")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "synth",
        description=(
            "Synthesise INPUT into OUT/wavs/*.wav and OUT/manifest.jsonl with word times. INPUT is a text "
            "file (one utterance per line, entity markup like [aspirin](drug); ids <stem>-<line:06d>; blank "
            "lines skipped) or a JSONL manifest of text records. Re-running the same command resumes."
        ),
    )
    parser.add_argument("input", nargs="?", help="text file or JSONL manifest (.jsonl/.json)")
    parser.add_argument("--out", help="output directory")
    parser.add_argument("--engine", default="espeak", choices=("espeak", "piper"))
    parser.add_argument("--voices", nargs="+", help="voices to draw from (default: the engine's varied set)")
    parser.add_argument("--rate", nargs=2, type=int, metavar=("MIN", "MAX"), help="words per minute range")
    parser.add_argument("--pitch", nargs=2, type=int, metavar=("MIN", "MAX"), help="espeak pitch range (0-100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=None, help="worker processes (default: all cores)")
    parser.add_argument("--noise-snr", type=float, default=None, metavar="DB", help="add white/pink noise at DB")
    parser.add_argument("--speed", nargs="+", type=float, help="speed perturbation factors, one drawn per utterance")
    parser.add_argument("--list-voices", action="store_true", help="print the engine's voices and exit")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def read_text_file(path: str | Path, blank_lines: list[int]) -> Iterator[ManifestLine]:
    """One record per non-blank line; blank line numbers go to ``blank_lines`` for the summary."""
    path = Path(path)
    for line_no, line in iter_text_lines(path):
        if not line.strip():
            blank_lines.append(line_no)
            continue
        try:
            text, entities = parse_markup(line.strip())
        except ValueError as exc:
            raise InputError(str(exc), path, line_no) from None
        record = Utterance(id=f"{path.stem}-{line_no:06d}", text=text, entities=entities)
        yield ManifestLine(str(path), line_no, record)


def run(args: argparse.Namespace) -> int:
    from speechbraid.synth import get_engine, run_synthesis

    if args.list_voices:
        engine = get_engine(args.engine)
        print(f"# {args.engine} voices (sampled by default: {len(engine.sampling_voices())})")
        for name in engine.voices():
            print(name)
        return 0
    if not args.input or not args.out:
        raise ConfigError("synth needs INPUT and --out DIR (or --list-voices)")
    path = Path(args.input)
    if not path.is_file():
        raise InputError("input not found", path)
    blank: list[int] = []
    records = iter_manifest(path) if path.suffix in MANIFEST_SUFFIXES else read_text_file(path, blank)
    report = run_synthesis(
        records,
        args.out,
        args.engine,
        seed=args.seed,
        jobs=args.jobs,
        voices=args.voices,
        rate_range=tuple(args.rate) if args.rate else None,
        pitch_range=tuple(args.pitch) if args.pitch else None,
        noise_snr_db=args.noise_snr,
        speed_perturb=args.speed,
        progress=not args.quiet,
    )
    print(f"utterances: {len(report.records)} ({report.synthesized} synthesised, {report.skipped} already done)")
    if blank:
        shown = ", ".join(map(str, blank[:10])) + (" ..." if len(blank) > 10 else "")
        print(f"blank lines skipped: {len(blank)} (lines {shown})")
    print(f"audio: {report.audio_seconds:.1f} s in total, {report.new_audio_seconds:.1f} s new")
    if report.synthesized:
        print(f"speed: {report.audio_per_cpu_second:.1f} s of audio per CPU-second, wall {report.wall_seconds:.1f} s")
    print(f"manifest: {report.manifest}")
    return 0

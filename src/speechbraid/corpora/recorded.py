"""Real recorded English speech with transcripts, read from the files of installed Debian packages.

Nothing is downloaded and nothing is installed here: each source is a Debian package that ships
recordings *and* their transcripts (or, for ``alsa-utils``, recordings whose file names are what is
said), under a free license. :func:`build_recorded_corpus` copies them as 16 kHz mono WAVs into one
manifest, with ``source`` ``recorded:<package>`` and the license on every record, so synthetic and
recorded speech can be scored side by side (:func:`speechbraid.evaluation.evaluate` reports WER per
voice family).

Sources (checked in the Debian 12 packages):

``pocketsphinx-testdata`` (``/usr/share/pocketsphinx/test/data``, package license BSD-2-Clause)
    5 sentences of Jane Austen's *Sense and Sensibility* read for LibriVox (LibriVox recordings are in
    the public domain) with ``librivox/transcription``; 5 playing-card commands (``cards/``, with
    ``cards.transcription``); and ``goforward.raw`` (headerless 16 kHz PCM), whose transcript is the
    first public rule of ``goforward.gram`` (the phrase the pocketsphinx tests expect).
``alsa-utils`` (``/usr/share/sounds/alsa``, GPL-2)
    8 speaker-test prompts ("Front Center", ...), the words taken from the file names; ``Noise.wav``
    is left out.

Transcripts are kept as the packages write them (pocketsphinx's are lower case without punctuation,
numbers and titles spelled out: "mister john dashwood"), so TER is not meaningful here; WER is.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speechbraid.data.audio import DEFAULT_SAMPLE_RATE, load_audio, write_wav
from speechbraid.data.manifest import write_manifest
from speechbraid.data.records import Utterance
from speechbraid.errors import ConfigError, InputError

RECORDED_SOURCE_PREFIX = "recorded:"
WAV_DIR = "wavs"
MANIFEST = "manifest.jsonl"


@dataclass(frozen=True)
class RecordedItem:
    """One recording in an installed package and what is said in it."""

    name: str  # unique within its package; the record id is "<package>-<name>"
    path: Path
    text: str
    license: str
    raw_rate: int | None = None  # headerless 16-bit little-endian mono PCM at this rate (.raw files)


@dataclass(frozen=True)
class RecordedSource:
    """A Debian package that ships recordings with transcripts, and how to read them."""

    package: str
    root: Path  # where the package installs them
    read: Callable[[Path], list[RecordedItem]]


# "<s> ten of clubs </s> (001)": sphinx transcription lines (the <s> </s> markers are optional)
_TRANSCRIPTION = re.compile(r"^\s*(?:<s>)?\s*(?P<text>.*?)\s*(?:</s>)?\s*\((?P<id>[^()\s]+)\)\s*$")
_JSGF_PUBLIC = re.compile(r"^\s*public\s+<[^>]+>\s*=\s*(?P<body>[^;]*);", re.MULTILINE)
_LIBRIVOX_LICENSE = ("public domain (LibriVox recording of Jane Austen, Sense and Sensibility); "
                     "shipped by pocketsphinx-testdata under BSD-2-Clause")
_CMU_LICENSE = "BSD-2-Clause (CMU Sphinx test data, pocketsphinx-testdata)"


def read_transcription(path: Path) -> dict[str, str]:
    """``{id: text}`` from a sphinx ``.transcription`` file; a line of another shape is an input error."""
    out: dict[str, str] = {}
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        match = _TRANSCRIPTION.match(line)
        if match is None or not match["text"]:
            raise InputError("not a sphinx transcription line ('<s> words </s> (id)')", path, line_no)
        out[match["id"]] = " ".join(match["text"].split())
    return out


def _listed(root: Path, folder: str, fileids: str, transcription: str, license: str) -> list[RecordedItem]:
    ids = [line.strip() for line in (root / folder / fileids).read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = read_transcription(root / folder / transcription)
    missing = [i for i in ids if i not in texts]
    if missing:
        raise InputError(f"no transcript for {missing[0]!r}", root / folder / transcription)
    # "sense_and_sensibility_01_austen_64kb-0870" -> "librivox-0870": ids stay short and unique per folder
    return [RecordedItem(f"{folder}-{i.rsplit('-', 1)[-1]}", root / folder / f"{i}.wav", texts[i], license)
            for i in ids]


def _pocketsphinx(root: Path) -> list[RecordedItem]:
    items = _listed(root, "librivox", "fileids", "transcription", _LIBRIVOX_LICENSE)
    items += _listed(root, "cards", "cards.fileids", "cards.transcription", _CMU_LICENSE)
    grammar = root / "goforward.gram"
    match = _JSGF_PUBLIC.search(grammar.read_text(encoding="utf-8"))
    if match is None or not re.fullmatch(r"[a-z' ]+", match["body"].strip()):
        raise InputError("expected a first public rule of plain words (the spoken phrase)", grammar)
    items.append(RecordedItem("goforward", root / "goforward.raw", " ".join(match["body"].split()), _CMU_LICENSE,
                              raw_rate=16000))
    return items


def _alsa(root: Path) -> list[RecordedItem]:
    # "Front_Center.wav" says "Front Center"; Noise.wav is noise
    return [RecordedItem(path.stem.lower().replace("_", "-"), path, path.stem.replace("_", " "),
                         "GPL-2 (alsa-utils speaker-test sounds)")
            for path in sorted(root.glob("*.wav")) if path.stem != "Noise"]


RECORDED_SOURCES: dict[str, RecordedSource] = {
    "pocketsphinx-testdata": RecordedSource("pocketsphinx-testdata", Path("/usr/share/pocketsphinx/test/data"),
                                            _pocketsphinx),
    "alsa-utils": RecordedSource("alsa-utils", Path("/usr/share/sounds/alsa"), _alsa),
}


def recorded_items(sources: Sequence[str] | None = None,
                   roots: Mapping[str, str | Path] | None = None) -> list[tuple[str, RecordedItem]]:
    """``(package, item)`` for every recording of ``sources`` (default: all); ``roots`` overrides where a
    package's files are (tests). A package that is not installed is an :class:`InputError` naming it."""
    names = list(RECORDED_SOURCES) if sources is None else list(sources)
    unknown = [n for n in names if n not in RECORDED_SOURCES]
    if unknown or not names:
        raise ConfigError(f"unknown recorded source {unknown[0] if unknown else '(none given)'!r}; "
                          f"choose from {', '.join(RECORDED_SOURCES)}")
    out: list[tuple[str, RecordedItem]] = []
    for name in names:
        source = RECORDED_SOURCES[name]
        root = Path((roots or {}).get(name, source.root))
        if not root.is_dir():
            raise InputError(f"recorded speech needs the Debian package {name}: apt-get install {name} "
                             "(scripts/setup.sh installs it)", root)
        try:
            items = source.read(root)
        except FileNotFoundError as exc:
            raise InputError(f"incomplete {name} installation: {exc.strerror}; reinstall {name}", exc.filename) \
                from None
        names_seen = [item.name for item in items]
        if len(set(names_seen)) != len(names_seen):
            raise InputError(f"{name}: two recordings would get the same id", root)
        out += [(name, item) for item in items]
    return out


def build_recorded_corpus(out_dir: str | Path, sources: Sequence[str] | None = None,
                          roots: Mapping[str, str | Path] | None = None) -> list[Utterance]:
    """Copy the recordings of ``sources`` as 16 kHz mono WAVs under ``out_dir/wavs`` and write
    ``out_dir/manifest.jsonl`` (id, audio, text, duration, ``source`` ``recorded:<package>``, ``license``,
    the ``original`` file and the package version); returns the records."""
    out = Path(out_dir)
    records: list[Utterance] = []
    versions: dict[str, str | None] = {}
    for package, item in recorded_items(sources, roots):
        if package not in versions:
            versions[package] = package_version(package)
        samples = _read(item)
        wav = out / WAV_DIR / f"{package}-{item.name}.wav"
        write_wav(wav, samples, DEFAULT_SAMPLE_RATE)
        extra = {"license": item.license, "original": str(item.path)}
        if versions[package]:
            extra["package_version"] = versions[package]
        records.append(Utterance(
            id=f"{package}-{item.name}", text=item.text, audio=str(wav), sample_rate=DEFAULT_SAMPLE_RATE,
            duration=round(len(samples) / DEFAULT_SAMPLE_RATE, 4), domain="general",
            source=f"{RECORDED_SOURCE_PREFIX}{package}", extra=extra,
        ))
    write_manifest(records, out / MANIFEST)
    return records


def _read(item: RecordedItem) -> np.ndarray:
    if item.raw_rate is None:
        return load_audio(item.path, DEFAULT_SAMPLE_RATE)[0]
    if item.raw_rate != DEFAULT_SAMPLE_RATE:
        raise ValueError(f"raw audio at {item.raw_rate} Hz is not supported")  # no such source is declared
    try:
        pcm = np.fromfile(item.path, dtype="<i2")
    except OSError as exc:
        raise InputError(f"unreadable audio: {exc.strerror}", item.path) from None
    return pcm.astype(np.float32) / 32768.0


def package_version(package: str) -> str | None:
    """The installed Debian version of ``package`` (None without dpkg or when it is not installed)."""
    try:
        done = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True,
                              timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def summarize_recorded(records: Iterable[Utterance]) -> str:
    """One line per package: utterances, total duration and licenses."""
    rows: dict[str, list[Utterance]] = {}
    for record in records:
        rows.setdefault(record.source or "", []).append(record)
    lines = []
    for source, group in rows.items():
        seconds = sum(r.duration or 0.0 for r in group)
        licenses = sorted({str(r.extra.get("license")) for r in group})
        lines.append(f"{source}: {len(group)} utterances, {seconds:.1f} s; licenses: {' | '.join(licenses)}")
    return "\n".join(lines)

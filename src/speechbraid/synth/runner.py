"""Synthesise a text corpus into a word-aligned speech-text manifest: parallel, seeded, resumable.

Layout of ``out_dir``::

    wavs/<id>.wav           16 kHz PCM-16, written atomically
    state/<id>.json         the finished record plus the key of its synthesis settings (atomic)
    manifest.jsonl          all records in input order, written atomically at the end

An utterance is done when its state file exists, its WAV exists and the state's key matches the
settings drawn for it now; a re-run skips those, so a killed run loses no finished work and never
leaves a half-written file in place. Per-utterance settings (voice, rate, pitch, speed, noise) are
drawn from a generator seeded by (seed, utterance id): they do not depend on job order or count.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from speechbraid.data.audio import write_wav
from speechbraid.data.manifest import ManifestLine, write_manifest
from speechbraid.data.records import SYNTH_SOURCE_PREFIX, Utterance
from speechbraid.errors import ConfigError, InputError
from speechbraid.files import atomic_write_text
from speechbraid.synth.augment import NOISE_KINDS, add_noise, speed_perturb
from speechbraid.synth.base import SynthesisError, VoiceSpec, check_words_cover_speech, get_engine

WAV_DIR = "wavs"
STATE_DIR = "state"
MANIFEST = "manifest.jsonl"


@dataclass
class SynthReport:
    """What a corpus run did; ``cpu_seconds`` and ``new_audio_seconds`` cover this run's work only."""

    records: list[Utterance]
    synthesized: int
    skipped: int
    audio_seconds: float
    new_audio_seconds: float
    cpu_seconds: float
    wall_seconds: float
    manifest: Path

    @property
    def audio_per_cpu_second(self) -> float:
        return self.new_audio_seconds / self.cpu_seconds if self.cpu_seconds > 0 else float("nan")


def synthesize_corpus(records: Iterable[Utterance | ManifestLine], out_dir: str | Path, engine: str = "espeak",
                      **settings: Any) -> list[Utterance]:
    """Synthesise text-only records into ``out_dir`` and return the speech-text records (input order).

    Records may come as :class:`ManifestLine` so errors can name the input file and line. ``settings`` are
    :func:`run_synthesis`'s keyword options (seed, jobs, voices, per-record engines, ranges, perturbation,
    progress), which also reports the statistics of the run.
    """
    return run_synthesis(records, out_dir, engine, **settings).records


def run_synthesis(
    records: Iterable[Utterance | ManifestLine],
    out_dir: str | Path,
    engine: str = "espeak",
    *,
    engine_for: Mapping[str, str] | None = None,
    seed: int = 0,
    jobs: int | None = None,
    voices: Sequence[str] | None = None,
    rate_range: tuple[int, int] | None = None,
    pitch_range: tuple[int, int] | None = None,
    noise_snr_db: float | None = None,
    speed_perturb: Sequence[float] | None = None,
    progress: bool = True,
) -> SynthReport:
    """:func:`synthesize_corpus` returning a :class:`SynthReport` (counts, audio and CPU seconds).

    ``engine`` speaks every record unless ``engine_for`` maps its id to another engine (the default corpus
    routes a share of its records to Piper this way). ``voices`` is the pool of ``engine``; records routed
    elsewhere draw from that engine's own sampling voices. Rate and pitch ranges must suit every engine in use.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    routed = dict(engine_for or {})
    pools = {engine: list(voices) if voices else get_engine(engine).sampling_voices()}
    for name in sorted(set(routed.values()) - {engine}):
        pools[name] = get_engine(name).sampling_voices()
    for name, pool in pools.items():
        _check_settings(get_engine(name), pool, rate_range, pitch_range, speed_perturb)
    items = _collect(records)
    unknown = sorted(set(routed) - {utt.id for _, utt in items})
    if unknown:
        raise ConfigError(f"engine_for names {len(unknown)} id(s) that are not among the records, e.g. {unknown[0]!r}")
    (out_dir / WAV_DIR).mkdir(parents=True, exist_ok=True)
    (out_dir / STATE_DIR).mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(out_dir)

    done: dict[str, dict[str, Any]] = {}
    tasks: list[dict[str, Any]] = []
    for where, utt in items:
        name = routed.get(utt.id, engine)
        task = _plan(utt, name, seed, pools[name], rate_range, pitch_range, noise_snr_db, speed_perturb)
        task.update(out_dir=str(out_dir), where=where)
        finished = _finished(out_dir, utt.id, task["key"])
        if finished is not None:
            done[utt.id] = finished
        else:
            tasks.append(task)

    cpu = 0.0
    new_audio = 0.0
    label = "+".join(sorted(pools)) if len(pools) > 1 else engine
    bar = tqdm(total=len(items), initial=len(done), disable=not progress, unit="utt", desc=f"synth:{label}")
    try:
        for outcome in _execute(tasks, jobs):
            if outcome["status"] == "error":
                path, line = outcome["where"] if outcome["where"] else (None, None)
                raise InputError(f"record '{outcome['id']}': cannot synthesise: {outcome['message']}", path, line)
            done[outcome["id"]] = outcome["record"]
            cpu += outcome["cpu"]
            new_audio += outcome["record"]["duration"]
            bar.update(1)
    finally:
        bar.close()

    result = [Utterance.from_dict(done[utt.id], base_dir=out_dir) for _, utt in items]
    manifest = out_dir / MANIFEST
    write_manifest(result, manifest)
    return SynthReport(
        records=result,
        synthesized=len(tasks),
        skipped=len(items) - len(tasks),
        audio_seconds=sum(r.duration or 0.0 for r in result),
        new_audio_seconds=new_audio,
        cpu_seconds=cpu,
        wall_seconds=time.perf_counter() - started,
        manifest=manifest,
    )


def _check_settings(
    synth: Any,
    voices: list[str],
    rate_range: tuple[int, int] | None,
    pitch_range: tuple[int, int] | None,
    speeds: Sequence[float] | None,
) -> None:
    for label, bounds in (("rate", rate_range), ("pitch", pitch_range)):
        if bounds is not None and bounds[0] > bounds[1]:
            raise ConfigError(f"{label} range {bounds[0]}..{bounds[1]} is empty")
    if not voices:
        raise ConfigError(f"engine '{synth.name}' has no voices installed to draw from")
    for end in (0, 1):
        synth.check_ranges(rate_range[end] if rate_range else None, pitch_range[end] if pitch_range else None)
    if speeds is not None and (not speeds or any(s <= 0 for s in speeds)):
        raise ConfigError(f"speed factors must be positive, got {list(speeds)}")
    for name in voices:
        try:
            synth.synthesize("test", VoiceSpec(synth.name, name))
        except SynthesisError as exc:
            raise ConfigError(f"voice '{name}' does not work with engine '{synth.name}': {exc}") from None


def _collect(records: Iterable[Utterance | ManifestLine]) -> list[tuple[tuple[str, int] | None, Utterance]]:
    """Records with their (file, line) where known; empty text, bad or duplicate ids are input errors."""
    items: list[tuple[tuple[str, int] | None, Utterance]] = []
    seen: set[str] = set()
    for item in records:
        where = (item.path, item.line) if isinstance(item, ManifestLine) else None
        utt = item.record if isinstance(item, ManifestLine) else item
        path, line = where if where else (None, None)
        if not utt.text.strip():
            raise InputError(f"record '{utt.id}': empty text, nothing to synthesise", path, line)
        if not utt.id or "/" in utt.id or "\\" in utt.id or utt.id.startswith("."):
            raise InputError(f"record id {utt.id!r} cannot name a file (no '/', '\\' or leading '.')", path, line)
        if utt.id in seen:
            raise InputError(f"duplicate record id '{utt.id}'", path, line)
        seen.add(utt.id)
        items.append((where, utt))
    return items


def _plan(
    utt: Utterance,
    engine: str,
    seed: int,
    voices: list[str],
    rate_range: tuple[int, int] | None,
    pitch_range: tuple[int, int] | None,
    noise_snr_db: float | None,
    speeds: Sequence[float] | None,
) -> dict[str, Any]:
    """Draw this utterance's settings from a generator keyed by (seed, id), always in the same order."""
    digest = hashlib.sha256(utt.id.encode("utf-8")).digest()
    rng = np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])
    voice = voices[int(rng.integers(len(voices)))]
    rate = int(rng.integers(rate_range[0], rate_range[1] + 1)) if rate_range else None
    pitch = int(rng.integers(pitch_range[0], pitch_range[1] + 1)) if pitch_range else None
    speed = float(speeds[int(rng.integers(len(speeds)))]) if speeds else 1.0
    noise = str(NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))]) if noise_snr_db is not None else None
    settings = {
        "engine": engine,
        "voice": voice,
        "rate": rate,
        "pitch": pitch,
        "speed": speed,
        "noise": noise,
        "snr_db": noise_snr_db,
        "noise_seed": int(rng.integers(2**62)),
        "engine_seed": int(rng.integers(2**31)),
    }
    key = hashlib.sha256(json.dumps([settings, utt.to_dict()], sort_keys=True).encode("utf-8")).hexdigest()
    return {"id": utt.id, "input": utt.to_dict(), "settings": settings, "key": key}


def _finished(out_dir: Path, utt_id: str, key: str) -> dict[str, Any] | None:
    state = out_dir / STATE_DIR / f"{utt_id}.json"
    if not state.is_file() or not (out_dir / WAV_DIR / f"{utt_id}.wav").is_file():
        return None
    try:
        saved = json.loads(state.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None  # cannot happen with atomic writes, but a hand-edited file is simply redone
    return saved["record"] if saved.get("key") == key else None


def _remove_stale_temporaries(out_dir: Path) -> None:
    """Temporaries of a killed run (hidden files from the atomic writers); one run per out_dir at a time."""
    for folder in (out_dir / WAV_DIR, out_dir / STATE_DIR):
        for path in folder.glob(".*"):
            path.unlink(missing_ok=True)


def _execute(tasks: list[dict[str, Any]], jobs: int | None) -> Iterable[dict[str, Any]]:
    jobs = (os.cpu_count() or 1) if jobs is None else jobs
    if jobs < 1:
        raise ConfigError(f"jobs must be at least 1, got {jobs}")
    if jobs == 1 or len(tasks) <= 1:
        yield from map(_run_task, tasks)
        return
    # spawn, not fork: a forked child would inherit espeak's global C state from the parent
    context = multiprocessing.get_context("spawn")
    with context.Pool(min(jobs, len(tasks))) as pool:
        yield from pool.imap_unordered(_run_task, tasks, chunksize=1)


def _run_task(task: dict[str, Any]) -> dict[str, Any]:
    """Synthesise one utterance, write its WAV then its state file (worker process or in-process)."""
    settings = task["settings"]
    engine = get_engine(settings["engine"])
    voice = VoiceSpec(settings["engine"], settings["voice"], settings["rate"], settings["pitch"])
    started = time.process_time()
    try:
        result = engine.synthesize(task["input"]["text"], voice, seed=settings["engine_seed"])
        check_words_cover_speech(result, task["input"]["text"])
    except SynthesisError as exc:
        return {"status": "error", "id": task["id"], "message": str(exc), "where": task["where"]}
    result = speed_perturb(result, settings["speed"])
    if settings["noise"] is not None:
        rng = np.random.default_rng(settings["noise_seed"])
        result = add_noise(result, settings["snr_db"], settings["noise"], rng)
    cpu = time.process_time() - started
    out_dir = Path(task["out_dir"])
    wav = out_dir / WAV_DIR / f"{task['id']}.wav"
    write_wav(wav, result.samples, result.sample_rate)
    source = Utterance.from_dict(task["input"])
    record = Utterance(
        id=source.id,
        text=source.text,
        audio=f"{WAV_DIR}/{task['id']}.wav",
        sample_rate=result.sample_rate,
        duration=result.duration,
        words=result.words,
        entities=source.entities,
        domain=source.domain,
        speaker=str(voice),
        source=f"{SYNTH_SOURCE_PREFIX}{settings['engine']}",
        units=source.units,
        extra={
            **source.extra,
            "synth": {k: settings[k] for k in ("voice", "rate", "pitch", "speed", "noise", "snr_db")},
        },
    ).to_dict()
    atomic_write_text(out_dir / STATE_DIR / f"{task['id']}.json",
                      json.dumps({"key": task["key"], "record": record}, ensure_ascii=False))
    return {"status": "ok", "id": task["id"], "record": record, "cpu": cpu}


@dataclass
class SpeedReport:
    """Synthesis speed of one engine in one process: seconds of audio per CPU-second."""

    engine: str
    utterances: int
    audio_seconds: float
    cpu_seconds: float
    wall_seconds: float

    @property
    def audio_per_cpu_second(self) -> float:
        return self.audio_seconds / self.cpu_seconds if self.cpu_seconds > 0 else float("nan")


def measure_synthesis_speed(engine: str, texts: Sequence[str], voice: str | None = None) -> SpeedReport:
    """Synthesise ``texts`` one by one in this process and time it (CPU time covers all its threads).

    One untimed warm-up call first, so model loading is not counted.
    """
    if not texts:
        raise ConfigError("measure_synthesis_speed needs at least one text")
    synth = get_engine(engine)
    spec = synth.voice(voice)
    synth.synthesize(texts[0], spec)
    audio = 0.0
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    for text in texts:
        audio += synth.synthesize(text, spec).duration
    return SpeedReport(engine, len(texts), audio, time.process_time() - cpu_start, time.perf_counter() - wall_start)

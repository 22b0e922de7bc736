"""Resynthesis quality: audio -> units -> audio, judged by an independent ASR (the Whisper judge).

Three versions of each utterance are transcribed: the original audio, Griffin-Lim from the original's
own log-mel (what a perfect unit-to-mel model could reach with this vocoder), and the resynthesis
from units. WER against the reference text (speechbraid's scoring normalisation) for each tells
how much the tokenizer + unit-to-mel model lose, separately from what Griffin-Lim loses. Listen-like
checks per WAV: its length equals ``n_units / rate`` seconds and it is not silent. Speed: the vocoder's
x real time over the whole utterances, and for streaming (units pushed ``stream_chunk`` at a time, as a
decoder emits them) how many units must arrive before the first audio, and that first push's compute time.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from speechbraid.data.audio import load_audio, write_wav
from speechbraid.data.manifest import iter_manifest
from speechbraid.errors import ConfigError, InputError
from speechbraid.units.tokenizer import UnitTokenizer, unit_stats
from speechbraid.units.vocoder import SAMPLE_RATE, UnitStream, UnitVocoder, griffin_lim, log_mel

SILENCE_RMS = 1e-3  # below this a 16-bit WAV is effectively silent


def resynthesis_report(
    manifest: str | Path,
    tokenizer: UnitTokenizer,
    vocoder: UnitVocoder,
    out_dir: str | Path,
    judge: str | Path = "whisper-base",
    limit: int | None = None,
    device: str | None = None,
    stream_chunk: int = 10,
) -> dict[str, Any]:
    """Write ``<id>.orig_gl.wav`` / ``<id>.resynth.wav`` and ``report.jsonl`` under ``out_dir``; return the summary."""
    from speechbraid.metrics.asr import wer
    from speechbraid.models.judge import transcribe_with_whisper

    if stream_chunk < 1:
        raise ConfigError(f"stream_chunk must be at least 1 unit, got {stream_chunk}")
    if (tokenizer.config.n_units, tokenizer.rate_hz) != (vocoder.config.n_units, float(vocoder.config.unit_rate_hz)):
        raise InputError("the vocoder was trained for other units "
                         f"({vocoder.config.n_units} at {vocoder.config.unit_rate_hz} Hz) than the tokenizer's "
                         f"({tokenizer.config.n_units} at {tokenizer.rate_hz} Hz)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for item in tqdm(iter_manifest(manifest), desc="resynthesis", unit="utt"):
        record = item.record
        if record.audio is None:
            continue
        if limit is not None and len(rows) >= limit:
            break
        samples, _ = load_audio(record.audio, SAMPLE_RATE)
        units = tokenizer.encode(samples)
        start = time.perf_counter()
        audio = vocoder.units_to_audio(units)
        synth_seconds = time.perf_counter() - start
        upper, _ = griffin_lim(log_mel(samples), vocoder.gl_iters)
        write_wav(out / f"{record.id}.resynth.wav", audio, SAMPLE_RATE)
        write_wav(out / f"{record.id}.orig_gl.wav", upper.numpy(), SAMPLE_RATE)
        rows.append({"id": record.id, "text": record.text, "audio": record.audio, "units": units.tolist(),
                     "seconds": round(len(audio) / SAMPLE_RATE, 3),
                     "length_ok": len(audio) == round(len(units) / tokenizer.rate_hz * SAMPLE_RATE),
                     "rms": round(float(np.sqrt(np.mean(audio**2))), 5), "synth_seconds": round(synth_seconds, 4)}
                    | _first_audio(vocoder, units, stream_chunk))
    if not rows:
        raise InputError("no records with audio to resynthesise", manifest)
    versions = (("hyp_orig", None), ("hyp_orig_gl", ".orig_gl.wav"), ("hyp_resynth", ".resynth.wav"))
    paths = [r["audio"] if suffix is None else out / f"{r['id']}{suffix}" for _, suffix in versions for r in rows]
    hyps = transcribe_with_whisper(judge, paths, device=device)  # one call: the judge loads once
    for k, (key, _) in enumerate(versions):
        for row, hyp in zip(rows, hyps[k * len(rows) : (k + 1) * len(rows)], strict=True):
            row[key] = hyp
    refs = [r["text"] for r in rows]
    summary = {
        "utterances": len(rows),
        "wer_original": round(wer(refs, [r["hyp_orig"] for r in rows]).rate, 4),
        "wer_griffin_lim_of_original_mel": round(wer(refs, [r["hyp_orig_gl"] for r in rows]).rate, 4),
        "wer_resynthesis": round(wer(refs, [r["hyp_resynth"] for r in rows]).rate, 4),
        "length_ok": sum(r["length_ok"] for r in rows),
        "non_silent": sum(r["rms"] > SILENCE_RMS for r in rows),
        "vocoder_x_real_time": round(sum(r["seconds"] for r in rows) / sum(r["synth_seconds"] for r in rows), 1),
        "stream_chunk_units": stream_chunk,
        "first_audio_units_median": statistics.median(r["first_audio_units"] for r in rows),
        "first_audio_compute_ms_median": round(statistics.median(r["first_audio_compute_ms"] for r in rows), 1),
    } | {f"units_{k}": v for k, v in unit_stats([r["units"] for r in rows], tokenizer.config.n_units).items()}
    with (out / "report.jsonl").open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def _first_audio(vocoder: UnitVocoder, units: np.ndarray, chunk: int) -> dict[str, Any]:
    """Units pushed ``chunk`` at a time until a stream gives audio: how many were needed, and that push's compute."""
    stream = UnitStream(vocoder)
    pushed = 0
    while True:
        piece = units[pushed : pushed + chunk]
        pushed += len(piece)
        start = time.perf_counter()
        audio = stream.push(piece)
        if not audio.size and pushed >= len(units):  # the utterance ended before its first audio: flush
            audio = stream.flush()
        if audio.size:
            compute_ms = round(1000 * (time.perf_counter() - start), 1)
            return {"first_audio_units": pushed, "first_audio_compute_ms": compute_ms}

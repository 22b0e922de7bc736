"""Scoring joint text-speech generation (METHODS.md section 2): one decode, every figure.

Per question the model decodes a response under a pattern (``inference.patterns.generate_response``); its
units are vocoded while decoding goes on (:class:`VocoderStream`) and the WAV is transcribed by the judge ASR.

- text-out accuracy: :func:`answer_matches` on the generated text;
- speech-out accuracy: :func:`answer_matches` on the judge's transcript of the generated speech;
- alignment WER: corpus WER of the judge transcript (hypothesis) against the model's OWN generated text
  (reference) - does the speech say what the text says, right or wrong (the ESI paper's alignment metric);
  digits spelled out on both sides first (the judge writes "14", answers say "fourteen");
- decoding steps and sequence length (prompt + ``<|resp|>`` + response positions), means;
- wall seconds of decoding (vocoder time inside the streaming callback subtracted), and the time from the
  start of a batch to each response's first audio chunk (vocoder included: what a listener waits).

Prompts are ``layouts.generation.generation_prompt`` (the layout training uses); the decoder appends ``<|resp|>``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from speechbraid.braid.spans import Braid
from speechbraid.corpora.spoken_qa import Judge, spell_numbers
from speechbraid.data.audio import write_wav
from speechbraid.data.questions import SQAQuestion
from speechbraid.evaluation.modality_gap import as_text_tokenizer
from speechbraid.evaluation.sqa import answer_matches
from speechbraid.layouts.generation import generation_prompt
from speechbraid.layouts.question import Modality
from speechbraid.metrics.asr import wer

SAMPLE_RATE = 16000
EMPTY_AUDIO_S = 0.1  # a response without units is written as this much silence (the judge hears nothing)


def score_generations(questions: Sequence[SQAQuestion], texts: Sequence[str],
                      transcripts: Sequence[str]) -> dict[str, Any]:
    """Accuracies (text-out, speech-out) and alignment WER of generated ``texts`` and the judge's
    ``transcripts`` of the generated speech, in question order."""
    if not (len(questions) == len(texts) == len(transcripts)) or not questions:
        raise ValueError(f"need as many texts and transcripts as questions (>0): {len(questions)}, "
                         f"{len(texts)}, {len(transcripts)}")
    text_ok = [answer_matches(t, q.answers) for q, t in zip(questions, texts, strict=True)]
    speech_ok = [answer_matches(t, q.answers) for q, t in zip(questions, transcripts, strict=True)]
    alignment = wer([spell_numbers(t) for t in texts], [spell_numbers(t) for t in transcripts])
    return {"n": len(questions), "text_accuracy": sum(text_ok) / len(text_ok),
            "speech_accuracy": sum(speech_ok) / len(speech_ok),
            "alignment_wer": alignment.rate, "alignment_ref_words": alignment.total.ref_words,
            "text_correct": text_ok, "speech_correct": speech_ok}


def generate_and_score(model: Any, tokenizer: Any, questions: Sequence[SQAQuestion], pattern: Any, vocoder: Any,
                       judge: Judge, out_dir: str | Path, *, modality: Modality = "text",
                       features: Callable[[str], Any] | None = None, config: Any = None,
                       batch_size: int = 8) -> dict[str, Any]:
    """Decode every question under ``pattern``, vocode (streamed), judge and score (module docstring).

    Writes ``<id>.wav`` per question under ``out_dir``; returns the summary figures and ``items`` (per
    question: text, transcript, steps, length, finish reason, first-audio seconds, correctness).
    """
    from speechbraid.inference.settings import PatternDecodeConfig

    config = config or PatternDecodeConfig()
    tok = as_text_tokenizer(tokenizer)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    decode_s = 0.0
    for start in range(0, len(questions), batch_size):
        chunk = questions[start:start + batch_size]
        prompts = [generation_prompt(q, modality, tok) for q in chunk]
        responses, waves, first_audio, seconds = decode_streamed(model, prompts, pattern, vocoder, features, config)
        decode_s += seconds
        for i, (question, response, audio) in enumerate(zip(chunk, responses, waves, strict=True)):
            wav = out / f"{question.id}.wav"
            write_wav(wav, audio if len(audio) else np.zeros(int(EMPTY_AUDIO_S * SAMPLE_RATE), np.float32),
                      SAMPLE_RATE)
            rows.append({"id": question.id, "text": tok.decode(list(response.text)).strip(), "wav": str(wav),
                         "units": len(response.units), "audio_s": round(len(audio) / SAMPLE_RATE, 3),
                         "steps": response.steps, "length": response.length,
                         "finish_reason": response.finish_reason, "first_audio_s": first_audio.get(i)})
    transcripts = judge.transcribe([r["wav"] for r in rows])
    scores = score_generations(questions, [r["text"] for r in rows], transcripts)
    for row, heard, t_ok, s_ok in zip(rows, transcripts, scores.pop("text_correct"), scores.pop("speech_correct"),
                                      strict=True):
        row.update(transcript=heard, text_correct=t_ok, speech_correct=s_ok)
    firsts = [r["first_audio_s"] for r in rows if r["first_audio_s"] is not None]
    return scores | {
        "pattern": pattern.name, "modality": modality,
        "steps_mean": statistics.fmean(r["steps"] for r in rows),
        "sequence_length_mean": statistics.fmean(r["length"] for r in rows),
        "decode_wall_s": round(decode_s, 3),
        "first_audio_s_mean": statistics.fmean(firsts) if firsts else None,
        "hit_max_steps": sum(r["finish_reason"] == "length" for r in rows),
        "items": rows,
    }


def decode_streamed(model: Any, prompts: Sequence[Braid], pattern: Any, vocoder: Any,
                    features: Callable[[str], Any] | None, config: Any,
                    on_text: Callable[[int, Any], None] | None = None,
                    on_audio: Callable[[int, np.ndarray], None] | None = None,
                    ) -> tuple[list[Any], list[np.ndarray], dict[int, float], float]:
    """Decode ``prompts`` with the units vocoded as they stream (one :class:`UnitStream` per response).

    Returns (responses, waveforms, seconds from the start to each response's first audio chunk, decoding
    seconds without the time spent in the vocoder). ``on_text``/``on_audio`` see chunks as they come.
    """
    from speechbraid.inference.patterns import VocoderStream, generate_response
    from speechbraid.units.vocoder import UnitStream

    first_audio: dict[int, float] = {}
    vocoder_s = 0.0
    began = time.perf_counter()

    def audio_arrived(index: int, samples: np.ndarray) -> None:
        first_audio.setdefault(index, time.perf_counter() - began)
        if on_audio is not None:
            on_audio(index, samples)

    stream = VocoderStream(lambda: UnitStream(vocoder), on_audio=audio_arrived, on_text=on_text)

    def on_chunk(index: int, piece: Any) -> None:
        nonlocal vocoder_s
        t0 = time.perf_counter()
        stream(index, piece)
        vocoder_s += time.perf_counter() - t0

    responses = generate_response(model, prompts, pattern, features, config, on_chunk)
    seconds = time.perf_counter() - began - vocoder_s
    return responses, [stream.waveform(i) for i in range(len(prompts))], first_audio, seconds

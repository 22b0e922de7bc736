"""The project's "judge" ASR: an independent Whisper model that transcribes audio for metrics.

Used wherever speech must be scored as text (alignment WER of generated speech, TTS filtering):
greedy decoding, English, transcribe task, no timestamps, so results are deterministic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from speechbraid.data.audio import load_audio
from speechbraid.device import compute_dtype, pick_device
from speechbraid.errors import ConfigError
from speechbraid.models.hf_load import load_pretrained
from speechbraid.models.registry import resolve_model

WHISPER_RATE = 16000
CHUNK_SECONDS = 30  # Whisper's fixed input window


JUDGE_PRECISIONS = ("auto", "bf16", "fp32")


def _weights_dtype(device: torch.device, precision: str) -> torch.dtype:
    """``auto``: bf16 wherever the hardware computes it natively (:func:`speechbraid.device.native_bf16`; fp16 on
    older GPUs), else fp32. On a 2-core AMX CPU bf16 transcribed 60 test utterances 2.5x faster (37.4 -> 15.1 s) at
    WER 41.6% against fp32's 40.7% (README, Units -> speech)."""
    if precision not in JUDGE_PRECISIONS:
        raise ConfigError(f"unknown Whisper precision {precision!r}; choose one of {', '.join(JUDGE_PRECISIONS)}")
    if precision == "auto" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return compute_dtype(device, precision) or torch.float32  # the encoders' rule: bf16 where native


def load_judge(model: str | Path, device: str | torch.device | None = None, precision: str = "auto"):
    """Load a Whisper checkpoint (directory or registered name) for inference on ``device``, its weights in
    ``precision`` (:func:`_weights_dtype`)."""
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    model_dir = resolve_model(model)
    target = pick_device(device)
    dtype = _weights_dtype(target, precision)
    processor = load_pretrained(WhisperProcessor.from_pretrained, model_dir, "Whisper processor")
    asr = load_pretrained(WhisperForConditionalGeneration.from_pretrained, model_dir, "Whisper model", dtype=dtype)
    return asr.to(target).eval(), processor


class WhisperJudge:
    """A loaded Whisper model: greedy English transcription, batch by batch."""

    def __init__(self, model: str | Path, device: str | torch.device | None = None, precision: str = "auto") -> None:
        self.model, self.processor = load_judge(model, device, precision)

    @torch.inference_mode()
    def transcribe(self, wav_paths: Sequence[str | Path], batch_size: int = 8,
                   on_batch: Callable[[list[int], list[str]], None] | None = None) -> list[str]:
        """One string per file (any length, any rate); ``on_batch(indices, texts)`` after each batch.

        Files are sorted by length before batching so padding stays small; clips longer than 30 s
        use Whisper's sequential long-form decoding instead of being cut.
        """
        audio = [load_audio(path, WHISPER_RATE)[0] for path in wav_paths]
        order = sorted(range(len(audio)), key=lambda i: len(audio[i]))
        texts: list[str] = [""] * len(audio)
        for start in range(0, len(order), batch_size):
            indices = order[start : start + batch_size]
            batch = [audio[i] for i in indices]
            long_form = max(len(a) for a in batch) > CHUNK_SECONDS * WHISPER_RATE
            features = self.processor(
                batch,
                sampling_rate=WHISPER_RATE,
                return_tensors="pt",
                return_attention_mask=True,
                # Short clips are padded to the 30 s window Whisper was trained on; long ones are kept whole.
                **({"truncation": False, "padding": "longest"} if long_form else {}),
            )
            generated = self.model.generate(
                features.input_features.to(self.model.device, self.model.dtype),
                attention_mask=features.attention_mask.to(self.model.device),
                language="en",
                task="transcribe",
                return_timestamps=long_form,
                do_sample=False,
                num_beams=1,
            )
            decoded = [text.strip() for text in self.processor.batch_decode(generated, skip_special_tokens=True)]
            for i, text in zip(indices, decoded, strict=True):
                texts[i] = text
            if on_batch is not None:
                on_batch(indices, decoded)
        return texts


def transcribe_with_whisper(
    model_dir: str | Path,
    wav_paths: Sequence[str | Path],
    batch_size: int = 8,
    device: str | torch.device | None = None,
) -> list[str]:
    """Load a Whisper model and transcribe audio files with it (see :meth:`WhisperJudge.transcribe`)."""
    return WhisperJudge(model_dir, device).transcribe(wav_paths, batch_size)

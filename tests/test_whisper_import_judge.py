"""The judge ASR on real speech: the imported whisper-base transcribes espeak-ng sentences."""

from __future__ import annotations

import re
import shutil
import subprocess

import jiwer
import pytest

from speechbraid.device import pick_device
from speechbraid.models.judge import transcribe_with_whisper


def _normalise(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]", " ", text.lower()).split())


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs Debian espeak-ng")
def test_judge_transcribes_espeak_speech(home, tmp_path):
    sentences = [
        "The train to London leaves from platform number four.",
        "Can you tell me the way to the nearest hospital?",
    ]
    wavs = []
    for i, sentence in enumerate(sentences):
        wavs.append(tmp_path / f"s{i}.wav")
        subprocess.run(["espeak-ng", "-w", str(wavs[-1]), sentence], check=True)
    hypotheses = transcribe_with_whisper("whisper-base", wavs, batch_size=2, device="cpu")
    assert len(hypotheses) == len(sentences)
    wer = jiwer.wer([_normalise(s) for s in sentences], [_normalise(h) for h in hypotheses])
    assert wer < 0.15, hypotheses


def test_device_choice(monkeypatch):
    assert pick_device("cpu").type == "cpu"
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert pick_device().type == "cpu"


def test_judge_precision(monkeypatch):
    import torch

    from speechbraid.errors import ConfigError
    from speechbraid.models.judge import _weights_dtype

    cpu = torch.device("cpu")
    assert _weights_dtype(cpu, "fp32") == torch.float32 and _weights_dtype(cpu, "bf16") == torch.bfloat16
    monkeypatch.setattr("speechbraid.device.native_bf16", lambda device: True)
    assert _weights_dtype(cpu, "auto") == torch.bfloat16  # AMX / AVX512-BF16 CPUs: 2.5x faster
    monkeypatch.setattr("speechbraid.device.native_bf16", lambda device: False)
    assert _weights_dtype(cpu, "auto") == torch.float32  # emulated bf16 would be slower
    monkeypatch.setattr("torch.cuda.is_bf16_supported", lambda: False)
    assert _weights_dtype(torch.device("cuda"), "auto") == torch.float16
    with pytest.raises(ConfigError, match="unknown Whisper precision 'fp8'"):
        _weights_dtype(cpu, "fp8")

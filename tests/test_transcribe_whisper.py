"""`speechbraid transcribe` with the imported whisper-base on one espeak-ng sentence."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import jiwer
import pytest

from speechbraid.cli.main import main
from speechbraid.errors import ConfigError
from speechbraid.inference.transcribe import WhisperTranscriber, collect_inputs, load_transcriber

SENTENCE = "The bank opened a savings account for my brother."


def _words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]", " ", text.lower()).split()


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs Debian espeak-ng")
def test_whisper_base_transcribes_an_espeak_sentence(home, tmp_path, capsys):
    wav = tmp_path / "bank.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), SENTENCE], check=True)
    assert main(["transcribe", "--model", "whisper-base", str(wav), "--json", "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    (record,) = [json.loads(line) for line in out.splitlines()]
    assert record["id"] == "bank" and record["audio"] == str(wav)
    assert jiwer.wer(" ".join(_words(SENTENCE)), " ".join(_words(record["text"]))) <= 0.1, record["text"]
    assert "RTF" in err

    transcriber = load_transcriber("whisper-base", device="cpu")
    assert isinstance(transcriber, WhisperTranscriber)
    with pytest.raises(ConfigError, match="for speech LLMs only: beam size > 1, a text context"):
        transcriber.transcribe(collect_inputs([wav]), beam_size=2, context="banking")

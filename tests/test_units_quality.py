"""Resynthesis report: WAVs of the right length, non-silent, judged by the imported whisper-base."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import torch

from speechbraid.data.audio import audio_info
from speechbraid.errors import InputError
from speechbraid.units.quality import resynthesis_report
from speechbraid.units.tokenizer import UnitTokenizerConfig, train_tokenizer
from speechbraid.units.vocoder import UnitToMel, UnitVocoder, VocoderConfig

pytestmark = [pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs Debian espeak-ng"),
              pytest.mark.usefixtures("one_torch_thread")]


def test_resynthesis_report(home, tmp_path):
    texts = ["Please call the doctor today.", "My card was declined."]
    lines = []
    for i, text in enumerate(texts):
        subprocess.run(["espeak-ng", "-w", str(tmp_path / f"q{i}.wav"), text], check=True)
        lines.append(json.dumps({"id": f"q{i}", "text": text, "audio": f"q{i}.wav"}))
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    tokenizer = train_tokenizer(manifest, UnitTokenizerConfig(encoder="fbank", n_units=8), progress=False)
    torch.manual_seed(0)
    vocoder = UnitVocoder(UnitToMel(VocoderConfig(n_units=8, d_model=16)), gl_iters=8)  # untrained: noise

    summary = resynthesis_report(manifest, tokenizer, vocoder, tmp_path / "out", device="cpu")
    assert summary["utterances"] == 2 and summary["length_ok"] == 2 and summary["non_silent"] == 2
    assert summary["wer_original"] < 0.3  # the judge understands espeak
    assert summary["wer_resynthesis"] > 0.5  # ...and not an untrained vocoder's noise
    rows = [json.loads(line) for line in (tmp_path / "out" / "report.jsonl").read_text().splitlines()]
    for row in rows:
        assert audio_info(tmp_path / "out" / f"{row['id']}.resynth.wav")[1] == pytest.approx(len(row["units"]) / 25)

    with pytest.raises(InputError, match="other units"):
        resynthesis_report(manifest, tokenizer, UnitVocoder(UnitToMel(VocoderConfig(n_units=9))), tmp_path / "x")

"""Resynthesis report: WAVs of the right length, non-silent, judged by the imported whisper-base."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import torch

from speechbraid.data.audio import audio_info
from speechbraid.errors import ConfigError, InputError
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
    # untrained (noise); 3 unit layers: a lookahead of 7 units
    vocoder = UnitVocoder(UnitToMel(VocoderConfig(n_units=8, d_model=16, unit_layers=3)), gl_iters=8)

    summary = resynthesis_report(manifest, tokenizer, vocoder, tmp_path / "out", device="cpu")
    assert summary["utterances"] == 2 and summary["length_ok"] == 2 and summary["non_silent"] == 2
    assert summary["wer_original"] < 0.3  # the judge understands espeak
    assert summary["wer_resynthesis"] > 0.5  # ...and not an untrained vocoder's noise
    rows = [json.loads(line) for line in (tmp_path / "out" / "report.jsonl").read_text().splitlines()]
    for row in rows:
        assert audio_info(tmp_path / "out" / f"{row['id']}.resynth.wav")[1] == pytest.approx(len(row["units"]) / 25)
        assert row["first_audio_units"] == 10  # the first chunk covers the 7-unit lookahead and the held-back overlap
    assert summary["vocoder_x_real_time"] > 0 and summary["first_audio_compute_ms_median"] > 0
    # 4 units at a time: 8 give 1 unit of mel (4 frames), all held back for the cross-fade; 12 give audio.
    assert resynthesis_report(manifest, tokenizer, vocoder, tmp_path / "out4", device="cpu",
                              stream_chunk=4)["first_audio_units_median"] == 12

    with pytest.raises(ConfigError, match="stream_chunk"):
        resynthesis_report(manifest, tokenizer, vocoder, tmp_path / "x", stream_chunk=0)
    with pytest.raises(InputError, match="other units"):
        resynthesis_report(manifest, tokenizer, UnitVocoder(UnitToMel(VocoderConfig(n_units=9))), tmp_path / "x")

"""The public API's reference page renders from the docstrings (pdoc), as the README's command makes it."""

import subprocess
import sys

PUBLIC = ["speechbraid.api", "speechbraid.data.records", "speechbraid.data.manifest", "speechbraid.metrics.asr",
          "speechbraid.models.ngram_lm", "speechbraid.inference.ctc_beam"]


def test_public_api_reference_renders_every_documented_entry_point(tmp_path):
    subprocess.run([sys.executable, "-m", "pdoc", *PUBLIC, "-o", str(tmp_path), "--no-show-source"], check=True,
                   capture_output=True)
    page = (tmp_path / "speechbraid" / "api.html").read_text(encoding="utf-8")
    for name in ("from_pretrained", "transcribe", "generate", "save_pretrained"):
        assert f'id="SpeechLLM.{name}"' in page, name
    assert "Load a model saved by" in page  # docstrings, not just names
    assert (tmp_path / "speechbraid" / "models" / "ngram_lm.html").is_file()

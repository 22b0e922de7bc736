"""Layout-building benchmark: every JSTIP layout measured on a hand-made aligned manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from speechbraid.benchmarks.layouts import CASES, bench_layouts, format_layouts
from speechbraid.errors import InputError
from speechbraid.layouts.render import NullTokenizer


def test_bench_layouts_reports_every_case(tmp_path: Path) -> None:
    text = "Take aspirin, twice daily."
    words = [{"word": w, "start": 0.3 * k, "end": 0.3 * k + 0.25} for k, w in enumerate(text.split())]
    lines = [{"id": f"u{i}", "text": "Take aspirin, twice daily.", "audio": "x.wav", "duration": 1.5, "words": words}
             for i in range(5)] + [{"id": "t", "text": "text only"}]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(x) + "\n" for x in lines))
    result = bench_layouts(manifest, NullTokenizer(), n=4, repeats=1)
    assert result["utterances"] == 4
    assert [row["layout"] for row in result["rows"]] == [
        "asr", "word-il", "segment-il:silence", "segment-il:silence+punct", "mixed-il:silence"]
    assert len(result["rows"]) == len(CASES)
    assert all(row["utterances_per_s"] > 0 and row["mean_positions"] > 0 for row in result["rows"])
    assert "| word-il |" in format_layouts(result)
    manifest.write_text(json.dumps(lines[-1]) + "\n")
    with pytest.raises(InputError, match="no utterance with audio and a word alignment"):
        bench_layouts(manifest, NullTokenizer())

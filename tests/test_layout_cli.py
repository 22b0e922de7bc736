"""``speechbraid layout``: JSON spans per layout and variant, text drawing, PNG, errors with file:line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

from speechbraid.batching import flatten_braid
from speechbraid.braid import VocabLayout
from speechbraid.cli.layout import braids_to_show
from speechbraid.cli.main import main
from speechbraid.data.audio import write_wav
from speechbraid.data.manifest import read_manifest
from speechbraid.layouts.registry import UTTERANCE_LAYOUTS
from speechbraid.layouts.tokenizer import HFTextTokenizer


def W(word: str, start: float, end: float) -> dict:
    return {"word": word, "start": start, "end": end}


ALIGNED = [
    # a long pause after "aspirin," (0.95 -> 1.40) makes two segments at silences
    {"id": "u1", "text": "Take aspirin, twice daily.", "duration": 2.0,
     "words": [W("Take", 0.10, 0.40), W("aspirin,", 0.45, 0.95), W("twice", 1.40, 1.70), W("daily.", 1.72, 1.85)]},
    {"id": "u2", "text": "Take aspirin, twice daily. Rest well.", "duration": 3.0,
     "words": [W("Take", 0.1, 0.4), W("aspirin,", 0.45, 0.95), W("twice", 1.0, 1.3), W("daily.", 1.32, 1.6),
               W("Rest", 2.0, 2.3), W("well.", 2.32, 2.6)]},
]


def _write(tmp_path: Path, records: list[dict]) -> Path:
    lines = []
    for rec in records:
        rec = dict(rec)
        if "duration" in rec:  # real (silent) audio of the declared duration keeps the manifest valid
            write_wav(tmp_path / f"{rec['id']}.wav", np.zeros(int(rec["duration"] * 8000), np.float32), 8000)
            rec.update(audio=f"{rec['id']}.wav", sample_rate=8000)
        lines.append(json.dumps(rec))
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    return _write(tmp_path, ALIGNED)


@pytest.fixture(scope="module")
def tok(tiny_llm_dir: Path) -> HFTextTokenizer:
    return HFTextTokenizer(AutoTokenizer.from_pretrained(tiny_llm_dir))


def layout_json(capsys, *args: str) -> list[dict]:
    assert main(["layout", *args, "--json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def shape(spans: list[dict]) -> list[str]:
    out = []
    for s in spans:
        if s["modality"] == "speech":
            out.append(f"A{s['start']:.2f}-{s['end']:.2f}f{s['frames'][0]}:{s['frames'][1]}")
        elif s["modality"] == "special" or s["text"] is None:
            out.append(s["token"])
        else:
            out.append(("T" if s["loss"] else "t") + f"({s['text']}{s.get('eos', '')})")
    return out


def test_word_il_both_variants_spans_frames_and_last_text(manifest: Path, tiny_llm_dir: Path, tok, capsys) -> None:
    (u1, _) = layout_json(capsys, "--manifest", str(manifest), "--format", "word-il", "--variant", "both",
                          "--tokenizer", str(tiny_llm_dir))
    speech_first, text_first = u1["braids"]
    assert speech_first["layout"] == "word-il:speech-first" and text_first["layout"] == "word-il:text-first"
    # frames: nearest boundary at 12.5 Hz, half up (1.40 s -> 17.5 -> 18)
    assert shape(speech_first["spans"]) == ["<s>", "A0.10-0.40f1:5", "T( aspirin,)", "A1.40-1.70f18:21",
                                            "T( daily.</s>)"]
    # text-first over 4 words: T A T A -> the last unit is forced to text and merged
    assert shape(text_first["spans"]) == ["<s>", "T(Take)", "A0.45-0.95f6:12", "T( twice daily.</s>)"]
    last = text_first["spans"][-1]
    assert last["tokens"] == tok.encode(" twice daily.") + [tok.eos_id]
    assert text_first["spans"][0] == {"modality": "text", "text": None, "tokens": [tok.bos_id], "token": "<s>",
                                      "loss": False}
    assert text_first["loss_tokens"] == len(tok.encode("Take")) + len(last["tokens"])


@pytest.mark.parametrize("variant", ["speech-first", "text-first"])
@pytest.mark.parametrize("layout", UTTERANCE_LAYOUTS)
def test_json_for_every_layout_matches_the_builder(layout: str, variant: str, manifest: Path, tiny_llm_dir: Path,
                                                    tok, capsys) -> None:
    lines = layout_json(capsys, "--manifest", str(manifest), "--format", layout, "--variant", variant,
                        "--tokenizer", str(tiny_llm_dir), "--segment-by", "silence+punct")
    records = list(read_manifest(manifest))
    assert [line["id"] for line in lines] == ["u1", "u2"]
    vocab = VocabLayout(text_size=len(tok))
    for line, record in zip(lines, records, strict=True):
        built = braids_to_show(record, layout, tok, variant, "silence+punct")
        assert [b["layout"] for b in line["braids"]] == [b.layout for b in built]
        for shown, braid in zip(line["braids"], built, strict=True):
            flat = flatten_braid(braid, vocab, 12.5)
            assert shown["positions"] == len(flat)  # counts agree with what training lays out
            assert shown["loss_tokens"] == sum(label != -100 for label in flat.labels)
            assert shown["speech_frames"] == sum(f >= 0 for f in flat.frames)
            spans = shown["spans"]
            assert all(isinstance(s["loss"], bool) for s in spans)
            assert not any(s["loss"] for s in spans if s["modality"] != "text")
            texts = [s for s in spans if s["modality"] == "text" and s["text"] is not None]
            assert all(s["loss"] for s in texts)
            assert texts[-1] is [s for s in spans if s["modality"] != "special"][-1]  # last unit is text
            special_ids = [s["id"] for s in spans if s["modality"] == "special"]
            assert special_ids == [t for t in flat.tokens if t >= len(tok)]
    if layout == "mixed-il":
        assert [b["layout"] for b in lines[0]["braids"]] == [f"word-il:{variant}",
                                                            f"segment-il:{variant}:silence+punct"]
    if layout == "segment-il" and variant == "speech-first":
        # u2 by silence+punct: [Take aspirin,] [twice daily.] [Rest well.] -> A T A -> A T(merged)
        assert shape(lines[1]["braids"][0]["spans"]) == [
            "<|il|>", "A0.10-0.95f1:12", "<|N|>", "T( twice daily. Rest well.)", "<|/il|>"]
    if layout == "asr":
        assert shape(lines[0]["braids"][0]["spans"]) == ["A0.00-2.00f0:25", "<|asr|>",
                                                        "T(Take aspirin, twice daily.</s>)"]


def test_text_drawing_shows_words_speech_ranges_and_loss_marks(manifest: Path, tiny_llm_dir: Path, capsys) -> None:
    assert main(["layout", "--manifest", str(manifest), "--format", "word-il", "--tokenizer", str(tiny_llm_dir),
                 "--limit", "1", "--color", "never", "--width", "200"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("legend: [A s-es fi:j] speech")
    assert out[2].startswith("u1  word-il  2.00 s  (") and out[2].endswith(':1)  "Take aspirin, twice daily."')
    assert out[3].startswith("  word-il:speech-first  (")
    sequence, marks = out[4], out[5]
    assert sequence == "    <s> [A 0.10-0.40s f1:5] aspirin, [A 1.40-1.70s f18:21] daily.</s>"
    # ^ exactly under the loss text (and its EOS), nothing under speech or BOS
    assert [sequence[i] for i, c in enumerate(marks) if c == "^"] == list("aspirin,daily.</s>")
    assert "u2" not in "\n".join(out)  # --limit 1


def test_text_drawing_wraps_and_colours(manifest: Path, capsys) -> None:
    assert main(["layout", "--manifest", str(manifest), "--format", "word-il", "--tokenizer", "none",
                 "--width", "40", "--color", "always", "--variant", "text-first"]) == 0
    out = capsys.readouterr().out
    assert "\033[1;4mtwice daily.<eos>\033[0m" in out  # one underlined stretch, EOS included
    assert "\033[36m[A 0.45-0.95s f6:12]\033[0m" in out
    assert "^" not in out
    plain = re.sub(r"\033\[[0-9;]*m", "", out).splitlines()
    sequence = [line for line in plain if line.startswith("    ")]
    assert len(sequence) > 2 and all(len(line) <= 40 for line in sequence)  # u2's braid wrapped
    assert " ".join(line.strip() for line in sequence).endswith("Rest well.<eos>")


def test_tokenizer_none_prints_text_without_ids(manifest: Path, capsys) -> None:
    (u1, _) = layout_json(capsys, "--manifest", str(manifest), "--format", "word-il", "--tokenizer", "none")
    braid = u1["braids"][0]
    assert shape(braid["spans"]) == ["<bos>", "A0.10-0.40f1:5", "T( aspirin,)", "A1.40-1.70f18:21",
                                     "T( daily.<eos>)"]
    assert not any("tokens" in s or "id" in s for s in braid["spans"])
    assert braid["positions"] is None and braid["speech_frames"] == 7


def test_frame_rate_option(manifest: Path, capsys) -> None:
    (u1, _) = layout_json(capsys, "--manifest", str(manifest), "--format", "word-il", "--tokenizer", "none",
                          "--frame-rate", "25")
    assert u1["braids"][0]["spans"][1]["frames"] == [3, 10]  # 0.10 s * 25 = 2.5 -> 3 (half up); 0.40 s -> 10


def test_plot_writes_a_png(manifest: Path, tmp_path: Path, capsys) -> None:
    import matplotlib.image

    out = tmp_path / "pics" / "braids.png"
    assert main(["layout", "--manifest", str(manifest), "--format", "mixed-il", "--variant", "both",
                 "--tokenizer", "none", "--plot", str(out)]) == 0
    assert "drew 8 braid(s) of 2 utterance(s)" in capsys.readouterr().err
    image = matplotlib.image.imread(out)
    assert image.shape[0] > 400 and image.shape[1] > 800  # eight strips
    assert image[..., :3].std() > 0.1  # not blank


def test_missing_alignment_is_an_error_with_file_line_or_skipped(tmp_path: Path, capsys) -> None:
    manifest = _write(tmp_path, [*ALIGNED, {"id": "raw", "text": "not aligned", "duration": 1.0},
                                 {"id": "t", "text": "text only"}])
    assert main(["layout", "--manifest", str(manifest), "--format", "segment-il", "--tokenizer", "none"]) == 2
    err = capsys.readouterr().err
    assert f"{manifest}:3: utterance 'raw' has no word alignment" in err and "--skip-unaligned" in err
    lines = layout_json(capsys, "--manifest", str(manifest), "--format", "segment-il", "--tokenizer", "none",
                        "--skip-unaligned")
    assert [line["id"] for line in lines] == ["u1", "u2"]
    assert main(["layout", "--manifest", str(manifest), "--format", "segment-il", "--tokenizer", "none",
                 "--skip-unaligned", "--json"]) == 0
    err = capsys.readouterr().err
    assert "skipped 2 utterance(s)" in err
    assert f"{manifest}:3 [raw] has no word alignment" in err and f"{manifest}:4 [t] has no audio" in err
    # the asr layout needs no alignment, only audio; the text layout takes everything
    assert main(["layout", "--manifest", str(manifest), "--format", "asr", "--tokenizer", "none"]) == 2
    assert f"{manifest}:4: utterance 't' has no audio/duration" in capsys.readouterr().err
    assert [x["id"] for x in layout_json(capsys, "--manifest", str(manifest), "--format", "text",
                                         "--tokenizer", "none")] == ["u1", "u2", "raw", "t"]


def test_limit_counts_shown_utterances(manifest: Path, capsys) -> None:
    assert len(layout_json(capsys, "--manifest", str(manifest), "--format", "asr", "--tokenizer", "none",
                           "--limit", "1")) == 1
    assert main(["layout", "--manifest", str(manifest), "--format", "asr", "--limit", "0"]) == 2
    assert "--limit must be >= 1" in capsys.readouterr().err


def test_unresolvable_tokenizer_says_how_to_get_one(manifest: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("SPEECHBRAID_HOME", str(tmp_path / "home"))
    assert main(["layout", "--manifest", str(manifest), "--format", "asr"]) == 2
    err = capsys.readouterr().err
    assert "cannot find tokenizer 'default-lm'" in err
    assert "speechbraid pretrain-lm" in err and "--tokenizer none" in err
    (tmp_path / "empty").mkdir()
    assert main(["layout", "--manifest", str(manifest), "--format", "asr", "--tokenizer", str(tmp_path / "empty")]) == 2
    assert "holds no usable Hugging Face tokenizer" in capsys.readouterr().err


def test_generation_braids_render_including_parallel_streams():
    from speechbraid.braid import TextSpan
    from speechbraid.layouts.render import BraidView, braid_json, format_braid
    from speechbraid.patterns import build_generation_braid, get_pattern

    class Tok:
        eos_id = bos_id = 1

        def encode(self, text):
            return [ord(c) for c in text]

        def decode(self, ids):
            return "".join(chr(i) for i in ids if i > 1)

        def __len__(self):
            return 256

    view = BraidView.for_tokenizer(Tok())
    for name in ("esi", "parallel"):
        braid = build_generation_braid(get_pattern(name), [TextSpan((72, 105), False, "Hi")], [79, 75], [3, 4, 5])
        spans = braid_json(braid, view)["spans"]
        assert spans[-1]["loss"] is True
        assert format_braid(braid, view)
    parallel = braid_json(build_generation_braid(get_pattern("parallel"), [], [79], [3]), view)["spans"][-1]
    assert parallel["modality"] == "parallel" and parallel["speech"] == ["<|spad|>", 3, "<|eos_speech|>"]

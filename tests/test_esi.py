"""ESI study pieces: generation braids from a QA pair per pattern, generation layouts as training sources,
and ``experiment esi --preset tiny`` end to end (fake judge, real espeak, LM, units, vocoder and training)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from helpers import WordTokenizer
from speechbraid.batching.collate import IGNORE_INDEX
from speechbraid.braid.spans import ParallelSpan, SpecialSpan, SpeechSpan, TextSpan
from speechbraid.braid.vocab import VocabLayout
from speechbraid.cli.main import main
from speechbraid.corpora.spoken_qa import make_qa_candidates
from speechbraid.data.manifest import read_manifest
from speechbraid.data.questions import SpokenQA, load_spoken_qa, write_spoken_qa
from speechbraid.errors import InputError
from speechbraid.experiments.esi import run_esi_study
from speechbraid.inference.patterns import teacher_forced_lengths
from speechbraid.layouts.generation import qa_generation_braid
from speechbraid.patterns import get_pattern, response_steps
from speechbraid.training.data import BraidSource, SourceConfig

PAIR = SpokenQA("sqa-1", "antonym", "train", "What is the opposite of hot?", ("cold",), "The opposite of hot is cold.",
                question_audio="/q.wav", question_duration=1.2, units=tuple(range(20)))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("name", ["interleaved", "esi", "parallel"])
@pytest.mark.parametrize("modality", ["text", "speech"])
def test_generation_braid_from_a_qa_pair(name, modality):
    tok = WordTokenizer()
    braid = qa_generation_braid(PAIR, name, modality, tok)
    resp = next(i for i, s in enumerate(braid.spans) if isinstance(s, SpecialSpan) and s.token == "<|resp|>")
    assert not any(s.loss for s in braid.spans[:resp])  # the prompt is never a target
    assert any(isinstance(s, SpeechSpan) for s in braid.spans[:resp]) == (modality == "speech")
    assert braid.audio == ("/q.wav" if modality == "speech" else None)
    answer = tok.encode(" " + PAIR.answer_text)
    assert response_steps(braid) == teacher_forced_lengths(get_pattern(name), [(answer, PAIR.units)])[0]
    tail = braid.spans[resp + 1:]
    if name == "parallel":
        assert len(tail) == 1 and isinstance(tail[0], ParallelSpan)
        assert [t for t in tail[0].text if isinstance(t, int)] == answer
    else:
        texts = [t for s in tail if isinstance(s, TextSpan) for t in s.tokens]
        assert texts == answer
        assert any(isinstance(s, SpecialSpan) and s.token == "<|S|>" for s in tail) == (name == "esi")
    # ESI needs fewer steps than plain interleaved here: 6 text tokens against 20 units pad the plain pattern
    if name == "esi":
        assert response_steps(braid) < response_steps(qa_generation_braid(PAIR, "interleaved", modality, tok))


def test_generation_layout_source_alternates_prompts_and_checks_its_pairs(tmp_path):
    path = write_spoken_qa([PAIR], tmp_path / "qa.jsonl")
    vocab = VocabLayout(text_size=100, num_units=20)
    source = BraidSource(SourceConfig(str(path), "gen-esi"), WordTokenizer(), vocab, 12.5)
    flats = [source.example(0, epoch) for epoch in (0, 1)]
    assert sorted(f.num_frames > 0 for f in flats) == [False, True]  # one text prompt, one speech prompt
    for flat in flats:
        targets = [label for label in flat.labels if label != IGNORE_INDEX]
        assert vocab.special_id("<|S|>") in targets and vocab.special_id("<|eos_speech|>") in targets
    text_only = BraidSource(SourceConfig(str(path), "gen-esi", variant="text"), WordTokenizer(), vocab, 12.5)
    assert all(text_only.example(0, epoch).num_frames == 0 for epoch in (0, 1))
    with pytest.raises(InputError, match=r"(?s)qa.jsonl.*qa.jsonl:1: \[sqa-1\] unit 19 outside the model's 10 units"):
        BraidSource(SourceConfig(str(path), "gen-esi"), WordTokenizer(), VocabLayout(100, 10), 12.5)
    silent = write_spoken_qa([SpokenQA(**{**vars(PAIR), "question_audio": None})], tmp_path / "silent.jsonl")
    with pytest.raises(InputError, match="no question audio for a speech prompt"):
        BraidSource(SourceConfig(str(silent), "gen-esi"), WordTokenizer(), vocab, 12.5)
    BraidSource(SourceConfig(str(silent), "gen-esi", variant="text"), WordTokenizer(), vocab, 12.5)  # text prompts only
    with pytest.raises(ValueError, match="unknown variant 'speech-first' for layout 'gen-esi'"):
        SourceConfig(str(path), "gen-esi", variant="speech-first")


class AnswerJudge:
    """Hears synthesised answers perfectly, one of them wrongly; generated speech as a fixed phrase."""

    def __init__(self, n: int) -> None:
        self.answers = {p.id: p.answer_text for p in make_qa_candidates(n)}
        self.victim = sorted(self.answers)[1]

    def transcribe(self, wav_paths, batch_size=8, on_batch=None):
        texts = []
        for path in wav_paths:
            pair_id = Path(path).stem.rsplit("-", 1)[0]
            known = Path(path).stem.endswith("-a") and pair_id != self.victim
            texts.append(self.answers[pair_id] if known else "the opposite")
        if on_batch is not None:
            on_batch(list(range(len(texts))), texts)
        return texts


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs Debian espeak-ng")
def test_experiment_esi_tiny_end_to_end(tmp_path):
    out, corpus = tmp_path / "esi", tmp_path / "corpus"
    result = run_esi_study(out, corpus, preset="tiny", judge=AnswerJudge(10), progress=False)
    assert result["spoken_qa"]["kept"] == 9 and len(result["spoken_qa"]["dropped"]) == 1
    assert set(result["table"]) == {f"{p} ({m} prompt)" for p in ("interleaved", "esi", "parallel")
                                    for m in ("text", "speech")}
    # units and vocoder learn from the kept train answers and the response voice's extra sentences
    voice = [r.id for r in read_manifest(out / "voice" / "manifest.jsonl")]
    assert voice == [r.id for r in read_manifest(corpus / "text" / "train.jsonl")][:3]
    answers = [p.id for p in load_spoken_qa(out / "qa" / "train.jsonl")]
    assert [r.id for r in read_manifest(out / "qa" / "unit_audio.jsonl")] == answers + voice
    tf = result["teacher_forced"]
    assert tf["esi_over_interleaved"] < 1  # answers have more units than text tokens: ESI skips the pads
    esi = result["table"]["esi (text prompt)"]
    assert "steps_mean_vs_interleaved" in esi and esi["decode_wall_s"]["mean"] > 0 and esi["seeds"] == 1
    evaluated = json.loads((out / "runs" / "parallel" / "seed0" / "eval_speech.json").read_text())
    assert evaluated["n"] == len(evaluated["items"]) > 0
    assert all(Path(item["wav"]).is_file() for item in evaluated["items"])
    assert "| esi (text prompt) |" in (out / "table.md").read_text()
    assert (out / "table.png").stat().st_size > 0
    # a re-run resumes: nothing is retrained
    logs = {p: p.read_text() for p in out.rglob("train_log.jsonl")}
    assert run_esi_study(out, corpus, preset="tiny", judge=AnswerJudge(10), progress=False)["table"] == result["table"]
    assert {p: p.read_text() for p in out.rglob("train_log.jsonl")} == logs
    # a second seed: only its runs are trained; the table gives mean and spread over both
    two = run_esi_study(out, corpus, preset="tiny", patterns=["interleaved", "esi"], seeds=[0, 1],
                        judge=AnswerJudge(10), progress=False)
    assert {p: p.read_text() for p in out.rglob("train_log.jsonl") if "seed1" not in str(p)} == logs
    row = two["table"]["esi (text prompt)"]
    assert row["seeds"] == 2 and (out / "runs" / "esi" / "seed1" / "metrics.json").is_file()
    first = result["table"]["esi (text prompt)"]["steps_mean"]["mean"]
    second = json.loads((out / "runs" / "esi" / "seed1" / "metrics.json").read_text())["text"]["steps_mean"]
    assert row["steps_mean"]["mean"] == pytest.approx((first + second) / 2)
    assert "| esi (text prompt) | 2 |" in (out / "table.md").read_text()
    # the CLI names the study and refuses unknown patterns
    with pytest.raises(SystemExit):
        main(["experiment", "esi", "--patterns", "nope"])

"""Curated spoken QA: answer-sentence templates, disjoint splits, the judge filter, resume and units."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from speechbraid.corpora.spoken_qa import (
    LONG_ANSWER_WORDS,
    answer_sentence,
    build_spoken_qa,
    make_qa_candidates,
    spell_numbers,
    split_of,
)
from speechbraid.data.audio import audio_info
from speechbraid.data.questions import SpokenQA, SQAQuestion, load_spoken_qa, write_spoken_qa
from speechbraid.errors import ConfigError, InputError

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs Debian espeak-ng")


class EchoJudge:
    """Hears every answer exactly (digits for numbers, as Whisper writes them) except the ids in ``mangle``."""

    def __init__(self, answers: dict[str, str], mangle: frozenset[str] = frozenset()) -> None:
        self.answers, self.mangle, self.calls = answers, mangle, 0

    def transcribe(self, wav_paths, batch_size=8, on_batch=None):
        self.calls += 1
        self.last = [Path(path).stem.rsplit("-", 1)[0] for path in wav_paths]
        texts = []
        for path in wav_paths:
            pair_id = Path(path).stem.rsplit("-", 1)[0]
            texts.append("completely different words" if pair_id in self.mangle else
                         self.answers[pair_id].replace("fourteen", "14"))
        for start in range(0, len(texts), batch_size):
            if on_batch is not None:
                indices = list(range(start, min(start + batch_size, len(texts))))
                on_batch(indices, [texts[i] for i in indices])
        return texts


@pytest.mark.parametrize(("kind", "question", "answer", "sentence"), [
    ("antonym", "What is the opposite of hot?", "cold", "The opposite of hot is cold."),
    ("hypernym", "What is a dog a kind of?", "animal", "A dog is a kind of animal."),
    ("arithmetic", "What is two plus three?", "five", "Two plus three is five."),
    ("calendar", "What day comes after Monday?", "Tuesday", "The day after Monday is Tuesday."),
    ("drug", "What kind of thing is aspirin?", "medicine", "Aspirin is a medicine."),
])
def test_answer_sentences(kind, question, answer, sentence):
    assert answer_sentence(SQAQuestion("q", kind, question, (answer,))) == sentence


@pytest.mark.parametrize(("kind", "question", "answer", "sentence"), [
    ("antonym", "What is the opposite of wise?", "foolish",
     "The opposite of wise is foolish, and foolish means devoid of good sense or judgment."),
    ("hypernym", "What is wine a kind of?", "beverage",
     "Wine is a kind of beverage, and beverage means any liquid suitable for drinking."),
    ("hypernym", "What is a garage a kind of?", "building",  # the gloss of building is too long to fit
     "A garage is a kind of building, the wider group that a garage belongs to."),
    ("arithmetic", "What is seven plus six?", "thirteen",
     "If you start with seven and add six, you get thirteen, so seven plus six is thirteen."),
    ("arithmetic", "What is two times three?", "six",
     "Two groups of three make six in all, so two times three is six."),
    ("calendar", "What month comes before August?", "July",
     "The month before August is July, one of the twelve months of the year."),
    ("drug", "What kind of thing is aspirin?", "medicine",
     "Aspirin is a medicine, so ask a doctor or a pharmacist before you take aspirin with any other medicine."),
])
def test_long_answer_sentences(kind, question, answer, sentence):
    assert answer_sentence(SQAQuestion("q", kind, question, (answer,)), "long") == sentence


def test_long_answers_are_full_sentences_of_the_promised_length():
    pairs = make_qa_candidates(600, style="long")
    short = make_qa_candidates(600)
    assert [p.question for p in pairs] == [p.question for p in short]  # same questions, other answers
    lengths = [len(p.answer_text.split()) for p in pairs]
    assert min(lengths) >= LONG_ANSWER_WORDS[0] and max(lengths) <= LONG_ANSWER_WORDS[1]
    assert all(p.answer_text.endswith(".") and p.answer_text.startswith(s.answer_text[:-1])
               for p, s in zip(pairs, short, strict=True) if p.kind not in ("arithmetic",))
    with pytest.raises(ConfigError, match="unknown answer style 'medium'"):
        make_qa_candidates(3, style="medium")


def test_answer_sentence_refuses_unknown_shapes():
    with pytest.raises(ConfigError, match="template"):
        answer_sentence(SQAQuestion("q", "antonym", "Name the opposite of hot.", ("cold",)))
    with pytest.raises(ConfigError, match="no answer template"):
        answer_sentence(SQAQuestion("q", "trivia", "Who?", ("me",)))


def test_candidates_have_disjoint_splits_and_every_kind():
    pairs = make_qa_candidates(300)
    assert {p.kind for p in pairs} == {"antonym", "hypernym", "arithmetic", "calendar", "drug"}
    train = {p.question for p in pairs if p.split == "train"}
    test = {p.question for p in pairs if p.split == "test"}
    assert train and test and not train & test
    assert split_of("What is the opposite of HOT?") == split_of("what is the opposite of hot")
    assert all(p.answer_text.endswith(".") for p in pairs)
    assert spell_numbers("10 plus 4 is 14.") == "ten plus four is fourteen."


def test_build_drops_exactly_the_pair_the_judge_mishears_and_resumes(tmp_path):
    from speechbraid.units.tokenizer import UnitTokenizerConfig, train_tokenizer

    n = 6
    candidates = make_qa_candidates(n)
    answers = {p.id: p.answer_text for p in candidates}
    victim = candidates[2].id
    judge = EchoJudge(answers, frozenset({victim}))
    out = tmp_path / "qa"
    summary = build_spoken_qa(out, n, None, judge, progress=False)
    assert summary["candidates"] == n and summary["kept"] == n - 1
    assert summary["kept_fraction"] == pytest.approx((n - 1) / n, abs=1e-4)
    assert [d["id"] for d in summary["dropped"]] == [victim]
    kept = load_spoken_qa(out / "train.jsonl") + load_spoken_qa(out / "test.jsonl")
    assert sorted(p.id for p in kept) == sorted(a for a in answers if a != victim)
    for pair in kept:
        assert audio_info(pair.question_audio)[1] == pytest.approx(pair.question_duration, abs=1e-3)
        assert pair.judge_wer == 0.0 and pair.units is None  # digits heard for "fourteen" still count as right
    # resume: everything judged already, the judge is not asked again; units are added to the same pairs
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"id": p.id, "text": p.answer_text, "audio": p.answer_audio}) + "\n"
                                for p in kept))
    tokenizer = train_tokenizer(manifest, UnitTokenizerConfig(encoder="fbank", n_units=8), progress=False)
    again = build_spoken_qa(out, n, tokenizer, judge, progress=False)
    assert judge.calls == 1 and again["kept"] == n - 1 and again["units"]["tokens"] > 0
    with_units = load_spoken_qa(out / "train.jsonl") + load_spoken_qa(out / "test.jsonl")
    for pair in with_units:
        assert abs(len(pair.units) - pair.answer_duration * 25) <= 1
    # a logged transcript of ANOTHER answer sentence under the same id (other n or seed) is not reused
    log = out / "judge.jsonl"
    lines = log.read_text().splitlines()
    stale = json.loads(lines[0]) | {"answer": "Something else entirely."}
    log.write_text("\n".join([json.dumps(stale), *lines[1:]]) + "\n")
    build_spoken_qa(out, n, tokenizer, judge, progress=False)
    assert judge.calls == 2 and judge.last == [stale["id"]]


def test_answers_in_one_response_voice_and_kept_per_kind(tmp_path):
    from speechbraid.data.manifest import read_manifest

    n = 4
    candidates = make_qa_candidates(n, style="long")
    judge = EchoJudge({p.id: p.answer_text for p in candidates}, frozenset({candidates[0].id}))
    summary = build_spoken_qa(tmp_path / "qa", n, None, judge, answer_style="long", answer_engine="piper",
                              progress=False)
    spoken = {r.id: r for r in read_manifest(tmp_path / "qa" / "speech" / "manifest.jsonl")}
    assert {spoken[f"{p.id}-a"].source for p in candidates} == {"synth:piper"}
    assert len({spoken[f"{p.id}-a"].speaker for p in candidates}) == 1  # one fixed voice
    assert {spoken[f"{p.id}-q"].source for p in candidates} == {"synth:espeak"}
    kinds = summary["kinds"]
    assert sum(k["candidates"] for k in kinds.values()) == n and sum(k["kept"] for k in kinds.values()) == n - 1
    assert kinds[candidates[0].kind]["kept"] == kinds[candidates[0].kind]["candidates"] - 1


def test_load_reports_file_and_line(tmp_path):
    path = write_spoken_qa(make_qa_candidates(3), tmp_path / "qa.jsonl")
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], lines[1].replace('"answers": [', '"answers": 5, "x": ['), lines[2]]) + "\n")
    with pytest.raises(InputError, match=r"qa\.jsonl:2"):
        load_spoken_qa(path)


def test_audio_given_relative_to_the_working_directory_survives_a_round_trip(tmp_path, monkeypatch):
    # regression: a study run with a relative --out stored cwd-relative audio paths, which loading re-rooted at
    # the file's folder ("runs/esi/qa/runs/esi/qa/speech/wavs/...": audio file not found)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "qa" / "speech").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    pair = SpokenQA("sqa-1", "antonym", "train", "What is the opposite of hot?", ("cold",),
                    "The opposite of hot is cold.", question_audio="runs/qa/speech/q.wav", question_duration=1.0,
                    answer_audio="elsewhere/a.wav", answer_duration=1.0)
    path = write_spoken_qa([pair], Path("runs/qa/train.jsonl"))
    stored = json.loads(path.read_text())
    assert stored["question_audio"] == "speech/q.wav"  # inside the folder: relative to it
    assert stored["answer_audio"] == str(tmp_path / "elsewhere" / "a.wav")  # outside: absolute
    [loaded] = load_spoken_qa(path)
    assert Path(loaded.question_audio).resolve() == tmp_path / "runs" / "qa" / "speech" / "q.wav"
    assert Path(loaded.answer_audio) == tmp_path / "elsewhere" / "a.wav"

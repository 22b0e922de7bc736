"""Offline question sets: determinism, validity of answers and options, disjoint shots, files and speech."""

import json
import re
from collections import Counter
from dataclasses import replace

import pytest

from speechbraid.corpora.questions import (
    CATEGORIES,
    MC_MIX,
    _category_members,
    build_question_sets,
    find_question_overlaps,
    make_mc_questions,
    make_sqa_questions,
)
from speechbraid.data.questions import LETTERS, SQAQuestion, load_questions
from speechbraid.errors import ConfigError, InputError

SPEAKABLE = re.compile(r"[A-Za-z][A-Za-z ,'?-]*")


@pytest.fixture(scope="module")
def mc_sets():
    return make_mc_questions(200, seed=0, n_shots=5), make_mc_questions(200, seed=0, n_shots=5)


def test_sets_are_deterministic_and_depend_on_the_seed(mc_sets):
    (a, shots_a), (b, shots_b) = mc_sets
    assert a == b and shots_a == shots_b
    assert make_mc_questions(200, seed=1, n_shots=5)[0] != a
    assert make_sqa_questions(60, seed=0) == make_sqa_questions(60, seed=0) != make_sqa_questions(60, seed=1)


def test_multiple_choice_questions_are_valid(mc_sets):
    questions, shots = mc_sets[0]
    assert Counter(q.kind for q in questions) == {k: round(200 * share) for k, share in MC_MIX.items()}
    assert len({q.id for q in questions}) == 200
    for q in [*questions, *shots]:
        assert len(q.options) == 4 and len(set(q.options)) == 4 and 0 <= q.answer < 4
        assert SPEAKABLE.fullmatch(q.question) and all(SPEAKABLE.fullmatch(o) for o in q.options)
    assert set(Counter(q.answer_letter for q in questions)) == set(LETTERS)
    members = _category_members()
    for q in questions:
        if q.kind == "category":
            category = q.question.removeprefix("Which of these is a kind of ").removesuffix("?")
            assert category in CATEGORIES and q.options[q.answer] in members[category]
            assert not any(o in members[category] for i, o in enumerate(q.options) if i != q.answer)
    # the k-shot pool is disjoint: no test question is answered by a shot's answer
    assert not {s.options[s.answer] for s in shots} & {q.options[q.answer] for q in questions}


def test_short_answer_questions_have_answers_and_hand_checked_content():
    questions = make_sqa_questions(100, seed=0)
    assert Counter(q.kind for q in questions) == {"antonym": 30, "hypernym": 30, "arithmetic": 30, "calendar": 10}
    for q in questions:
        assert q.answers and all(a.strip() for a in q.answers) and 1 <= len(q.answers[0].split()) <= 3
        assert SPEAKABLE.fullmatch(q.question)
    calendar = {q.question: q.answers for q in make_sqa_questions(38, seed=0, mix={"calendar": 1.0})}
    assert calendar["What day comes after Sunday?"] == ("Monday",)
    assert calendar["What month comes before January?"] == ("December",)
    arithmetic = {q.question: q.answers for q in make_sqa_questions(264, seed=0, mix={"arithmetic": 1.0})}
    assert arithmetic["What is three plus four?"] == ("seven", "7")
    assert arithmetic["What is six times seven?"] == ("forty-two", "42", "forty two")
    antonyms = {q.question: q.answers for q in make_sqa_questions(500, seed=0, mix={"antonym": 1.0})}
    assert "cold" in antonyms["What is the opposite of hot?"]
    with pytest.raises(ConfigError, match="only 38 spoken QA questions of kind 'calendar'"):
        make_sqa_questions(39, mix={"calendar": 1.0})


def test_overlaps_with_training_text_are_found():
    questions = [SQAQuestion("q1", "calendar", "What day comes after Monday?", ("Tuesday",))]
    texts = [("train.txt:1", "He asked: what day comes after monday? Nobody knew."), ("train.txt:2", "Monday.")]
    overlaps = find_question_overlaps(questions, texts)
    assert [(o.question_id, o.where) for o in overlaps] == [("q1", "train.txt:1")]


def test_build_writes_spoken_sets_and_resumes(tmp_path):
    paths = build_question_sets(tmp_path, n_mc=2, n_sqa=2, n_shots=1, seed=0, progress=False)
    mc = load_questions(paths["mc"], "mc")
    sqa = load_questions(paths["sqa"], "sqa")
    shots = load_questions(paths["shots"], "mc")
    assert (len(mc), len(sqa), len(shots)) == (2, 2, 1)
    assert ([replace(q, audio=None, duration=None) for q in mc], shots) == make_mc_questions(2, seed=0, n_shots=1)
    for q in [*mc, *sqa]:
        assert q.audio.endswith(f"{q.id}.wav") and q.duration > 0.3
    assert shots[0].audio is None  # k-shot examples are text only
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "speech" / "wavs").iterdir()}
    content = paths["mc"].read_text()
    build_question_sets(tmp_path, n_mc=2, n_sqa=2, n_shots=1, seed=0, progress=False)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "speech" / "wavs").iterdir()} == before
    assert paths["mc"].read_text() == content
    first = json.loads(content.splitlines()[0])
    assert first["audio"] == "speech/wavs/mc-00000.wav"  # relative to the set's directory


def test_bad_question_file_names_file_and_line(tmp_path):
    path = tmp_path / "mc.jsonl"
    good = {"id": "q", "kind": "k", "question": "Which?", "options": ["a", "b", "c", "d"], "answer": 1}
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "options": ["a", "b"]}) + "\n")
    with pytest.raises(InputError, match="needs 4 options") as info:
        load_questions(path, "mc")
    assert info.value.line == 2

"""Question records: multiple-choice and short-answer questions, and spoken QA pairs (question and answer, each
as text and audio, the answer also as speech units), with their JSONL readers and writer.

The pipelines that build them live in :mod:`speechbraid.corpora.questions` and :mod:`speechbraid.corpora.spoken_qa`;
layouts, training and evaluation read these types from here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from speechbraid.errors import InputError
from speechbraid.files import atomic_write_text, iter_jsonl

LETTERS: tuple[str, ...] = ("A", "B", "C", "D")


@dataclass(frozen=True)
class MCQuestion:
    """A four-option question; ``question`` is the part that is spoken in the S2T condition."""

    id: str
    kind: str
    question: str
    options: tuple[str, ...]
    answer: int  # index into options / LETTERS
    audio: str | None = None
    duration: float | None = None

    @property
    def answer_letter(self) -> str:
        return LETTERS[self.answer]

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class SQAQuestion:
    """A short-answer question; ``answers[0]`` is canonical, the rest are accepted aliases."""

    id: str
    kind: str
    question: str
    answers: tuple[str, ...]
    audio: str | None = None
    duration: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


Question = MCQuestion | SQAQuestion


@dataclass(frozen=True)
class SpokenQA:
    """One curated pair: the question (text + audio), accepted short answers, the full answer sentence
    (text + audio + units) and what the judge heard in the answer audio."""

    id: str
    kind: str
    split: str
    question: str
    answers: tuple[str, ...]
    answer_text: str
    question_audio: str | None = None
    question_duration: float | None = None
    answer_audio: str | None = None
    answer_duration: float | None = None
    units: tuple[int, ...] | None = None
    judge_text: str | None = None
    judge_wer: float | None = None

    def as_question(self) -> SQAQuestion:
        """The pair as an :class:`SQAQuestion` (question audio), for the prompt builders of ``evaluation``."""
        return SQAQuestion(self.id, self.kind, self.question, self.answers, self.question_audio,
                           self.question_duration)


def load_questions(path: str | Path, kind: Literal["mc", "sqa"]) -> list[Question]:
    """Read a question JSONL; relative audio paths resolve against the file's directory."""
    path = Path(path)
    if not path.is_file():
        raise InputError("question file not found", path)
    out: list[Question] = []
    for number, obj in iter_jsonl(path):
        try:
            if obj.get("audio") and not Path(obj["audio"]).is_absolute():
                obj["audio"] = str(path.parent / obj["audio"])
            if kind == "mc":
                q: Question = MCQuestion(obj["id"], obj["kind"], obj["question"], tuple(obj["options"]),
                                         int(obj["answer"]), obj.get("audio"), obj.get("duration"))
                if len(q.options) != len(LETTERS) or not 0 <= q.answer < len(LETTERS):
                    raise ValueError(f"needs {len(LETTERS)} options and an answer index below {len(LETTERS)}")
            else:
                q = SQAQuestion(obj["id"], obj["kind"], obj["question"], tuple(obj["answers"]),
                                obj.get("audio"), obj.get("duration"))
                if not q.answers or not all(a.strip() for a in q.answers):
                    raise ValueError("needs at least one non-empty answer")
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise InputError(f"bad {kind} question: {exc}", path, number) from None
        out.append(q)
    return out


def _to_json(pair: SpokenQA, base: Path) -> dict[str, Any]:
    obj = asdict(pair)
    for key in ("question_audio", "answer_audio"):
        if obj[key] is not None:
            # resolved first: a cwd-relative path is neither relative to the file's folder nor absolute, and
            # would be re-rooted at the folder on loading (regression: "runs/x/qa/runs/x/qa/speech/...")
            path = Path(obj[key]).resolve()
            obj[key] = str(path.relative_to(base)) if path.is_relative_to(base) else str(path)
    obj["answers"] = list(pair.answers)
    obj["units"] = list(pair.units) if pair.units is not None else None
    return obj


def write_spoken_qa(pairs: Sequence[SpokenQA], path: str | Path) -> Path:
    """Write pairs as JSONL (atomically); audio inside the file's folder is stored relative to it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.parent.resolve()
    atomic_write_text(path, "".join(json.dumps(_to_json(p, base), ensure_ascii=False) + "\n" for p in pairs))
    return path


def load_spoken_qa(path: str | Path) -> list[SpokenQA]:
    """Read a file written by :func:`write_spoken_qa`; relative audio paths resolve against its folder."""
    path = Path(path)
    if not path.is_file():
        raise InputError("spoken QA file not found", path)
    out = []
    for number, obj in iter_jsonl(path):
        try:
            for key in ("question_audio", "answer_audio"):
                if obj.get(key) and not Path(obj[key]).is_absolute():
                    obj[key] = str(path.parent / obj[key])
            obj["answers"] = tuple(obj["answers"])
            obj["units"] = tuple(obj["units"]) if obj.get("units") is not None else None
            pair = SpokenQA(**obj)
            if not pair.answers or not pair.answer_text.strip():
                raise ValueError("needs answers and an answer sentence")
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise InputError(f"bad spoken QA record: {exc}", path, number) from None
        out.append(pair)
    return out

"""Curated spoken QA for joint speech-text generation (METHODS.md section 2), built offline.

Steps (each resumable; a re-run skips what is on disk):

1. QA pairs: short-answer questions from :func:`make_sqa_questions` (WordNet antonyms and hypernyms,
   arithmetic, calendar; :data:`QA_MIX`) plus drug questions from the drug dictionary
   ("What kind of thing is aspirin?").
   Each short answer is rewritten into a full answer sentence by a per-kind template, short ("The opposite of
   hot is cold.") or long (10-25 words, with a WordNet gloss where one fits: "..., and cold means ..."); the
   sentence is what the model must say.
2. Splits: train/test by a hash of the normalised question text, so no question is in both.
3. Speech: questions and answer sentences synthesised by :func:`synthesize_corpus` (espeak, a voice,
   rate and pitch drawn per utterance from the engine's varied voice pool; answers optionally by another
   engine, e.g. one fixed Piper voice).
4. Filter: the judge ASR transcribes every synthesised ANSWER; pairs whose WER against the answer
   sentence exceeds ``max_wer`` (20%) are dropped - and listed, with their transcripts, in
   ``judge.jsonl`` and ``summary.json`` (nothing disappears silently).
5. Units: the kept answers' audio through a trained :class:`UnitTokenizer` (``tokenize_manifest``,
   itself resumable). Without a tokenizer the pairs are written without units (a tokenizer can be
   trained on them and the build re-run with it).

Files under ``out_dir``: ``candidates.jsonl``, ``speech/`` (WAVs + synthesis manifest), ``judge.jsonl``,
``train.jsonl`` / ``test.jsonl`` (:class:`SpokenQA` records, paths relative to the file) and ``summary.json``.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

from speechbraid.corpora.questions import make_sqa_questions, word_gloss
from speechbraid.data.normalize import normalize_for_wer
from speechbraid.data.questions import SpokenQA, SQAQuestion, write_spoken_qa
from speechbraid.data.records import Utterance
from speechbraid.errors import ConfigError, InputError
from speechbraid.files import atomic_write_text, read_append_log

MAX_ANSWER_WER = 0.2
DRUG_SHARE = 0.2  # of the candidates: drug-dictionary questions; the rest follow QA_MIX
# questions.SQA_MIX with fewer calendar questions: there are only 38 of them, and a few hundred pairs are needed
QA_MIX = {"antonym": 0.3, "hypernym": 0.35, "arithmetic": 0.3, "calendar": 0.05}
DRUG_ANSWERS = ("medicine", "drug", "medication")
SPEECH_DIR = "speech"
SPLITS = ("train", "test")


class Judge(Protocol):
    """What the filter needs from an ASR judge (``speechbraid.models.judge.WhisperJudge`` fits)."""

    def transcribe(self, wav_paths: Sequence[str | Path], batch_size: int = 8,
                   on_batch: Callable[[list[int], list[str]], None] | None = None) -> list[str]: ...


# ---------------------------------------------------------------------------------------------------------------
# Answer sentences

_DIGITS = re.compile(r"\d+")


def spell_numbers(text: str) -> str:
    """Digits as words ("10 plus 4" -> "ten plus four"): the judge writes numbers as digits, the answer
    sentences spell them, and scoring normalisation (``normalize_for_wer``) leaves both as they are."""
    from speechbraid.corpora.templates import number_words

    return _DIGITS.sub(lambda m: number_words(int(m[0])), text)



def _sentence(text: str) -> str:
    return text[0].upper() + text[1:]


_TEMPLATES: dict[str, tuple[re.Pattern[str], Callable[[re.Match[str], str], str]]] = {
    "antonym": (re.compile(r"What is the opposite of (.+)\?"), lambda m, a: f"The opposite of {m[1]} is {a}."),
    "hypernym": (re.compile(r"What is (.+) a kind of\?"), lambda m, a: f"{_sentence(m[1])} is a kind of {a}."),
    "arithmetic": (re.compile(r"What is (.+)\?"), lambda m, a: f"{_sentence(m[1])} is {a}."),
    "calendar": (re.compile(r"What (day|month) comes (after|before) (.+)\?"),
                 lambda m, a: f"The {m[1]} {m[2]} {m[3]} is {a}."),
    "drug": (re.compile(r"What kind of thing is (.+)\?"), lambda m, a: f"{_sentence(m[1])} is a {a}."),
}

# Long answers: the short sentence grown into one of LONG_ANSWER_WORDS words by a clause of the kind (a WordNet
# gloss where a plain one fits). The ESI paper measured its step saving on full-sentence responses: the longer the
# speech after the text ends, the more steps early stopping saves.
ANSWER_STYLES = ("short", "long")
LONG_ANSWER_WORDS = (10, 25)
_SUM = re.compile(r"(.+) (plus|minus|times) (.+)")


def _defined(head: str, word: str, fallback: str, parts: tuple[str, ...] = ("a", "v", "n")) -> str:
    """``head`` (a sentence without its full stop) and what ``word`` means (its gloss as one of ``parts`` of speech),
    or ``fallback`` without a fitting gloss."""
    room = LONG_ANSWER_WORDS[1] - len(head.split()) - 3  # "and X means"
    gloss = word_gloss(word, room, parts) if room > 0 else None
    return f"{head}, and {word} means {gloss}." if gloss else f"{head}, {fallback}."


def _long_sum(m: re.Match[str], a: str) -> str:
    x, op, y = _SUM.fullmatch(m[1]).groups()  # type: ignore[union-attr]
    head = f"{x} {op} {y} is {a}"
    if op == "plus":
        return f"If you start with {x} and add {y}, you get {a}, so {head}."
    if op == "minus":
        return f"If you start with {x} and take away {y}, you have {a} left, so {head}."
    return f"{_sentence(x)} groups of {y} make {a} in all, so {head}."


_LONG: dict[str, Callable[[re.Match[str], str], str]] = {
    "antonym": lambda m, a: _defined(f"The opposite of {m[1]} is {a}", a,
                                     f"so something that is not {m[1]} could well be called {a}"),
    "hypernym": lambda m, a: _defined(f"{_sentence(m[1])} is a kind of {a}", a,
                                      f"the wider group that {m[1]} belongs to", ("n",)),
    "arithmetic": _long_sum,
    "calendar": lambda m, a: (f"The {m[1]} {m[2]} {m[3]} is {a}, one of the "
                              f"{'seven days of the week' if m[1] == 'day' else 'twelve months of the year'}."),
    "drug": lambda m, a: (f"{_sentence(m[1])} is a {a}, so ask a doctor or a pharmacist before you take {m[1]} "
                          f"with any other {a}."),
}


def answer_sentence(question: SQAQuestion, style: str = "short") -> str:
    """The full answer sentence of a question, built from its canonical answer by the kind's template: ``short``
    ("The opposite of hot is cold.") or ``long`` (:data:`LONG_ANSWER_WORDS` words: "The opposite of hot is cold,
    so something that is not hot could well be called cold.")."""
    if style not in ANSWER_STYLES:
        raise ConfigError(f"unknown answer style {style!r}; choose one of {', '.join(ANSWER_STYLES)}")
    if question.kind not in _TEMPLATES:
        raise ConfigError(f"no answer template for question kind {question.kind!r} ({question.id})")
    pattern, make = _TEMPLATES[question.kind]
    match = pattern.fullmatch(question.question)
    if match is None:
        raise ConfigError(f"question {question.id!r} does not fit the {question.kind} template: {question.question!r}")
    return (make if style == "short" else _LONG[question.kind])(match, question.answers[0])


def drug_questions(seed: int = 0) -> list[SQAQuestion]:
    """"What kind of thing is X?" for the generic drug names of the drug dictionary (seeded order)."""
    from speechbraid.corpora.medical import drug_names

    out = [SQAQuestion("", "drug", f"What kind of thing is {name}?", DRUG_ANSWERS)
           for name in drug_names() if name.islower()]
    random.Random(f"{seed}:spoken-qa:drug").shuffle(out)
    return out


def make_qa_candidates(n: int, seed: int = 0, style: str = "short") -> list[SpokenQA]:
    """``n`` candidate pairs (no audio yet), ids ``sqa-NNNNN``, each with its answer sentence (``style``) and split."""
    n_drug = round(n * DRUG_SHARE)
    drugs = drug_questions(seed)
    if len(drugs) < n_drug:
        raise ConfigError(f"only {len(drugs)} drug questions can be made; {n_drug} asked")
    questions = make_sqa_questions(n - n_drug, seed=seed, mix=QA_MIX) + drugs[:n_drug]
    random.Random(f"{seed}:spoken-qa:order").shuffle(questions)
    return [SpokenQA(f"sqa-{i:05d}", q.kind, split_of(q.question), q.question, q.answers, answer_sentence(q, style))
            for i, q in enumerate(questions)]


def split_of(question: str, test_fraction: float = 0.2) -> str:
    """``train`` or ``test`` from a hash of the normalised question: the same question never lands in both."""
    digest = hashlib.blake2b(normalize_for_wer(question).encode(), digest_size=8).digest()
    return "test" if int.from_bytes(digest, "little") / 2**64 < test_fraction else "train"


# ---------------------------------------------------------------------------------------------------------------
# Files


# ---------------------------------------------------------------------------------------------------------------
# The build


def build_spoken_qa(out_dir: str | Path, n: int, units_model: Any | None, judge: str | Path | Judge, *,
                    seed: int = 0, max_wer: float = MAX_ANSWER_WER, engine: str = "espeak",
                    voices: Sequence[str] | None = None, answer_style: str = "short",
                    answer_engine: str | None = None, jobs: int | None = 1, device: str | None = None,
                    progress: bool = True) -> dict[str, Any]:
    """Build (or resume) the curated spoken QA set of ``n`` candidate pairs under ``out_dir`` (module docstring).

    ``units_model``: a :class:`UnitTokenizer` or its directory (None: no units yet). ``judge``: a Whisper
    model name/directory or an object with ``transcribe`` (:class:`Judge`). ``answer_style``: short or long
    answer sentences (:func:`answer_sentence`). Questions are spoken by ``engine`` (``voices``: its pool), answers
    by ``answer_engine`` when given (e.g. ``piper``: one fixed response voice, the voice a unit vocoder learns).
    Returns the summary also written to ``summary.json``: candidates, kept, ``kept_fraction``, candidates and kept
    pairs per question kind, the dropped pairs, per-split counts.
    """
    from speechbraid.metrics.asr import wer
    from speechbraid.synth import synthesize_corpus

    if n < 2:
        raise ConfigError(f"spoken QA needs at least 2 candidate pairs, got {n}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    candidates = make_qa_candidates(n, seed, answer_style)
    write_spoken_qa(candidates, out / "candidates.jsonl")

    records = [Utterance(id=f"{p.id}-{role}", text=text, domain="spoken_qa")
               for p in candidates for role, text in (("q", p.question), ("a", p.answer_text))]
    engine_for = {f"{p.id}-a": answer_engine for p in candidates} if answer_engine else None
    spoken = {r.id: r for r in synthesize_corpus(records, out / SPEECH_DIR, engine, seed=seed, jobs=jobs,
                                                 voices=voices, engine_for=engine_for, progress=progress)}
    pairs = [replace(p, question_audio=spoken[f"{p.id}-q"].audio, question_duration=spoken[f"{p.id}-q"].duration,
                     answer_audio=spoken[f"{p.id}-a"].audio, answer_duration=spoken[f"{p.id}-a"].duration)
             for p in candidates]

    heard = _judge_answers(pairs, out / "judge.jsonl", judge, device, progress)
    judged = [replace(p, judge_text=heard[p.id], judge_wer=wer([p.answer_text], [spell_numbers(heard[p.id])]).rate)
              for p in pairs]
    kept = [p for p in judged if p.judge_wer is not None and p.judge_wer <= max_wer]
    dropped = [p for p in judged if p not in kept]
    if not kept:
        raise InputError(f"the judge rejected every synthesised answer (WER > {max_wer:.0%}); see judge.jsonl",
                         out / "judge.jsonl")
    units_stats = None
    if units_model is not None:
        kept, units_stats = _with_units(kept, units_model, out, progress)
    counts = {}
    for split in SPLITS:
        chosen = [p for p in kept if p.split == split]
        write_spoken_qa(chosen, out / f"{split}.jsonl")
        counts[split] = len(chosen)
    summary = {
        "candidates": len(candidates), "kept": len(kept), "kept_fraction": round(len(kept) / len(candidates), 4),
        "max_wer": max_wer, "splits": counts, "units": units_stats,
        "kinds": {k: {"candidates": sum(p.kind == k for p in candidates), "kept": sum(p.kind == k for p in kept)}
                  for k in sorted({p.kind for p in candidates})},
        "dropped": [{"id": p.id, "answer": p.answer_text, "heard": p.judge_text, "wer": round(p.judge_wer or 0, 4)}
                    for p in dropped],
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _judge_answers(pairs: Sequence[SpokenQA], log: Path, judge: str | Path | Judge, device: str | None,
                   progress: bool) -> dict[str, str]:
    """Judge transcripts of every answer's audio; appended to ``log`` per batch, so a re-run resumes."""
    heard: dict[str, str] = {}
    answers = {p.id: p.answer_text for p in pairs}
    for number, obj in read_append_log(log):
        try:
            if answers.get(obj["id"]) == obj["answer"]:  # another n or seed gives ids other sentences
                heard[obj["id"]] = obj["text"]
        except (KeyError, TypeError):
            raise InputError("corrupt judge log line; delete the file to judge again", log, number) from None
    todo = [p for p in pairs if p.id not in heard]
    if not todo:
        return heard
    if isinstance(judge, str | Path):
        from speechbraid.models.judge import WhisperJudge

        judge = WhisperJudge(judge, device)
    bar = tqdm(total=len(pairs), initial=len(pairs) - len(todo), desc="judge answers", unit="utt",
               disable=not progress)
    with log.open("a", encoding="utf-8") as handle:
        def on_batch(indices: list[int], texts: list[str]) -> None:
            for i, text in zip(indices, texts, strict=True):
                heard[todo[i].id] = text
                handle.write(json.dumps({"id": todo[i].id, "answer": todo[i].answer_text, "text": text},
                                        ensure_ascii=False) + "\n")
            handle.flush()
            bar.update(len(indices))

        texts = judge.transcribe([str(p.answer_audio) for p in todo], on_batch=on_batch)
        missed = [i for i, p in enumerate(todo) if p.id not in heard]  # a judge that reports no batches
        if missed:
            on_batch(missed, [texts[i] for i in missed])
    bar.close()
    return heard


def _with_units(pairs: Sequence[SpokenQA], units_model: Any, out: Path,
                progress: bool) -> tuple[list[SpokenQA], dict[str, Any]]:
    from speechbraid.data.manifest import read_manifest, write_manifest
    from speechbraid.units.tokenizer import UnitTokenizer, tokenize_manifest, unit_stats

    tokenizer = units_model if isinstance(units_model, UnitTokenizer) else UnitTokenizer.load(units_model)
    config = tokenizer.config
    tag = f"{config.encoder}-{config.n_units}-{config.rate_hz:g}hz"
    source, target = out / "answers.jsonl", out / f"answers.units-{tag}.jsonl"
    wanted = [(p.id, p.answer_text) for p in pairs]
    if not target.is_file() or [(r.id, r.text) for r in read_manifest(target)] != wanted:
        target.unlink(missing_ok=True)
        write_manifest([Utterance(id=p.id, text=p.answer_text, audio=p.answer_audio, duration=p.answer_duration)
                        for p in pairs], source)
        tokenize_manifest(source, target, tokenizer, progress=progress)
    units = {r.id: r.units for r in read_manifest(target)}
    missing = [p.id for p in pairs if units.get(p.id) is None]
    if missing:
        raise InputError(f"{len(missing)} kept pair(s) have no units (e.g. {missing[0]!r}); delete the file "
                         "to tokenize again", target)
    with_units = [replace(p, units=tuple(units[p.id])) for p in pairs]
    return with_units, {"tokenizer": tag, **unit_stats([p.units for p in with_units], config.n_units)}

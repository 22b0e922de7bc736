"""Offline question sets for evaluation beyond ASR (METHODS.md section 1): multiple choice and spoken QA.

Two kinds of set, both seeded and deterministic (same seed -> byte-identical JSONL):

* **Multiple choice** (MMLU-style, four options A-D), :class:`MCQuestion`:

  - ``definition``: "Which noun means a large natural stream of water?" - the answer is a familiar
    WordNet lemma whose sense has that gloss; distractors are familiar lemmas of the same part of
    speech that are not synonyms of the answer;
  - ``category``: "Which of these is a kind of bird?" - the answer descends from the category's
    first WordNet sense (hyponym closure), distractors descend from other categories and from
    none of the senses of this one (so "orange" is never a wrong answer to "a kind of fruit");
  - ``drug``: "Which of these is a medicine?" - a drug name of :func:`medical.drug_names` against
    familiar WordNet nouns that are not drugs;
  - ``bank``: "Which of these can you open at a bank?" - an account type of the banking corpus
    against medical conditions, dosage forms and category nouns.

* **Short-answer spoken QA** (LLaMA-QA / TriviaQA / WebQ style, 1-3 word answers),
  :class:`SQAQuestion` with the canonical answer first and its aliases after it:

  - ``antonym``: "What is the opposite of hot?" -> every WordNet antonym of the word, any sense;
  - ``hypernym``: "What is a robin a kind of?" -> the category ("bird") plus every lemma on the
    hypernym path between the word and the category ("thrush", ...);
  - ``arithmetic``: "What is three plus four?" -> "seven" / "7" (plus, minus, times; small numbers);
  - ``calendar``: "What day comes after Monday?" -> "Tuesday" (days and months, after and before).

"Familiar" means the WordNet semantic-concordance tag count (``cntlist.rev``) of the sense (for
definitions) or of the lemma (elsewhere) reaches :data:`MIN_SENSE_COUNT` / :data:`MIN_LEMMA_COUNT`;
untagged rare words make questions nobody could answer. Every surface form is lower-case letters,
spaces, hyphens, apostrophes and commas so espeak reads it as written. Multiple-choice k-shot
examples come from a separate pool whose answers never answer a test question.

The questions are evaluation data only: :func:`question_texts` and :func:`find_question_overlaps`
let experiment code check that no question text occurs in its training text.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from speechbraid.corpora.banking import ACCOUNT_TYPES
from speechbraid.corpora.clean import sentence_key
from speechbraid.corpora.general import WORDNET_DIR
from speechbraid.corpora.medical import CONDITIONS, drug_names
from speechbraid.corpora.templates import number_words
from speechbraid.data.questions import MCQuestion, Question, SQAQuestion
from speechbraid.data.records import Utterance
from speechbraid.errors import ConfigError, InputError
from speechbraid.files import write_jsonl

MIN_SENSE_COUNT = 3
MIN_LEMMA_COUNT = 3
MIN_MEMBER_SENSE_COUNT = 1

MC_FILE = "mc.jsonl"
SHOTS_FILE = "mc_shots.jsonl"
SQA_FILE = "sqa.jsonl"
SPEECH_DIR = "speech"

# Shares of each set; a kind short of candidates raises (never silently yields a smaller set).
MC_MIX: dict[str, float] = {"definition": 0.5, "category": 0.3, "drug": 0.1, "bank": 0.1}
SQA_MIX: dict[str, float] = {"antonym": 0.3, "hypernym": 0.3, "arithmetic": 0.3, "calendar": 0.1}

# Categories for "a kind of X" questions: each lemma's FIRST (most frequent) noun sense.
CATEGORIES: tuple[str, ...] = (
    "fruit", "bird", "fish", "tree", "flower", "vegetable", "tool", "vehicle", "dog", "insect", "mammal",
    "disease", "weapon", "furniture", "metal", "sport", "beverage", "building", "clothing", "container",
)
_MASS_CATEGORIES = frozenset({"sport", "beverage", "metal", "disease"})  # "What is golf a kind of?", no article
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")
_DOSAGE_FORMS = ("tablet", "capsule", "inhaler", "patch", "syrup", "cream")
_BANK_ANSWERS = tuple(a for a in ACCOUNT_TYPES if a.endswith("account") or a == "certificate of deposit")

_WORD = re.compile(r"[a-z]{3,12}")
_PLURAL = re.compile(r"[^su]s$")  # "clothes", "pants": no "a" in front of them, and often odd as options
_GLOSS = re.compile(r"[a-z][a-z ,'-]*[a-z]")
_POS_NAME = {"n": "noun", "v": "verb", "a": "adjective"}
_SS_TYPE = {"n": 1, "v": 2, "a": 3}  # sense-key numbers of the synset types we use
_ADJ_MARKER = re.compile(r"\((?:a|p|ip)\)$")


# ---------------------------------------------------------------------------------------------------------------
# WordNet 3.0 database files (package wordnet-base), read directly: data.<pos> lines are
# ``offset lexfile ss_type w_cnt (word lex_id)* p_cnt (symbol offset pos src_tgt)* [frames] | gloss``.


@dataclass(frozen=True)
class _Synset:
    key: tuple[str, str]  # (pos, offset); satellites 's' are filed under 'a' like their data file
    lexfile: int
    words: tuple[tuple[str, int], ...]  # (lemma, lex_id), lemma lower-case with spaces
    pointers: tuple[tuple[str, tuple[str, str], int, int], ...]  # (symbol, target key, source word, target word)
    gloss: str
    satellite: bool


@dataclass(frozen=True)
class _WordNet:
    synsets: dict[tuple[str, str], _Synset]
    first_sense: dict[tuple[str, str], tuple[str, str]]  # (pos, lemma) -> key of its most frequent sense
    sense_count: dict[str, int]  # sense key -> semantic concordance tag count
    lemma_count: dict[str, int]  # lemma -> tag count summed over its senses

    def sense_key_count(self, lemma: str, synset: _Synset, lex_id: int) -> int:
        pos = synset.key[0]
        key = f"{lemma.replace(' ', '_')}%{_SS_TYPE[pos]}:{synset.lexfile:02d}:{lex_id:02d}::"
        return self.sense_count.get(key, 0)

    def familiar(self, lemma: str) -> bool:
        return bool(_WORD.fullmatch(lemma)) and self.lemma_count.get(lemma, 0) >= MIN_LEMMA_COUNT

    def descendants(self, key: tuple[str, str]) -> dict[tuple[str, str], tuple[tuple[str, str], ...]]:
        """Every hyponym (not instance) below ``key``, with the path from ``key`` down to it (exclusive)."""
        out: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {}
        stack = [(key, ())]
        while stack:
            current, path = stack.pop()
            for symbol, target, _, _ in self.synsets[current].pointers:
                if symbol == "~" and target not in out:
                    out[target] = path
                    stack.append((target, (*path, target)))
        return out


def _clean_lemma(raw: str) -> str:
    return _ADJ_MARKER.sub("", raw).replace("_", " ").lower()


@functools.lru_cache(maxsize=1)
def _wordnet(root: Path = WORDNET_DIR) -> _WordNet:
    synsets: dict[tuple[str, str], _Synset] = {}
    for pos, name in (("n", "noun"), ("v", "verb"), ("a", "adj")):
        for line in _lines(root / f"data.{name}"):
            if line.startswith("  "):
                continue  # licence header
            fields, _, gloss = line.partition("|")
            parts = fields.split()
            n_words = int(parts[3], 16)
            words = tuple((_clean_lemma(parts[4 + 2 * i]), int(parts[5 + 2 * i], 16)) for i in range(n_words))
            at = 4 + 2 * n_words
            n_ptr = int(parts[at])
            pointers = []
            for i in range(n_ptr):
                symbol, offset, target_pos, src_tgt = parts[at + 1 + 4 * i: at + 5 + 4 * i]
                target_pos = "a" if target_pos == "s" else target_pos
                if target_pos in _SS_TYPE:
                    pointers.append((symbol, (target_pos, offset), int(src_tgt[:2], 16), int(src_tgt[2:], 16)))
            synsets[(pos, parts[0])] = _Synset((pos, parts[0]), int(parts[1]), words, tuple(pointers),
                                               gloss.strip(), parts[2] == "s")
    first_sense: dict[tuple[str, str], tuple[str, str]] = {}
    for pos, name in (("n", "noun"), ("v", "verb"), ("a", "adj")):
        for line in _lines(root / f"index.{name}"):
            if line.startswith("  "):
                continue
            parts = line.split()
            first = parts[4 + int(parts[3]) + 2]
            first_sense[(pos, parts[0].replace("_", " "))] = (pos, first)
    sense_count: dict[str, int] = {}
    lemma_count: dict[str, int] = {}
    for line in _lines(root / "cntlist.rev"):
        key, _, count = line.split()
        sense_count[key] = int(count)
        lemma = key.split("%")[0].replace("_", " ")
        lemma_count[lemma] = lemma_count.get(lemma, 0) + int(count)
    return _WordNet(synsets, first_sense, sense_count, lemma_count)


def _lines(path: Path) -> Iterable[str]:
    if not path.is_file():
        raise InputError("WordNet file not found (install the Debian package 'wordnet-base')", path)
    with path.open(encoding="utf-8", errors="replace") as handle:
        yield from handle


@functools.lru_cache(maxsize=1)
def _category_members() -> dict[str, dict[str, tuple[str, ...]]]:
    """category -> familiar member lemma -> hypernym lemmas from the member's parent up to the category."""
    wn = _wordnet()
    out: dict[str, dict[str, tuple[str, ...]]] = {}
    for category in CATEGORIES:
        top = wn.first_sense[("n", category)]
        members: dict[str, tuple[str, ...]] = {}
        for key, path in sorted(wn.descendants(top).items()):
            # nearest hypernym first: path runs from just below the category down to the parent
            between = tuple(dict.fromkeys(w for k in reversed(path) for w, _ in wn.synsets[k].words))
            for lemma, lex_id in wn.synsets[key].words:
                # the member sense itself must be attested: "nest" is a set of tables only in the dictionary
                if (wn.familiar(lemma) and lemma != category and not _PLURAL.search(lemma)
                        and wn.sense_key_count(lemma, wn.synsets[key], lex_id) >= MIN_MEMBER_SENSE_COUNT):
                    members[lemma] = tuple(dict.fromkeys((*members.get(lemma, ()), *between)))
        out[category] = members
    return out


# ---------------------------------------------------------------------------------------------------------------
# Candidate generators: each returns every question of its kind it can make, in a seed-determined order.
# Ids are assigned later; the returned questions carry id "".


def _article(noun: str) -> str:
    return "an" if noun[0] in "aeiou" else "a"


def _mc(kind: str, question: str, answer: str, distractors: Sequence[str], rng: random.Random) -> MCQuestion:
    options = [answer, *distractors]
    rng.shuffle(options)
    return MCQuestion("", kind, question, tuple(options), options.index(answer))


def _pick_distractors(pool: Sequence[str], rng: random.Random, exclude: set[str], n: int = 3) -> list[str]:
    picked: list[str] = []
    while len(picked) < n:
        choice = pool[rng.randrange(len(pool))]
        if choice not in exclude and choice not in picked:
            picked.append(choice)
    return picked


def _definition_questions(rng: random.Random) -> list[MCQuestion]:
    wn = _wordnet()
    by_pos: dict[str, list[str]] = {}
    for (pos, lemma) in sorted(wn.first_sense):
        if wn.familiar(lemma):
            by_pos.setdefault(pos, []).append(lemma)
    out: list[MCQuestion] = []
    seen: set[str] = set()
    for key in sorted(wn.synsets):
        synset = wn.synsets[key]
        gloss = synset.gloss.split(";")[0].strip()
        if synset.satellite or not _GLOSS.fullmatch(gloss) or not 3 <= len(gloss.split()) <= 14:
            continue
        lemmas = {w for w, _ in synset.words}
        for lemma, lex_id in synset.words:
            if (lemma in seen or not _WORD.fullmatch(lemma)
                    or wn.sense_key_count(lemma, synset, lex_id) < MIN_SENSE_COUNT
                    or any(lemma in g or g in lemma for g in gloss.split() if len(g) > 3)):
                continue
            seen.add(lemma)
            distractors = _pick_distractors(by_pos[key[0]], rng, lemmas)
            out.append(_mc("definition", f"Which {_POS_NAME[key[0]]} means {gloss}?", lemma, distractors, rng))
            break  # one question per synset
    rng.shuffle(out)
    return out


def _category_questions(rng: random.Random) -> list[MCQuestion]:
    members = _category_members()
    out: list[MCQuestion] = []
    for category in CATEGORIES:
        outside = sorted({m for c, ms in members.items() if c != category for m in ms} - set(members[category]))
        for lemma in sorted(members[category]):
            distractors = _pick_distractors(outside, rng, set())
            out.append(_mc("category", f"Which of these is a kind of {category}?", lemma, distractors, rng))
    rng.shuffle(out)
    return out


def _drug_questions(rng: random.Random) -> list[MCQuestion]:
    members = _category_members()
    wn = _wordnet()
    drug_words = set(wn.descendants(wn.first_sense[("n", "drug")]))
    drug_lemmas = {w for k in drug_words for w, _ in wn.synsets[k].words} | {d.lower() for d in drug_names()}
    pool = sorted({m for c, ms in members.items() if c not in ("disease",) for m in ms} - drug_lemmas)
    out = [_mc("drug", "Which of these is a medicine?", name, _pick_distractors(pool, rng, set()), rng)
           for name in drug_names() if name.islower()]  # generic names; brand names are capitalised
    rng.shuffle(out)
    return out


def _bank_questions(rng: random.Random) -> list[MCQuestion]:
    members = _category_members()
    pool = sorted({*CONDITIONS, *_DOSAGE_FORMS, *(m for ms in members.values() for m in ms)} - set(ACCOUNT_TYPES))
    out = []
    for answer in _BANK_ANSWERS:
        for _ in range(40):  # the same account type with different distractors
            out.append(_mc("bank", "Which of these can you open at a bank?", answer,
                           _pick_distractors(pool, rng, set()), rng))
    rng.shuffle(out)
    return out


def _antonym_questions(rng: random.Random) -> list[SQAQuestion]:
    wn = _wordnet()
    antonyms: dict[str, set[str]] = {}
    for synset in wn.synsets.values():
        for symbol, target, src, tgt in synset.pointers:
            if symbol != "!" or not src or not tgt:
                continue
            word, word_id = synset.words[src - 1]
            other, other_id = wn.synsets[target].words[tgt - 1]
            if (wn.familiar(word) and wn.familiar(other)
                    and wn.sense_key_count(word, synset, word_id) >= MIN_SENSE_COUNT
                    and wn.sense_key_count(other, wn.synsets[target], other_id) >= MIN_SENSE_COUNT):
                antonyms.setdefault(word, set()).add(other)
    out = [SQAQuestion("", "antonym", f"What is the opposite of {word}?", tuple(sorted(antonyms[word])))
           for word in sorted(antonyms)]
    rng.shuffle(out)
    return out


def _hypernym_questions(rng: random.Random) -> list[SQAQuestion]:
    members = _category_members()
    words = sorted({m for ms in members.values() for m in ms})
    out = []
    for lemma in words:
        # a word in several categories ("orange") has all of them, and all their paths, as right answers
        categories = [c for c in CATEGORIES if lemma in members[c]]
        between = [b for c in categories for b in members[c][lemma]]
        answers = tuple(b for b in dict.fromkeys([*categories, *between]) if b != lemma)
        subject = lemma if set(categories) & _MASS_CATEGORIES else f"{_article(lemma)} {lemma}"
        out.append(SQAQuestion("", "hypernym", f"What is {subject} a kind of?", answers))
    rng.shuffle(out)
    return out


def _number_answers(value: int) -> tuple[str, ...]:
    words = number_words(value)
    return (words, str(value)) + ((words.replace("-", " "),) if "-" in words else ())


def _arithmetic_questions(rng: random.Random) -> list[SQAQuestion]:
    out = []
    for a in range(1, 11):
        for b in range(1, 11):
            out.append(SQAQuestion("", "arithmetic", f"What is {number_words(a)} plus {number_words(b)}?",
                                   _number_answers(a + b)))
            out.append(SQAQuestion("", "arithmetic", f"What is {number_words(a + b)} minus {number_words(b)}?",
                                   _number_answers(a)))
            if a <= 9 and b <= 9 and a > 1 and b > 1:
                out.append(SQAQuestion("", "arithmetic", f"What is {number_words(a)} times {number_words(b)}?",
                                       _number_answers(a * b)))
    unique = list({q.question: q for q in out}.values())
    rng.shuffle(unique)
    return unique


def _calendar_questions(rng: random.Random) -> list[SQAQuestion]:
    out = []
    for unit, names in (("day", _DAYS), ("month", _MONTHS)):
        for i, name in enumerate(names):
            out.append(SQAQuestion("", "calendar", f"What {unit} comes after {name}?", (names[(i + 1) % len(names)],)))
            out.append(SQAQuestion("", "calendar", f"What {unit} comes before {name}?", (names[i - 1],)))
    rng.shuffle(out)
    return out


_MC_KINDS: dict[str, Callable[[random.Random], list[MCQuestion]]] = {
    "definition": _definition_questions, "category": _category_questions, "drug": _drug_questions,
    "bank": _bank_questions,
}
_SQA_KINDS: dict[str, Callable[[random.Random], list[SQAQuestion]]] = {
    "antonym": _antonym_questions, "hypernym": _hypernym_questions, "arithmetic": _arithmetic_questions,
    "calendar": _calendar_questions,
}


def _quotas(n: int, mix: dict[str, float]) -> dict[str, int]:
    """Largest-remainder split of ``n`` over the mix (deterministic, sums to ``n``)."""
    raw = {k: n * share for k, share in mix.items()}
    quotas = {k: int(v) for k, v in raw.items()}
    for k in sorted(raw, key=lambda k: (quotas[k] - raw[k], k))[: n - sum(quotas.values())]:
        quotas[k] += 1
    return quotas


def _answer_key(q: Question) -> str:
    return q.options[q.answer] if isinstance(q, MCQuestion) else q.answers[0]


def question_capacity() -> dict[str, int]:
    """How many distinct questions of each kind the offline sources yield (k-shot pool included)."""
    rng = random.Random(0)
    return {kind: len(make(rng)) for kind, make in {**_MC_KINDS, **_SQA_KINDS}.items()}


def make_mc_questions(n: int, *, seed: int = 0, n_shots: int = 5,
                      mix: dict[str, float] | None = None) -> tuple[list[MCQuestion], list[MCQuestion]]:
    """``(questions, shots)``: ``n`` test questions and a disjoint pool of ``n_shots`` k-shot examples.

    Shots come from the same kinds (one per kind in turn); no test question has a shot's answer or
    question text with the same answer, so a k-shot prompt never gives a test answer away.
    """
    mix = mix or MC_MIX
    candidates = {kind: _MC_KINDS[kind](random.Random(f"{seed}:mc:{kind}")) for kind in mix}
    shots: list[MCQuestion] = []
    kinds = sorted(candidates)
    while len(shots) < n_shots:
        pool = candidates[kinds[len(shots) % len(kinds)]]
        shots.append(pool.pop(0))
    used = {_answer_key(s) for s in shots}
    questions: list[MCQuestion] = []
    for kind, quota in _quotas(n, mix).items():
        pool = [q for q in candidates[kind] if _answer_key(q) not in used]
        if len(pool) < quota:
            raise ConfigError(f"only {len(pool)} multiple-choice questions of kind '{kind}' can be made; "
                              f"{quota} asked (lower n_mc or change the mix)")
        questions += pool[:quota]
    questions = _ordered(questions, seed, "mc")
    return ([replace(q, id=f"mc-{i:05d}") for i, q in enumerate(questions)],
            [replace(s, id=f"shot-{i:03d}") for i, s in enumerate(shots)])


def word_gloss(lemma: str, max_words: int = 14, parts: Sequence[str] = ("a", "v", "n")) -> str | None:
    """The gloss of ``lemma``'s most frequent sense in the first of the parts of speech ``parts`` (``a``djective,
    ``v``erb, ``n``oun) that has one, up to its first ";" (examples follow), when that is plain lower-case text of at
    most ``max_words`` words that espeak and Piper read as written; None otherwise ("a member of the genus Canis
    (probably ...)")."""
    wn = _wordnet()
    for pos in parts:
        key = wn.first_sense.get((pos, lemma))
        if key is not None:
            gloss = wn.synsets[key].gloss.split(";")[0].strip()
            fits = _GLOSS.fullmatch(gloss) is not None and len(gloss.split()) <= max_words
            return gloss if fits else None
    return None


def make_sqa_questions(n: int, *, seed: int = 0, mix: dict[str, float] | None = None) -> list[SQAQuestion]:
    """``n`` short-answer questions split over the kinds by ``mix`` (default :data:`SQA_MIX`)."""
    mix = mix or SQA_MIX
    questions: list[SQAQuestion] = []
    for kind, quota in _quotas(n, mix).items():
        pool = _SQA_KINDS[kind](random.Random(f"{seed}:sqa:{kind}"))
        if len(pool) < quota:
            raise ConfigError(f"only {len(pool)} spoken QA questions of kind '{kind}' can be made; "
                              f"{quota} asked (lower n_sqa or change the mix)")
        questions += pool[:quota]
    return [replace(q, id=f"sqa-{i:05d}") for i, q in enumerate(_ordered(questions, seed, "sqa"))]


def _ordered(questions: list[Any], seed: int, name: str) -> list[Any]:
    # interleave the kinds so any prefix of the set is a fair sample of all of them
    random.Random(f"{seed}:{name}:order").shuffle(questions)
    return questions


# ---------------------------------------------------------------------------------------------------------------
# Disjointness with training text.


def question_texts(questions: Iterable[Question]) -> list[str]:
    """Every text a question shows the model: the question and, for multiple choice, its options."""
    out: list[str] = []
    for q in questions:
        out.append(q.question)
        if isinstance(q, MCQuestion):
            out.extend(q.options)
    return out


@dataclass(frozen=True)
class Overlap:
    question_id: str
    where: str  # "file:line" or whatever label the caller gave the training text


def find_question_overlaps(questions: Iterable[Question], texts: Iterable[tuple[str, str]]) -> list[Overlap]:
    """Questions whose text occurs inside a training text (``(where, text)`` pairs), ignoring case and punctuation.

    Only the question sentence is checked, not single-word options: those are ordinary words any
    training text may contain.
    """
    keys = {f" {sentence_key(q.question)} ": q.id for q in questions}
    out = []
    for where, text in texts:
        padded = f" {sentence_key(text)} "
        out += [Overlap(qid, where) for key, qid in keys.items() if key in padded]
    return out


# ---------------------------------------------------------------------------------------------------------------
# Files.


def build_question_sets(out_dir: str | Path, *, n_mc: int, n_sqa: int, seed: int = 0, n_shots: int = 5,
                        synth: bool = True, engine: str = "espeak", jobs: int | None = 1,
                        progress: bool = True) -> dict[str, Path]:
    """Write ``mc.jsonl``, ``mc_shots.jsonl`` and ``sqa.jsonl`` under ``out_dir``; speak every question.

    With ``synth`` each test question is synthesised once (``speech/``, via :func:`synthesize_corpus`,
    seeded, so a re-run skips what is done) and its record gets ``audio`` (relative to ``out_dir``) and
    ``duration``. Shots are text only: the k-shot context is always text. Returns the written paths.
    """
    from speechbraid.synth import synthesize_corpus

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mc, shots = make_mc_questions(n_mc, seed=seed, n_shots=n_shots)
    sqa = make_sqa_questions(n_sqa, seed=seed)
    if synth:
        records = [Utterance(id=q.id, text=q.question, domain="questions") for q in [*mc, *sqa]]
        spoken = synthesize_corpus(records, out / SPEECH_DIR, engine, seed=seed, jobs=jobs, progress=progress)
        timing = {r.id: (f"{SPEECH_DIR}/{Path(r.audio).relative_to(out / SPEECH_DIR)}", r.duration)
                  for r in spoken if r.audio}
        mc = [replace(q, audio=timing[q.id][0], duration=timing[q.id][1]) for q in mc]
        sqa = [replace(q, audio=timing[q.id][0], duration=timing[q.id][1]) for q in sqa]
    paths = {"mc": out / MC_FILE, "shots": out / SHOTS_FILE, "sqa": out / SQA_FILE}
    for name, items in (("mc", mc), ("shots", shots), ("sqa", sqa)):
        write_jsonl(paths[name], (q.to_dict() for q in items))
    return paths



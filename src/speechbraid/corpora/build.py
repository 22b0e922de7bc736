"""``build_default_corpus``: the seeded, offline default corpus (general + medical + banking).

Layout under ``out_dir``::

    text/train.jsonl|.txt     transcripts of the speech training split (general + medical + banking; its further
                              sentences, ``SizeSpec.more_train``, are drawn last, so dev/test never depend on them)
    text/dev.jsonl|.txt       transcripts of the dev split (own held-out entities)
    text/test.jsonl|.txt      transcripts of the test split (own held-out entities)
    text/domain.jsonl|.txt    text-only domain corpus (medical + banking): half its sentences use training
                              entities, half the TEST entities -- the domain text without audio that JSTIP
                              adapts with brings the vocabulary the speech training pairs lack (METHODS.md s.1)
    text/general_lm.jsonl|.txt  general text for LM pretraining (no sentence shared with speech splits)
    text/done.json            marks the text stage finished (size, seed)
    speech/<split>/manifest.jsonl  synthesised audio with word alignments (from speechbraid.synth): espeak-ng
                              (112 voices), and a share of each split and domain (``piper_share``, default 25 %)
                              spoken by the neural Piper voice en_US-joe-medium; ``speaker``/``source`` name the engine
    summary.json              :class:`CorpusSummary`

Re-running skips finished steps: the text stage when ``text/done.json`` matches the size, seed, format and
Piper share (any other value is refused, so speech of two settings is never mixed), a speech split when its
``manifest.jsonl`` exists.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from random import Random

from tqdm import tqdm

from speechbraid.corpora.banking import BANKING_FRAMES, banking_fillers, brand_stems, institution_stems
from speechbraid.corpora.clean import sentence_key
from speechbraid.corpora.general import general_sentences
from speechbraid.corpora.medical import MEDICAL_FRAMES, drug_names, medical_fillers
from speechbraid.corpora.splits import partition_names
from speechbraid.corpora.templates import Filled, SlotFiller, fill
from speechbraid.data.manifest import read_manifest, write_manifest
from speechbraid.data.records import Utterance, voice_family
from speechbraid.errors import ConfigError, InputError

SPEECH_SPLITS = ("train", "dev", "test")
DOMAINS = ("general", "medical", "banking")
TEXT_CORPORA = ("train", "dev", "test", "domain", "general_lm")
# Bumped whenever the same size and seed would give other text; a corpus built by an older version is refused
# rather than silently mixed with the new one (2: the domain text holds the test entities; 3: a share of the
# speech is spoken by Piper; 4: more training speech, drawn after every other corpus).
CORPUS_FORMAT = 4
# Share of each speech split (per domain) spoken by Piper: a natural neural voice beside espeak-ng's 112 robotic
# ones, at ~20x espeak's CPU cost per second of audio, so a quarter keeps the small build within a minute.
DEFAULT_PIPER_SHARE = 0.25


@dataclass(frozen=True)
class SizeSpec:
    """Sentences per domain in each speech split, per domain in the domain text, and general LM text.

    ``more_train`` further training sentences per domain are drawn after every other corpus, so how much training
    speech a size has never changes its dev/test sentences or its text corpora (held-out figures stay comparable).
    """

    speech: dict[str, int]
    domain_text: int
    general_lm: int | None  # None: every general sentence not used for speech
    more_train: int = 0


SIZES: dict[str, SizeSpec] = {
    "tiny": SizeSpec({"train": 8, "dev": 2, "test": 3}, domain_text=40, general_lm=200, more_train=2),
    # 2,000 training sentences per domain (~6 h of speech): with 500 (1.5 h) the adapter learns the training
    # sentences by heart (README, learning curves).
    "small": SizeSpec({"train": 500, "dev": 50, "test": 100}, domain_text=2500, general_lm=20000, more_train=1500),
    "medium": SizeSpec({"train": 5000, "dev": 300, "test": 500}, domain_text=20000, general_lm=None),
}
DEV_FRACTION = 0.06
TEST_FRACTION = 0.12


@dataclass
class SplitStats:
    """Counts for one (corpus, domain) cell of the summary table."""

    corpus: str
    domain: str
    sentences: int = 0
    audio_hours: float | None = None
    entities: int = 0
    distinct_entities: int = 0
    entity_types: dict[str, int] = field(default_factory=dict)
    voices: dict[str, int] = field(default_factory=dict)  # utterances per voice family (speech corpora only)


@dataclass
class CorpusSummary:
    """What a built corpus holds, per corpus (speech split or text corpus) and domain."""

    out_dir: str
    rows: list[SplitStats]
    size: str | None = None
    seed: int | None = None
    build_seconds: float | None = None

    def format(self) -> str:
        head = (f"{'corpus':<18}{'domain':<10}{'sentences':>10}{'audio h':>9}{'entities':>10}{'distinct':>10}"
                f"  {'voices':<22}types")
        lines = [f"corpus at {self.out_dir} (size={self.size}, seed={self.seed})", head, "-" * len(head)]
        for r in self.rows:
            hours = "-" if r.audio_hours is None else f"{r.audio_hours:.3f}"
            types = ", ".join(f"{k} {v}" for k, v in sorted(r.entity_types.items()))
            counts = f"{r.sentences:>10}{hours:>9}{r.entities:>10}{r.distinct_entities:>10}"
            voices = ", ".join(f"{k} {v}" for k, v in sorted(r.voices.items())) or "-"
            lines.append(f"{r.corpus:<18}{r.domain:<10}{counts}  {voices:<22}{types}")
        if self.build_seconds is not None:
            lines.append(f"build time: {self.build_seconds:.1f} s")
        return "\n".join(lines)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> CorpusSummary:
        try:
            obj = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls(**{**obj, "rows": [SplitStats(**r) for r in obj["rows"]]})
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise InputError(f"not a corpus summary: {exc}", path) from None


def build_default_corpus(
    out_dir: str | Path,
    *,
    size: str = "small",
    seed: int = 0,
    synth: bool = True,
    engine: str = "espeak",
    piper_share: float = DEFAULT_PIPER_SHARE,
    jobs: int | None = None,
    progress: bool = True,
) -> CorpusSummary:
    """Build (or finish building) the default corpus under ``out_dir`` and return its summary.

    ``engine`` speaks every utterance except the ``piper_share`` of each speech split and domain that Piper
    speaks (:func:`piper_ids`; 0 leaves out Piper, 1 is Piper only).
    """
    if size not in SIZES:
        raise ConfigError(f"unknown corpus size {size!r}; choose one of {', '.join(SIZES)}")
    if not 0.0 <= piper_share <= 1.0:
        raise ConfigError(f"piper_share must be between 0 and 1, got {piper_share}")
    started = time.perf_counter()
    out = Path(out_dir)
    write_text_corpora(out, size=size, seed=seed, piper_share=piper_share, progress=progress)
    if synth:
        # Imported here: the synthesis stack (TTS engines) is only needed when audio is wanted.
        from speechbraid.synth.runner import synthesize_corpus

        for split in SPEECH_SPLITS:
            split_dir = out / "speech" / split
            if (split_dir / "manifest.jsonl").is_file():
                continue
            records = list(read_manifest(out / "text" / f"{split}.jsonl"))
            routed = dict.fromkeys(piper_ids(records, piper_share, seed=seed), "piper") if engine != "piper" else {}
            synthesize_corpus(records, split_dir, engine=engine, engine_for=routed, seed=seed, jobs=jobs,
                              progress=progress)
    summary = summarize_corpus(out)
    summary.build_seconds = time.perf_counter() - started
    summary.save(out / "summary.json")
    return summary


def piper_ids(records: Sequence[Utterance], share: float, *, seed: int) -> list[str]:
    """Ids of the records Piper speaks: ``round(share * n)`` of each domain's ``n`` (halves round up), drawn
    by ``seed``; per domain so every domain's WER can be read per voice family."""
    by_domain: dict[str, list[str]] = defaultdict(list)
    for record in records:
        by_domain[record.domain or ""].append(record.id)
    chosen: list[str] = []
    for domain, ids in sorted(by_domain.items()):
        chosen += Random(f"{seed}-piper-{domain}").sample(ids, int(share * len(ids) + 0.5))
    return chosen


def write_text_corpora(out: Path, *, size: str, seed: int, piper_share: float = DEFAULT_PIPER_SHARE,
                       progress: bool = True) -> None:
    """The text stage: every text manifest and plain-text corpus; skipped when already done.

    Its marker also records the speech settings (format, Piper share), so a rebuild with others is refused
    instead of adding speech of a second kind to finished splits.
    """
    text_dir = out / "text"
    marker = text_dir / "done.json"
    wanted = {"size": size, "seed": seed, "format": CORPUS_FORMAT, "piper_share": piper_share}
    if marker.is_file():
        done = json.loads(marker.read_text(encoding="utf-8"))
        if done.get("format", 1) != CORPUS_FORMAT:
            raise ConfigError(
                f"{out} holds a corpus of an older format (format={done.get('format', 1)}; this version builds "
                f"format={CORPUS_FORMAT}); use another output directory (or delete it)"
            )
        if done != wanted:
            def describe(params: dict) -> str:
                return " ".join(f"{key}={params.get(key)}" for key in ("size", "seed", "piper_share"))

            raise ConfigError(
                f"{out} already holds a corpus built with {describe(done)}; use another output directory "
                f"(or delete it) for {describe(wanted)}"
            )
        return
    corpora = make_text_corpora(size=size, seed=seed, progress=progress)
    for name, records in corpora.items():
        write_manifest(records, text_dir / f"{name}.jsonl")
        (text_dir / f"{name}.txt").write_text("".join(r.text + "\n" for r in records), encoding="utf-8")
    marker.write_text(json.dumps(wanted) + "\n", encoding="utf-8")


def make_text_corpora(*, size: str, seed: int, progress: bool = False) -> dict[str, list[Utterance]]:
    """All text corpora as records (no files written); a pure function of ``size`` and ``seed``."""
    spec = SIZES[size]
    steps = tqdm(total=4, desc="text corpora", unit="step", disable=not progress)
    general = general_sentences()
    vocabulary = {w.strip(".,;?!'").lower() for sents in general.values() for s in sents for w in s.split()}
    steps.update()

    pooled = [(src, s) for src in sorted(general) for s in general[src]]
    Random(f"{seed}-general").shuffle(pooled)
    corpora: dict[str, list[Utterance]] = {name: [] for name in TEXT_CORPORA}
    start = 0
    for split in SPEECH_SPLITS:
        n = spec.speech[split]
        corpora[split] += [_record(f"{split}-general-{i:06d}", s, (), "general", src)
                           for i, (src, s) in enumerate(pooled[start : start + n])]
        start += n
    rest = pooled[start:] if spec.general_lm is None else pooled[start : start + spec.general_lm]
    corpora["general_lm"] = [_record(f"lm-general-{i:06d}", s, (), "general", src) for i, (src, s) in enumerate(rest)]
    more_general = pooled[start + len(rest):][: spec.more_train]
    steps.update()

    rng = Random(f"{seed}-pools")
    drugs = partition_names(drug_names(), rng, forbidden=vocabulary,
                            dev_fraction=DEV_FRACTION, test_fraction=TEST_FRACTION)
    places = partition_names(institution_stems(), rng, forbidden=vocabulary,
                             dev_fraction=DEV_FRACTION, test_fraction=TEST_FRACTION)
    brands = partition_names(brand_stems(), rng, forbidden=vocabulary,
                             dev_fraction=DEV_FRACTION, test_fraction=TEST_FRACTION)
    domains: dict[str, tuple[Sequence[str], Callable[[str], dict[str, SlotFiller]]]] = {
        "medical": (MEDICAL_FRAMES, lambda split: medical_fillers(drugs.for_split(split))),
        "banking": (BANKING_FRAMES,
                    lambda split: banking_fillers(places.for_split(split), brands.for_split(split))),
    }
    seen: set[str] = set()  # sentence keys across every domain corpus: no sentence appears twice
    rngs: dict[str, Random] = {}
    for domain, (frames, fillers_for) in domains.items():
        rng = rngs[domain] = Random(f"{seed}-{domain}")
        for split in SPEECH_SPLITS:
            sents = _generate(frames, fillers_for(split), spec.speech[split], rng, seen)
            corpora[split] += [_record(f"{split}-{domain}-{i:06d}", f.text, f.entities, domain, f"{domain}-frames")
                               for i, f in enumerate(sents)]
        half = spec.domain_text // 2
        sents = (_generate(frames, fillers_for("train"), spec.domain_text - half, rng, seen)
                 + _generate(frames, fillers_for("test"), half, rng, seen))
        corpora["domain"] += [_record(f"domain-{domain}-{i:06d}", f.text, f.entities, domain, f"{domain}-frames")
                              for i, f in enumerate(sents)]
        steps.update()
    # The further training sentences come last (see SizeSpec), numbered on from each domain's first ones.
    first = spec.speech["train"]
    more = [_record(f"train-general-{first + i:06d}", s, (), "general", src) for i, (src, s) in enumerate(more_general)]
    for domain, (frames, fillers_for) in domains.items():
        sents = _generate(frames, fillers_for("train"), spec.more_train, rngs[domain], seen)
        more += [_record(f"train-{domain}-{first + i:06d}", f.text, f.entities, domain, f"{domain}-frames")
                 for i, f in enumerate(sents)]
    corpora["train"] = sorted(corpora["train"] + more, key=lambda r: DOMAINS.index(r.domain))  # stable: in id order
    steps.close()
    return corpora


def _generate(frames: Sequence[str], fillers: dict[str, SlotFiller], n: int, rng: Random,
              seen: set[str]) -> list[Filled]:
    out: list[Filled] = []
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            raise ConfigError(f"could not generate {n} distinct sentences from {len(frames)} frames")
        filled = fill(rng.choice(frames), fillers, rng)
        key = sentence_key(filled.text)
        if key not in seen:
            seen.add(key)
            out.append(filled)
    return out


def _record(utt_id: str, text: str, entities: Sequence, domain: str, source: str) -> Utterance:
    return Utterance(id=utt_id, text=text, entities=list(entities), domain=domain, source=source)


def summarize_corpus(corpus_dir: str | Path) -> CorpusSummary:
    """Statistics of a (possibly partly) built corpus, read from its manifests."""
    root = Path(corpus_dir)
    text_dir = root / "text"
    if not text_dir.is_dir():
        raise InputError("not a corpus directory (no text/ inside); build one with 'speechbraid corpus build'", root)
    rows: list[SplitStats] = []
    for name in TEXT_CORPORA:
        path = text_dir / f"{name}.jsonl"
        if path.is_file():
            rows += _stats(f"text:{name}", read_manifest(path))
    for split in SPEECH_SPLITS:
        path = root / "speech" / split / "manifest.jsonl"
        if path.is_file():
            rows += _stats(f"speech:{split}", read_manifest(path))
    old = root / "summary.json"
    previous = CorpusSummary.load(old) if old.is_file() else None
    done = text_dir / "done.json"
    params = json.loads(done.read_text(encoding="utf-8")) if done.is_file() else {}
    return CorpusSummary(
        out_dir=str(root), rows=rows, size=params.get("size"), seed=params.get("seed"),
        build_seconds=previous.build_seconds if previous else None,
    )


def _stats(corpus: str, records: Iterable[Utterance]) -> list[SplitStats]:
    cells: dict[str, SplitStats] = {}
    distinct: dict[str, set[tuple[str, str]]] = defaultdict(set)
    types: dict[str, Counter[str]] = defaultdict(Counter)
    seconds: dict[str, float] = defaultdict(float)
    voices: dict[str, Counter[str]] = defaultdict(Counter)
    for record in records:
        domain = record.domain or "unknown"
        cell = cells.setdefault(domain, SplitStats(corpus, domain))
        cell.sentences += 1
        cell.entities += len(record.entities)
        distinct[domain].update((e.type, e.text) for e in record.entities)
        types[domain].update(e.type for e in record.entities)
        if record.duration is not None:
            seconds[domain] += record.duration
        if not record.is_text_only:
            voices[domain][voice_family(record.source)] += 1
    for domain, cell in cells.items():
        cell.distinct_entities = len(distinct[domain])
        cell.entity_types = dict(sorted(types[domain].items()))
        cell.voices = dict(sorted(voices[domain].items()))
        if domain in seconds:
            cell.audio_hours = seconds[domain] / 3600
    order = {d: i for i, d in enumerate(DOMAINS)}
    return sorted(cells.values(), key=lambda c: order.get(c.domain, len(order)))

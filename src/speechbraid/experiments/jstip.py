"""The JSTIP study (METHODS.md section 1, the structure of the paper's Tables I and III) at small scale.

Every row starts from one shared ASR warm-up on the ASR pairs (the preset's config — ``asr_default``: SmolLM2-135M
behind the pretrained whisper-base encoder, frozen; stage 1 the adapter through the CTC bridge, then
``shared_steps`` of stage 2, LoRA on the LLM), then trains ``row_steps`` more stage-2 steps on its own data mix,
once per seed, beside an off-the-shelf reference model (whisper-base) on the same test utterances,
and is scored on the held-out test set (entities never in the speech training pairs or the text prior; only
the domain text names them), on multiple-choice questions asked as text and as speech
(modality gap) and on zero-shot spoken QA. The shared warm-up is a concession to a 2-core CPU: training
every row from scratch to a usable ASR model would take hours; rows then measure the effect of each data
mix during continued training, with ``asr-only`` (more ASR steps) as the control.

Data names in the rows:
- ``asr``: the default corpus's speech-text training pairs;
- ``domain``: the text-only domain corpus: other sentences than the test set, half of them naming test-pool
  entities (the domain vocabulary the speech pairs lack, as in the paper); the text prior never reads it;
- ``tts``: domain sentences synthesised into speech-text pairs for the study (TTS pairs); used with the
  ``text`` layout they are "TTS transcripts", with an interleaved layout "TTS-interleave".
Beside the rows, the shared warm-up's CTC bridge is scored alone (greedy) and beam-searched with word n-gram LMs
(shallow fusion, no LLM step): one of the speech transcripts and the general text, one with the domain text
added - the classic way text without audio reaches an ASR model, the baseline JSTIP's rows are read against.
With a spelling CTC bridge every row is also decoded jointly with it (``llm-ctc``: the LLM's beam scored with the
bridge's prefix probabilities, no n-gram, so what a row knows of the entities is still its own LLM's): the "joint"
columns. Plain LLM decoding measures how far the LLM strays from the audio as much as what it hears.
"+il" adds interleaved sequences (mixed word/segment level, silence+punctuation segments) built from
the pairs named in the row. Weights are target-token shares of the mix.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from speechbraid.errors import ConfigError
from speechbraid.experiments.common import corpus_and_text_prior, over_seeds
from speechbraid.extras import require
from speechbraid.files import atomic_write_text, iter_jsonl
from speechbraid.models.ngram_lm import build_ngram_lm_file


@dataclass(frozen=True)
class Source:
    data: str  # asr | domain | tts
    layout: str  # a name in speechbraid.layouts.registry.LAYOUTS
    weight: float = 1.0
    segment_by: str = "silence+punct"


ASR = Source("asr", "asr", 1.0)
IL_ASR = Source("asr", "mixed-il", 0.5)
ROWS: dict[str, tuple[Source, ...]] = {
    # Table I: ASR-only, joint training with domain text / TTS pairs / TTS transcripts, each +interleave
    "asr-only": (ASR,),
    "asr +il": (ASR, IL_ASR),
    "asr+domain-text": (ASR, Source("domain", "text", 0.5)),
    "asr+domain-text +il": (ASR, Source("domain", "text", 0.5), IL_ASR),
    "asr+tts-pairs": (ASR, Source("tts", "asr", 0.5)),
    "asr+tts-pairs +il": (ASR, Source("tts", "asr", 0.5), Source("tts", "mixed-il", 0.5)),
    "asr+tts-text": (ASR, Source("tts", "text", 0.5)),
    "asr+tts-text +il": (ASR, Source("tts", "text", 0.5), IL_ASR),
    # Table III: which interleaving
    "asr+word-il": (ASR, Source("asr", "word-il", 0.5)),
    "asr+segment-il(silence)": (ASR, Source("asr", "segment-il", 0.5, "silence")),
    "asr+segment-il(silence+punct)": (ASR, Source("asr", "segment-il", 0.5, "silence+punct")),
    "asr+mixed-il(silence+punct)": (ASR, IL_ASR),
    # an extra, not the paper's: SpiritLM-style random word boundaries
    "asr+random-il (extra)": (ASR, Source("asr", "random-il", 0.5)),
}
CTC_ROW = "ctc bridge alone (shared warm-up, no LLM)"
JOINT_BEAM = 4  # the rows' joint CTC/LLM decoding (llm-ctc, the default CTC weight, no n-gram)
# the same bridge, beam-searched with a word n-gram of the text each row may know (shallow fusion, no LLM step):
# name -> (row, corpus text files); never dev or test text
CTC_LM_ROWS = {"transcripts": ("ctc + n-gram LM (transcripts + general text)", ("train", "general_lm")),
               "domain": ("ctc + n-gram LM (+ domain text)", ("train", "general_lm", "domain"))}
# How questions are asked, kept in each run's metrics: a run scored another way is re-scored on resume. Multiple
# choice as cloze (each option's likelihood as the answer): lettered, SmolLM2-135M answered "A" to every question;
# spoken QA answers at least one token: ASR-tuned, it ended every prompt at once (evaluation/modality_gap.py, sqa.py)
MC_SCORING = "cloze"
QUESTIONS_PROTOCOL = f"mc-{MC_SCORING}, sqa-non-empty"
TABLE_I = tuple(list(ROWS)[:8])
TABLE_III = ("asr-only", *list(ROWS)[8:])


@dataclass(frozen=True)
class StudyPreset:
    corpus_size: str
    lm_preset: str
    lm_steps: int | None
    stage1_steps: int  # shared: the config's first stage (adapter, LLM frozen)
    shared_steps: int  # shared: the config's second stage, ASR data only
    row_steps: int  # per row and seed: the second stage again, on the row's data mix
    rows: tuple[str, ...]
    seeds: tuple[int, ...]
    n_tts: int  # domain sentences synthesised as TTS pairs
    n_mc: int
    n_sqa: int
    test_limit: int | None  # test utterances scored per run (None: all)
    overrides: tuple[str, ...] = ()
    config: str = "asr_default"  # packaged training config the rows start from
    llm: str | None = None  # a pretrained LLM (name or directory); None: pretrain the small text prior here
    reference: str | None = None  # an off-the-shelf ASR model scored on the same test utterances (a table row)


_TINY_MODEL = ("model.conformer={d_model: 32, n_layers: 1, n_heads: 2}", "data.rows=2", "data.max_len=256",
               "tensorboard=false")
_SMOLLM2 = {"llm": "smollm2-135m", "reference": "whisper-base"}
PRESETS: dict[str, StudyPreset] = {
    # CPU study on SmolLM2 (issue 9): the rows that carry the paper's claim, three seeds; its warm-up is the
    # demo's (``quick``), so a demo's shared model can seed the study
    "small": StudyPreset("small", "small", None, 600, 30, 20,
                         ("asr-only", "asr +il", "asr+domain-text", "asr+domain-text +il", "asr+tts-pairs +il"),
                         (0, 1, 2), 300, 40, 30, 90, **_SMOLLM2),
    # every row of Tables I and III, for a GPU (run it with --preset gpu on a machine with one)
    "gpu": StudyPreset("medium", "small", None, 3000, 2000, 1000, tuple(ROWS), (0, 1, 2), 5000, 200, 100, None,
                       ("data.rows=16", "data.max_len=1024"), **_SMOLLM2),
    "tiny": StudyPreset("tiny", "tiny", 20, 2, 1, 2, ("asr-only", "asr +il", "asr+tts-pairs +il"), (0, 1), 4, 4, 3, 6,
                        _TINY_MODEL, "asr_conformer"),
    # the main job's quick comparison (`speechbraid demo`): ASR-only vs +interleave, one seed, whisper-base beside
    "quick": StudyPreset("small", "small", None, 600, 30, 10, ("asr-only", "asr +il"), (0,), 0, 0, 0, 150,
                         **_SMOLLM2),
    # the demo's smoke test: the default recipe's shape (CTC bridge, compression, LoRA, reference row) at tiny size
    "quick-tiny": StudyPreset("tiny", "tiny", 20, 2, 1, 2, ("asr-only", "asr +il"), (0,), 0, 0, 0, None,
                              (*_TINY_MODEL, "model.encoder=conformer", "model.adapter_stack=2",
                               # 20 ms frames, stacked to 40 ms: enough frames to spell every word
                               "model.conformer={d_model: 32, n_layers: 1, n_heads: 2, subsample_layers: 1}"),
                              reference="whisper-base"),
}


def _metrics(asr: dict[str, Any], gap: dict[str, Any] | None, sqa: dict[str, Any] | None) -> dict[str, Any]:
    """The table's columns for one run (rates as fractions; None where undefined or not measured)."""
    by_domain = asr["by_domain"]
    out = {"wer": asr["overall"]["wer"], "eer": asr["overall"]["eer"]}
    for domain in ("medical", "banking"):
        out[f"eer_{domain}"] = by_domain.get(domain, {}).get("eer")
    out.update({"t2t": gap["t2t"] if gap else None, "s2t": gap["s2t"] if gap else None,
                "gap": gap["gap"] if gap else None, "sqa": sqa["s2t"] if sqa else None,
                "mc_majority": max(gap["majority_share"].values()) if gap else None})
    return out


COLUMNS = ("wer", "eer", "eer_medical", "eer_banking", "wer_joint", "eer_joint", "t2t", "s2t", "gap", "sqa",
           "mc_majority")


def summarize(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per row and column: mean and spread (sample std; 0 with one seed) over seeds."""
    table: dict[str, dict[str, Any]] = {}
    for row, per_seed in runs.items():
        table[row] = {"seeds": len(per_seed)}
        for column in COLUMNS:
            table[row][column] = over_seeds([r.get(column) for r in per_seed])
    return table


def format_markdown(table: dict[str, dict[str, Any]], rows: Sequence[str]) -> str:
    def cell(value: dict[str, float] | None) -> str:
        if value is None:
            return "-"
        return f"{100 * value['mean']:.1f} ± {100 * value['std']:.1f}"

    header = ("| row | seeds | WER % | EER % | EER medical % | EER banking % | WER joint % | EER joint % | T2T % "
              "| S2T % | gap (S2T-T2T) | SQA % | MC top-letter share % |")
    lines = [header, "|" + "---|" * (len(COLUMNS) + 2)]
    for row in rows:
        if row in table:
            r = table[row]
            lines.append(f"| {row} | {r['seeds']} | " + " | ".join(cell(r[c]) for c in COLUMNS) + " |")
    return "\n".join(lines)


LEGEND = {"wer": "own decoding (LLM rows: the LLM alone)", "wer_joint": "LLM rows: joint CTC/LLM"}


def plot(table: dict[str, dict[str, Any]], rows: Sequence[str], path: Path) -> None:
    matplotlib = require("matplotlib", "units", "plotting")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in rows if r in table]
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.45 * len(shown) + 1.8), sharey=True)
    for ax, (columns, title) in zip(axes, ((("eer_medical", "eer_banking"), "EER on held-out entities (%)"),
                                           (("wer", "wer_joint"), "WER (%)")), strict=True):
        for k, column in enumerate(columns):
            means = [100 * (table[r][column] or {"mean": 0})["mean"] for r in shown]
            stds = [100 * (table[r][column] or {"std": 0})["std"] for r in shown]
            ys = [i + 0.4 * k for i in range(len(shown))]
            ax.barh(ys, means, height=0.38, xerr=stds, label=LEGEND.get(column, column.replace("eer_", "")))
        ax.set_title(title)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.04), ncol=2)  # below: bars reach 100%
    axes[0].set_yticks(range(len(shown)), shown)
    axes[0].invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_jstip_study(out_dir: str | Path = "runs/jstip", corpus_dir: str | Path = "data/default", *,
                    preset: str = "small", lm_dir: str | Path | None = None, rows: Sequence[str] | None = None,
                    overrides: Sequence[str] = (), progress: bool = True) -> dict[str, Any]:
    """Run (or resume) the study; writes ``results.json``, ``table.md`` and ``table.png`` under ``out_dir``.

    ``overrides`` (``key=value``, as for ``speechbraid train``) apply to every run's config after the preset's own.
    """
    from speechbraid.config import load_config
    from speechbraid.configs import resolve_config
    from speechbraid.training.trainer import TrainConfig, train

    if preset not in PRESETS:
        raise ConfigError(f"unknown study preset {preset!r}; choose one of {', '.join(PRESETS)}")
    spec = PRESETS[preset]
    chosen = tuple(rows) if rows else spec.rows
    unknown = [r for r in chosen if r not in ROWS]
    if unknown:
        raise ConfigError(f"unknown study rows {unknown}; known: {', '.join(ROWS)}")
    # an unknown or ill-typed override fails here, before the corpus and the text prior are built
    load_config(TrainConfig, resolve_config(spec.config), [*spec.overrides, *overrides])
    out, corpus = Path(out_dir), Path(corpus_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    lm_dir = corpus_and_text_prior(out, corpus, corpus_size=spec.corpus_size, lm_preset=spec.lm_preset,
                                   lm_steps=spec.lm_steps, lm_dir=lm_dir or spec.llm, progress=progress)
    manifests = {"asr": corpus / "speech" / "train" / "manifest.jsonl", "domain": corpus / "text" / "domain.jsonl"}
    if any(s.data == "tts" for r in chosen for s in ROWS[r]):
        manifests["tts"] = _tts_pairs(corpus, out / "tts", spec.n_tts, progress)
    questions = _questions(out / "questions", spec, progress) if spec.n_mc or spec.n_sqa else None

    def config(steps: Sequence[int], sources: Sequence[Source], seed: int, init_from: str | None) -> TrainConfig:
        """The preset's config with this data; its stages cut to ``steps`` each (a stage with 0 steps is left out)."""
        listed = ", ".join(f"{{manifest: '{manifests[s.data]}', layout: {s.layout}, weight: {s.weight}, "
                           f"segment_by: '{s.segment_by}'}}" for s in sources)
        options = [f"model.llm={lm_dir}", f"data.train=[{listed}]", f"seed={seed}", *spec.overrides, *overrides]
        cfg = load_config(TrainConfig, resolve_config(spec.config), options)
        if cfg.model.ctc is not None:  # CTC classes: the tokens of the speech training transcripts only
            cfg.model.ctc.vocab_from = [str(corpus / "text" / "train.jsonl")]
        cfg.stages = [replace(stage, steps=n) for stage, n in zip(cfg.stages, steps, strict=True) if n > 0]
        cfg.init_from = init_from
        return cfg

    shared = out / "shared"
    shared_config = config((spec.stage1_steps, spec.shared_steps), [ASR], 0, None)
    train(shared_config, shared, resume=True, progress=progress)
    test = corpus / "speech" / "test" / "manifest.jsonl"
    if spec.test_limit is not None:
        test = _spread(test, spec.test_limit, out / "test_subset.jsonl")
    runs: dict[str, list[dict[str, Any]]] = {}
    if spec.reference:
        runs[reference_row(spec.reference)] = [_scored_alone(spec.reference, test, out / "reference", progress)]
    extra_rows = [reference_row(spec.reference)] if spec.reference else []
    if shared_config.model.ctc is not None:
        # what the CTC bridge alone recognises after the warm-up: the floor the LLM stage builds on
        runs[CTC_ROW] = [_scored_alone(shared / "model", test, shared / "ctc_eval", progress, decoder="ctc")]
        extra_rows.append(CTC_ROW)
    spelled = shared_config.model.ctc is not None and shared_config.model.ctc.units == "chars"
    if spelled:
        for name, (row, texts) in CTC_LM_ROWS.items():
            lm = out / "lm" / f"{name}.arpa.gz"
            if not lm.is_file():
                build_ngram_lm_file([corpus / "text" / f"{text}.txt" for text in texts], lm)
            runs[row] = [_scored_alone(shared / "model", test, out / "lm" / f"{name}_eval", progress,
                                       decoder="ctc-lm", lm=lm)]
            extra_rows.append(row)
    for row in chosen:
        for seed in spec.seeds:
            run_dir = out / "rows" / row.replace(" ", "_") / f"seed{seed}"
            done = run_dir / "metrics.json"
            metrics = json.loads(done.read_text(encoding="utf-8")) if done.is_file() else None
            if metrics is None:
                print(f"\n== {row} (seed {seed})", flush=True)
                train(config((0, spec.row_steps), ROWS[row], seed, str(shared / "model")), run_dir, resume=True,
                      progress=progress)
            if metrics is None or (questions is not None and metrics.get("questions_protocol") != QUESTIONS_PROTOCOL):
                # a finished run scored with another question protocol is re-scored (its ASR scores are kept)
                metrics = _evaluate(run_dir / "model", test, spec, questions, run_dir, progress)
                atomic_write_text(done, json.dumps(metrics, indent=2) + "\n")
            if spelled and "wer_joint" not in metrics:  # runs scored before joint decoding get it on resume
                joint = _scored(run_dir / "model", test, run_dir / "joint", progress, "llm-ctc", beam_size=JOINT_BEAM)
                metrics = {**metrics, "wer_joint": joint["overall"]["wer"], "eer_joint": joint["overall"]["eer"]}
                atomic_write_text(done, json.dumps(metrics, indent=2) + "\n")
            runs.setdefault(row, []).append(metrics)
    table = summarize(runs)
    order = list(dict.fromkeys(r for r in (*TABLE_I, *TABLE_III) if r in chosen))
    order += extra_rows
    result = {"preset": preset, "rows": {r: [vars(s) for s in ROWS[r]] for r in chosen},
              "seeds": list(spec.seeds), "steps": {"stage1": spec.stage1_steps, "shared": spec.shared_steps,
                                                   "row": spec.row_steps},
              "table": table, "runs": runs, "seconds": round(time.perf_counter() - started, 1)}
    atomic_write_text(out / "results.json", json.dumps(result, indent=2) + "\n")
    markdown = format_markdown(table, order)
    atomic_write_text(out / "table.md", markdown + "\n")
    plot(table, order, out / "table.png")
    print("\n" + markdown)
    return result


def _tts_pairs(corpus: Path, out: Path, n: int, progress: bool) -> Path:
    """Synthesise the first ``n`` domain sentences (a seed other than the corpus's, so other voices)."""
    from speechbraid.data.manifest import read_manifest
    from speechbraid.synth import synthesize_corpus

    manifest = out / "manifest.jsonl"
    if not manifest.is_file():
        records = [r for _, r in zip(range(n), read_manifest(corpus / "text" / "domain.jsonl"), strict=False)]
        synthesize_corpus(records, out, seed=1, progress=progress)
    return manifest


def _questions(out: Path, spec: StudyPreset, progress: bool) -> dict[str, Any]:
    from speechbraid.corpora.questions import build_question_sets
    from speechbraid.data.questions import load_questions

    paths = build_question_sets(out, n_mc=max(spec.n_mc, 1), n_sqa=max(spec.n_sqa, 1), progress=progress)
    return {"mc": load_questions(paths["mc"], "mc"), "shots": load_questions(paths["shots"], "mc"),
            "sqa": load_questions(paths["sqa"], "sqa")}


def _evaluate(model_dir: Path, test: Path, spec: StudyPreset, questions: dict[str, Any] | None, run_dir: Path,
              progress: bool) -> dict[str, Any]:
    from speechbraid.evaluation.modality_gap import modality_gap
    from speechbraid.evaluation.sqa import spoken_qa
    from speechbraid.inference.transcribe import load_transcriber

    transcriber = load_transcriber(model_dir)
    if _scored_on(run_dir, test):  # re-scoring the questions only
        asr = json.loads((run_dir / "test_eval.json").read_text(encoding="utf-8"))
    else:
        asr = _score_asr(transcriber, test, run_dir, progress)
    gap = sqa = None
    if questions is not None:
        model, tokenizer, features = transcriber.model, transcriber.hf_tokenizer, transcriber.features
        if spec.n_mc:
            gap = modality_gap(model, tokenizer, questions["mc"], shots=questions["shots"], features=features,
                               scoring=MC_SCORING)
        if spec.n_sqa:
            sqa = spoken_qa(model, tokenizer, questions["sqa"], features=features)
        atomic_write_text(run_dir / "questions_eval.json", json.dumps({"modality_gap": gap, "sqa": sqa}, indent=2,
                                                                       default=str) + "\n")
    metrics = _metrics(asr, gap, sqa)
    return {**metrics, "questions_protocol": QUESTIONS_PROTOCOL} if questions is not None else metrics


def reference_row(model: str) -> str:
    return f"{Path(model).name} (reference)"


def _score_asr(transcriber: Any, test: Path, out: Path, progress: bool, beam_size: int = 1) -> dict[str, Any]:
    """Transcribe and score the study's test utterances into ``out`` (hypotheses resumable, then test_eval.json)."""
    from speechbraid.inference.transcribe import evaluate_model

    out.mkdir(parents=True, exist_ok=True)
    asr = evaluate_model(transcriber, test, hyps_out=out / "test_hyps.jsonl", progress=progress, beam_size=beam_size)
    atomic_write_text(out / "test_eval.json", json.dumps(asr, indent=2) + "\n")
    return asr


def _scored_alone(model: str | Path, test: Path, out: Path, progress: bool, decoder: str = "llm",
                  lm: Path | None = None) -> dict[str, Any]:
    """A model's table columns on the study's test utterances alone: the off-the-shelf reference, or the shared
    warm-up's CTC bridge without the LLM (``decoder="ctc"``, or ``"ctc-lm"`` with the word n-gram ``lm``)."""
    return _metrics(_scored(model, test, out, progress, decoder, lm), None, None)


def _scored(model: str | Path, test: Path, out: Path, progress: bool, decoder: str, lm: Path | None = None,
            beam_size: int = 1) -> dict[str, Any]:
    """A model's ASR scores on the study's test utterances, decoded with ``decoder`` (computed once into ``out``,
    then read back)."""
    from speechbraid.inference.transcribe import load_transcriber

    if not _scored_on(out, test):
        return _score_asr(load_transcriber(model, decoder=decoder, lm=lm), test, out, progress, beam_size)
    return json.loads((out / "test_eval.json").read_text(encoding="utf-8"))


def _scored_on(out: Path, test: Path) -> bool:
    """Whether ``out`` holds the scores of exactly the utterances of ``test``: a ``shared/`` seeded from a demo
    carries its CTC row scored on the demo's test subset (150 utterances), not this study's."""
    from speechbraid.data.manifest import read_manifest

    if not (out / "test_eval.json").is_file() or not (out / "test_hyps.jsonl").is_file():
        return False
    scored = sorted(str(obj.get("id")) for _, obj in iter_jsonl(out / "test_hyps.jsonl"))
    return scored == sorted(record.id for record in read_manifest(test) if record.audio)  # text-only: never scored


def _spread(manifest: Path, n: int, out: Path) -> Path:
    """``n`` records evenly spaced through the manifest (its splits are ordered by domain: every domain stays)."""
    from speechbraid.data.manifest import read_manifest, write_manifest

    total = sum(1 for _ in read_manifest(manifest))
    keep = {i * total // n for i in range(min(n, total))}
    write_manifest([r for i, r in enumerate(read_manifest(manifest)) if i in keep], out)
    return out

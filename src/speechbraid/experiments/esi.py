"""The ESI study (METHODS.md section 2): interleaved vs ESI vs parallel joint decoding.

Every pattern trains its own model (per seed) with the SAME text prior, unit tokenizer, vocoder, data and steps:
the curated spoken QA set (``corpora.spoken_qa``), each pair laid out by the pattern (``build_generation_braid``)
after a prompt that is the question as text or as speech (alternating per epoch), mixed with ASR on the
QA audio (questions and answers) so the encoder learns to hear the spoken prompts. ``parallel`` gets the
second (speech) head. Each model then answers the held-out questions; generated speech is vocoded while
decoding streams and judged by the Whisper judge (``evaluation.generation``).

Presets (:data:`PRESETS`) say what the study runs on: ``smollm2`` is the pretrained SmolLM2-135M (vocabulary
extended by the units and the patterns' control tokens) answering in full sentences (10-25 words, where the ESI
paper measured its saving) in one fixed Piper voice, whose units and vocoder also learn from 1,500 more sentences
of that voice; ``small`` is the earlier setting (a 4M LM pretrained here, short answers in varied espeak voices).

Generation examples are ordinary training sources: layout ``gen-<pattern>`` over the spoken QA file
(``layouts.registry``), so ``speechbraid train`` trains the same models from a config.

Outputs under ``out_dir``: ``lm/`` (when pretrained here), ``qa/``, ``voice/``, ``units/``, ``vocoder/``,
``reference/``, ``runs/<pattern>/seed<k>/`` (model, eval WAVs, ``metrics.json``), ``results.json``, ``table.md``
and ``table.png`` (mean and spread over seeds). Every step resumes.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speechbraid.corpora.spoken_qa import Judge
from speechbraid.data.questions import SpokenQA, load_spoken_qa
from speechbraid.errors import ConfigError, InputError
from speechbraid.experiments.common import corpus_and_text_prior, over_seeds
from speechbraid.extras import require
from speechbraid.files import atomic_write_text
from speechbraid.patterns import get_pattern
from speechbraid.training.trainer import TrainConfig, train

PATTERN_NAMES = ("interleaved", "esi", "parallel")


# ---------------------------------------------------------------------------------------------------------------
# The study


@dataclass(frozen=True)
class EsiPreset:
    corpus_size: str  # default corpus (text for the LM pretrained here, and the response voice's extra sentences)
    lm_preset: str  # the text LM pretrained here when ``llm`` is None
    lm_steps: int | None
    n_pairs: int  # candidate QA pairs before the judge filter
    unit_encoder: str
    n_units: int
    vocoder_steps: int
    vocoder_d_model: int
    steps: int  # training steps per pattern and seed
    lr: float
    test_limit: int | None  # held-out questions decoded per pattern and prompt modality
    max_steps: int  # decoding budget per response
    modalities: tuple[str, ...]
    overrides: tuple[str, ...] = ()
    llm: str | None = None  # a pretrained causal LM (registered name or HF directory); None: pretrain one here
    answer_style: str = "short"  # spoken_qa.answer_sentence: short, or long (10-25 words, as the ESI paper's)
    answer_engine: str | None = None  # one fixed response voice (e.g. piper); None: the questions' espeak voices
    voice_sentences: int = 0  # default-corpus train sentences also spoken in the response voice, for units + vocoder
    seeds: tuple[int, ...] = (0,)
    trainable: tuple[str, ...] = (".*",)  # regexes of the parameters each pattern's model trains


_TINY_MODEL = ("model.conformer={d_model: 32, n_layers: 1, n_heads: 2}", "data.rows=2", "data.max_len=256",
               "tensorboard=false")
# SmolLM2 with the frozen whisper-base encoder (its outputs stored once), a fresh adapter, LoRA on the LLM and its
# embedding rows trained: the unit and control tokens are new rows, initialised by transformers' resizing from the
# mean and covariance of the text embeddings
_SMOLLM2_MODEL = ("model.encoder=whisper", "model.whisper=whisper-base", "model.encoder_precision=auto",
                  "model.adapter_stack=2", "model.lora={r: 16, alpha: 32, dropout: 0.0}", "data.max_len=512",
                  "tensorboard=false")
_SMOLLM2_TRAINABLE = (r"^adapter\.", "lora_", "embed_tokens", r"^speech_head\.")
PRESETS: dict[str, EsiPreset] = {
    # the 4M text LM pretrained here, short answers in espeak voices (session 5's study)
    "small": EsiPreset("small", "small", None, 800, "whisper", 200, 1000, 128, 300, 1e-3, 24, 160, ("text", "speech"),
                       ("data.rows=8", "data.max_len=384", "tensorboard=false")),
    # SmolLM2-135M, long answers in one fixed Piper voice whose units and vocoder also learn from 1,500 more
    # sentences of that voice (the setting of the README's resynthesis figures), three seeds; on 2 CPU cores ~75 min
    # per pattern and seed: speech began to be understood only after ~900 steps (README), 150 gave none
    "smollm2": EsiPreset("small", "small", None, 800, "whisper", 2000, 6000, 384, 900, 5e-4, 40, 400,
                         ("text", "speech"), ("data.rows=4", *_SMOLLM2_MODEL), llm="smollm2-135m",
                         answer_style="long", answer_engine="piper", voice_sentences=1500, seeds=(0, 1, 2),
                         trainable=_SMOLLM2_TRAINABLE),
    # the same on a GPU: every QA pair the question sources can make (~950: the calendar questions run out), 2,000
    # steps of 16 rows (53x the CPU preset's examples), 4x the response voice's sentences, every held-out question
    "smollm2-gpu": EsiPreset("small", "small", None, 950, "whisper", 2000, 12000, 384, 2000, 5e-4, None, 400,
                             ("text", "speech"), ("data.rows=16", *_SMOLLM2_MODEL), llm="smollm2-135m",
                             answer_style="long", answer_engine="piper", voice_sentences=6000, seeds=(0, 1, 2),
                             trainable=_SMOLLM2_TRAINABLE),
    "tiny": EsiPreset("tiny", "tiny", 20, 10, "fbank", 12, 10, 16, 3, 1e-3, 3, 40, ("text", "speech"), _TINY_MODEL,
                      voice_sentences=3),
}


def run_esi_study(out_dir: str | Path = "runs/esi", corpus_dir: str | Path = "data/default", *, preset: str = "smollm2",
                  lm_dir: str | Path | None = None, judge: str | Path | Judge = "whisper-base",
                  patterns: Sequence[str] = PATTERN_NAMES, seeds: Sequence[int] | None = None,
                  device: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) the study; writes ``results.json``, ``table.md`` and ``table.png`` under ``out_dir``.
    ``lm_dir`` replaces the preset's text prior, ``seeds`` its seeds."""
    from speechbraid.corpora.spoken_qa import build_spoken_qa

    if preset not in PRESETS:
        raise ConfigError(f"unknown study preset {preset!r}; choose one of {', '.join(PRESETS)}")
    unknown = [p for p in patterns if p not in PATTERN_NAMES]
    if unknown or not patterns:
        raise ConfigError(f"unknown patterns {unknown}; choose from {', '.join(PATTERN_NAMES)}")
    spec = PRESETS[preset]
    seeds = tuple(spec.seeds if seeds is None else seeds)
    if not seeds:
        raise ConfigError("the study needs at least one seed")
    out, corpus = Path(out_dir), Path(corpus_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    # only the corpus's text is read here (the text prior's training text, the response voice's sentences)
    lm_dir = corpus_and_text_prior(out, corpus, corpus_size=spec.corpus_size, lm_preset=spec.lm_preset,
                                   lm_steps=spec.lm_steps, lm_dir=lm_dir or spec.llm, synth=False, progress=progress)
    if isinstance(judge, str | Path):
        judge = _LazyJudge(judge, device)
    qa = out / "qa"
    qa_options = {"answer_style": spec.answer_style, "answer_engine": spec.answer_engine, "progress": progress}
    build_spoken_qa(qa, spec.n_pairs, None, judge, **qa_options)  # speech + judge filter, no units yet
    voice = _response_voice(corpus, out / "voice", spec, progress)
    units_dir = _unit_tokenizer(qa, voice, out / "units", spec, progress)
    qa_summary = build_spoken_qa(qa, spec.n_pairs, units_dir, judge, **qa_options)
    vocoder = _vocoder(qa, voice, units_dir, out / "vocoder", spec, device, progress)
    asr_manifest = _asr_manifest(qa)
    test = load_spoken_qa(qa / "test.jsonl")[: spec.test_limit]
    if not test:
        raise InputError("no held-out spoken QA pair survived the judge filter; raise n_pairs", qa / "test.jsonl")
    reference = _reference_row(test, vocoder, judge, out / "reference")

    runs: dict[str, list[dict[str, Any]]] = {}
    for name in patterns:
        for seed in seeds:
            run_dir = out / "runs" / name / f"seed{seed}"
            done = run_dir / "metrics.json"
            if not done.is_file():
                print(f"\n== {name} (seed {seed})", flush=True)
                _train_pattern(name, run_dir, lm_dir, vocoder.config.n_units, asr_manifest, qa / "train.jsonl", spec,
                               seed, device, progress)
                metrics = _evaluate_pattern(name, run_dir, test, vocoder, judge, spec, device)
                atomic_write_text(done, json.dumps(metrics, indent=2) + "\n")
            runs.setdefault(name, []).append(json.loads(done.read_text(encoding="utf-8")))
    lengths = _teacher_forced(test, lm_dir)
    table = summarize(runs, lengths)
    result = {"preset": preset, "llm": str(lm_dir), "patterns": list(patterns), "seeds": list(seeds),
              "steps": spec.steps, "spoken_qa": qa_summary, "reference": reference, "teacher_forced": lengths,
              "table": table, "seconds": round(time.perf_counter() - started, 1)}
    atomic_write_text(out / "results.json", json.dumps(result, indent=2) + "\n")
    markdown = format_markdown(table, reference, qa_summary, lengths)
    atomic_write_text(out / "table.md", markdown + "\n")
    plot(table, out / "table.png")
    print("\n" + markdown)
    return result


class _LazyJudge:
    """Loads the Whisper judge at its first use (a resumed study whose answers are all judged never loads it)."""

    def __init__(self, model: str | Path, device: str | None) -> None:
        self.model, self.device, self.judge = model, device, None

    def transcribe(self, wav_paths: Sequence[str | Path], batch_size: int = 8, on_batch: Any = None) -> list[str]:
        from speechbraid.models.judge import WhisperJudge

        if self.judge is None:
            self.judge = WhisperJudge(self.model, self.device)
        return self.judge.transcribe(wav_paths, batch_size, on_batch)


def _response_voice(corpus: Path, out: Path, spec: EsiPreset, progress: bool) -> Path | None:
    """The first ``voice_sentences`` train sentences of the default corpus spoken in the response voice (more audio
    of that voice for the units and the vocoder); None when the preset asks for none."""
    from speechbraid.data.manifest import read_manifest
    from speechbraid.synth import synthesize_corpus

    if not spec.voice_sentences:
        return None
    manifest = out / "manifest.jsonl"
    if not manifest.is_file():
        records = list(read_manifest(corpus / "text" / "train.jsonl"))[: spec.voice_sentences]
        synthesize_corpus(records, out, spec.answer_engine or "espeak", progress=progress)
    return manifest


def _unit_audio(qa: Path, voice: Path | None) -> Path:
    """One manifest of what units and the vocoder learn from: the TRAIN split's answers (the speech a model must
    say; with their units once they have them) and the response voice's extra sentences."""
    from speechbraid.data.manifest import read_manifest, write_manifest
    from speechbraid.data.records import Utterance

    path = qa / "unit_audio.jsonl"
    answers = [Utterance(id=p.id, text=p.answer_text, audio=p.answer_audio, duration=p.answer_duration, units=p.units)
               for p in load_spoken_qa(qa / "train.jsonl")]
    write_manifest([*answers, *(read_manifest(voice) if voice else ())], path)
    return path


def _unit_tokenizer(qa: Path, voice: Path | None, out: Path, spec: EsiPreset, progress: bool) -> Path:
    """k-means units trained on :func:`_unit_audio`."""
    from speechbraid.units.tokenizer import UnitTokenizerConfig, train_tokenizer

    if not (out / "unit_tokenizer.json").is_file():
        config = UnitTokenizerConfig(encoder=spec.unit_encoder, n_units=spec.n_units, rate_hz=25.0)  # type: ignore[arg-type]
        train_tokenizer(_unit_audio(qa, voice), config, progress=progress).save(out)
    return out


def _asr_manifest(qa: Path) -> Path:
    """Questions and answers of the train split as speech-text pairs (ASR data beside the generation layouts)."""
    from speechbraid.data.manifest import write_manifest
    from speechbraid.data.records import Utterance

    path = qa / "train_speech.jsonl"
    records = [Utterance(id=f"{p.id}-{role}", text=text, audio=audio, duration=duration, domain="spoken_qa")
               for p in load_spoken_qa(qa / "train.jsonl")
               for role, text, audio, duration in (("q", p.question, p.question_audio, p.question_duration),
                                                   ("a", p.answer_text, p.answer_audio, p.answer_duration))]
    write_manifest(records, path)
    return path


def _vocoder(qa: Path, voice: Path | None, units_dir: Path, out: Path, spec: EsiPreset, device: str | None,
             progress: bool) -> Any:
    from speechbraid.training.vocoder import manifest_pairs, train_vocoder
    from speechbraid.units.tokenizer import UnitTokenizer
    from speechbraid.units.vocoder import UnitVocoder, VocoderConfig

    if (out / "vocoder.json").is_file():
        return UnitVocoder.load(out)
    tokenizer = UnitTokenizer.load(units_dir)
    config = VocoderConfig(n_units=tokenizer.config.n_units, unit_rate_hz=tokenizer.rate_hz,
                           d_model=spec.vocoder_d_model)
    pairs = manifest_pairs(_unit_audio(qa, voice), tokenizer, config, progress)
    return train_vocoder(pairs, out, config, steps=spec.vocoder_steps, device=device, progress=progress)


def _train_pattern(name: str, run_dir: Path, lm_dir: str | Path, n_units: int, asr_manifest: Path, qa_train: Path,
                   spec: EsiPreset, seed: int, device: str | None, progress: bool) -> None:
    from speechbraid.config import load_config
    from speechbraid.configs import resolve_config

    overrides = [f"model.llm={lm_dir}", f"model.num_units={n_units}",
                 f"model.speech_head={'true' if name == 'parallel' else 'false'}",
                 f"data.train=[{{manifest: '{asr_manifest}', layout: asr, weight: 0.5}}, "
                 f"{{manifest: '{qa_train}', layout: gen-{name}, variant: both, weight: 1.0}}]", f"seed={seed}",
                 f"stages=[{{name: full, steps: {spec.steps}, lr: {spec.lr}, warmup: 0.05, "
                 f"trainable: {json.dumps(list(spec.trainable))}}}]", *spec.overrides,
                 *([f"device={device}"] if device else [])]
    config = load_config(TrainConfig, resolve_config("asr_conformer"), overrides)
    train(config, run_dir, resume=True, progress=progress)


def _evaluate_pattern(name: str, run_dir: Path, test: Sequence[SpokenQA], vocoder: Any, judge: Judge,
                      spec: EsiPreset, device: str | None) -> dict[str, Any]:
    from speechbraid.device import pick_device
    from speechbraid.evaluation.generation import generate_and_score
    from speechbraid.inference.settings import PatternDecodeConfig
    from speechbraid.models.build import load_speech_llm

    model, tokenizer, config = load_speech_llm(run_dir / "model", pick_device(device))
    features = config.feature_config.extract_file
    metrics = {}
    for modality in spec.modalities:
        result = generate_and_score(model, tokenizer, [p.as_question() for p in test], get_pattern(name), vocoder,
                                    judge, run_dir / f"eval_{modality}", modality=modality,  # type: ignore[arg-type]
                                    features=features, config=PatternDecodeConfig(max_steps=spec.max_steps))
        atomic_write_text(run_dir / f"eval_{modality}.json", json.dumps(result, indent=2) + "\n")
        metrics[modality] = {k: v for k, v in result.items() if k != "items"}
    return metrics


def _reference_row(test: Sequence[SpokenQA], vocoder: Any, judge: Judge, out: Path) -> dict[str, Any]:
    """The ceiling of speech-out accuracy: the REFERENCE answers' units through the vocoder and the judge."""
    from speechbraid.data.audio import write_wav
    from speechbraid.evaluation.generation import score_generations

    done = out / "reference.json"
    if done.is_file():
        return json.loads(done.read_text(encoding="utf-8"))
    out.mkdir(parents=True, exist_ok=True)
    wavs = []
    for pair in test:
        wav = out / f"{pair.id}.wav"
        write_wav(wav, vocoder.units_to_audio(pair.units), 16000)
        wavs.append(wav)
    scores = score_generations([p.as_question() for p in test], [p.answer_text for p in test], judge.transcribe(wavs))
    result = {k: scores[k] for k in ("n", "speech_accuracy", "alignment_wer")}
    atomic_write_text(done, json.dumps(result, indent=2) + "\n")
    return result


def _teacher_forced(test: Sequence[SpokenQA], lm_dir: str | Path) -> dict[str, Any]:
    """Mean response positions each pattern NEEDS for the reference answers (model-free), and the ratios."""
    from transformers import AutoTokenizer

    from speechbraid.inference.patterns import teacher_forced_lengths
    from speechbraid.layouts.tokenizer import HFTextTokenizer
    from speechbraid.models.registry import resolve_model

    tokenizer = HFTextTokenizer(AutoTokenizer.from_pretrained(resolve_model(lm_dir)))
    responses = [(tokenizer.encode(" " + p.answer_text), list(p.units or ())) for p in test]
    means = {name: statistics.fmean(teacher_forced_lengths(get_pattern(name), responses)) for name in PATTERN_NAMES}
    return {"steps_mean": means, "esi_over_interleaved": means["esi"] / means["interleaved"],
            "parallel_over_interleaved": means["parallel"] / means["interleaved"]}


COLUMNS = ("text_accuracy", "speech_accuracy", "alignment_wer", "steps_mean", "sequence_length_mean",
           "decode_wall_s", "first_audio_s_mean")
RELATIVE = ("steps_mean", "sequence_length_mean", "decode_wall_s")  # also given as a change against interleaved


def summarize(runs: dict[str, list[dict[str, Any]]], lengths: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per pattern and prompt modality: each column's mean and spread over seeds (:func:`over_seeds`), the
    teacher-forced steps, and the means' change against plain interleaved with the same prompts."""
    table: dict[str, dict[str, Any]] = {}
    for name, per_seed in runs.items():
        for modality in per_seed[0]:
            row: dict[str, Any] = {"seeds": len(per_seed), "teacher_forced_steps": lengths["steps_mean"][name]}
            row |= {c: over_seeds([m[modality].get(c) for m in per_seed]) for c in COLUMNS}
            table[f"{name} ({modality} prompt)"] = row
    for name, per_seed in runs.items():
        for modality in per_seed[0]:
            row, base = table[f"{name} ({modality} prompt)"], table.get(f"interleaved ({modality} prompt)")
            if base is None or name == "interleaved":
                continue
            for column in RELATIVE:
                ours, theirs = row[column], base[column]
                row[f"{column}_vs_interleaved"] = (ours["mean"] / theirs["mean"] - 1
                                                   if ours and theirs and theirs["mean"] else None)
    return table


def format_markdown(table: dict[str, dict[str, Any]], reference: dict[str, Any], qa: dict[str, Any],
                    lengths: dict[str, Any]) -> str:
    def cell(v: dict[str, float] | None, scale: float = 100, digits: int = 1, change: float | None = None) -> str:
        if v is None:
            return "-"
        text = f"{scale * v['mean']:.{digits}f}" + (f" ± {scale * v['std']:.{digits}f}" if v["std"] else "")
        return text + ("" if change is None else f" ({100 * change:+.0f}%)")

    header = ("| pattern | seeds | text-out acc % | speech-out acc % | alignment WER % | decoding steps "
              "| sequence length | decode wall s | first audio s | teacher-forced steps |")
    lines = [header, "|" + "---|" * 10]
    for name, r in table.items():
        lines.append(
            f"| {name} | {r['seeds']} | {cell(r['text_accuracy'])} | {cell(r['speech_accuracy'])} "
            f"| {cell(r['alignment_wer'])} | {cell(r['steps_mean'], 1, 1, r.get('steps_mean_vs_interleaved'))} "
            f"| {cell(r['sequence_length_mean'], 1, 1, r.get('sequence_length_mean_vs_interleaved'))} "
            f"| {cell(r['decode_wall_s'], 1, 2, r.get('decode_wall_s_vs_interleaved'))} "
            f"| {cell(r['first_audio_s_mean'], 1, 2)} | {r['teacher_forced_steps']:.1f} |")
    kinds = ", ".join(f"{k} {v['kept']}/{v['candidates']}" for k, v in qa["kinds"].items())
    lines += ["", f"Spoken QA: {qa['kept']} of {qa['candidates']} synthesised pairs kept by the judge filter "
                  f"(answer WER <= {100 * qa['max_wer']:.0f}%: {100 * qa['kept_fraction']:.1f}%; per kind {kinds}); "
                  f"train {qa['splits']['train']}, test {qa['splits']['test']}.",
              "Reference answers' units through the vocoder: speech-out accuracy "
              f"{100 * reference['speech_accuracy']:.1f}%, WER against the answer sentence "
              f"{100 * reference['alignment_wer']:.1f}% (the ceiling for speech-out).",
              f"Teacher-forced on the reference answers: ESI needs {lengths['esi_over_interleaved']:.2f}x plain "
              f"interleaved's steps, parallel {lengths['parallel_over_interleaved']:.2f}x.",
              "Mean ± sample spread over seeds; (+x%) = change of the mean against plain interleaved with the same "
              "prompt modality."]
    return "\n".join(lines)


def plot(table: dict[str, dict[str, Any]], path: Path) -> None:
    matplotlib = require("matplotlib", "units", "plotting")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(table)
    panels = ((("text_accuracy", "speech_accuracy"), "accuracy (%)", 100),
              (("alignment_wer",), "alignment WER (%)", 100), (("steps_mean",), "decoding steps", 1),
              (("decode_wall_s",), "decode wall seconds", 1))
    fig, axes = plt.subplots(1, len(panels), figsize=(16, 0.5 * len(names) + 1.8), sharey=True)
    for ax, (columns, title, scale) in zip(axes, panels, strict=True):
        for k, column in enumerate(columns):
            cells = [table[n][column] or {"mean": 0.0, "std": 0.0} for n in names]
            ax.barh([i + 0.4 * k for i in range(len(names))], [scale * c["mean"] for c in cells], height=0.38,
                    xerr=[scale * c["std"] for c in cells], label=column)
        ax.set_title(title)
        if len(columns) > 1:
            ax.legend(loc="lower right")
    axes[0].set_yticks(range(len(names)), names)
    axes[0].invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

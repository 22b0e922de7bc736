"""The ESI study (METHODS.md section 2) at small scale: interleaved vs ESI vs parallel joint decoding.

Every pattern trains its own model with the SAME text LM, unit tokenizer, vocoder, data and steps: the
curated spoken QA set (``corpora.spoken_qa``), each pair laid out by the pattern (``build_generation_braid``)
after a prompt that is the question as text or as speech (alternating per epoch), mixed with ASR on the
QA audio (questions and answers) so the encoder learns to hear the spoken prompts. ``parallel`` gets the
second (speech) head. Each model then answers the held-out questions; generated speech is vocoded while
decoding streams and judged by the Whisper judge (``evaluation.generation``).

Generation examples are ordinary training sources: layout ``gen-<pattern>`` over the spoken QA file
(``layouts.registry``), so ``speechbraid train`` trains the same models from a config.

Outputs under ``out_dir``: ``lm/``, ``qa/``, ``units/``, ``vocoder/``, ``runs/<pattern>/`` (model, eval
WAVs, ``metrics.json``), ``results.json``, ``table.md`` and ``table.png``. Every step resumes.
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
from speechbraid.experiments.common import corpus_and_text_prior
from speechbraid.extras import require
from speechbraid.files import atomic_write_text
from speechbraid.patterns import get_pattern
from speechbraid.training.trainer import TrainConfig, train

PATTERN_NAMES = ("interleaved", "esi", "parallel")


# ---------------------------------------------------------------------------------------------------------------
# The study


@dataclass(frozen=True)
class EsiPreset:
    corpus_size: str  # default corpus (text for the LM)
    lm_preset: str
    lm_steps: int | None
    n_pairs: int  # candidate QA pairs before the judge filter
    unit_encoder: str
    n_units: int
    vocoder_steps: int
    vocoder_d_model: int
    steps: int  # training steps per pattern
    lr: float
    test_limit: int | None  # held-out questions decoded per pattern and prompt modality
    max_steps: int  # decoding budget per response
    modalities: tuple[str, ...]
    overrides: tuple[str, ...] = ()


_TINY_MODEL = ("model.conformer={d_model: 32, n_layers: 1, n_heads: 2}", "data.rows=2", "data.max_len=256",
               "tensorboard=false")
PRESETS: dict[str, EsiPreset] = {
    "small": EsiPreset("small", "small", None, 800, "whisper", 200, 1000, 128, 300, 1e-3, 24, 160, ("text", "speech"),
                       ("data.rows=8", "data.max_len=384", "tensorboard=false")),
    "tiny": EsiPreset("tiny", "tiny", 20, 10, "fbank", 12, 10, 16, 3, 1e-3, 3, 40, ("text", "speech"), _TINY_MODEL),
}


def run_esi_study(out_dir: str | Path = "runs/esi", corpus_dir: str | Path = "data/default", *, preset: str = "small",
                  lm_dir: str | Path | None = None, judge: str | Path | Judge = "whisper-base",
                  patterns: Sequence[str] = PATTERN_NAMES, device: str | None = None,
                  progress: bool = True) -> dict[str, Any]:
    """Run (or resume) the study; writes ``results.json``, ``table.md`` and ``table.png`` under ``out_dir``."""
    from speechbraid.corpora.spoken_qa import build_spoken_qa

    if preset not in PRESETS:
        raise ConfigError(f"unknown study preset {preset!r}; choose one of {', '.join(PRESETS)}")
    unknown = [p for p in patterns if p not in PATTERN_NAMES]
    if unknown or not patterns:
        raise ConfigError(f"unknown patterns {unknown}; choose from {', '.join(PATTERN_NAMES)}")
    spec = PRESETS[preset]
    out, corpus = Path(out_dir), Path(corpus_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    lm_dir = corpus_and_text_prior(out, corpus, corpus_size=spec.corpus_size, lm_preset=spec.lm_preset,
                                   lm_steps=spec.lm_steps, lm_dir=lm_dir, progress=progress)
    if isinstance(judge, str | Path):
        judge = _LazyJudge(judge, device)
    qa = out / "qa"
    build_spoken_qa(qa, spec.n_pairs, None, judge, progress=progress)  # speech + judge filter, no units yet
    units_dir = _unit_tokenizer(qa, out / "units", spec, progress)
    qa_summary = build_spoken_qa(qa, spec.n_pairs, units_dir, judge, progress=progress)
    vocoder = _vocoder(qa, units_dir, out / "vocoder", spec, device, progress)
    asr_manifest = _asr_manifest(qa)
    test = load_spoken_qa(qa / "test.jsonl")[: spec.test_limit]
    if not test:
        raise InputError("no held-out spoken QA pair survived the judge filter; raise n_pairs", qa / "test.jsonl")
    reference = _reference_row(test, vocoder, judge, out / "reference")

    runs: dict[str, dict[str, Any]] = {}
    for name in patterns:
        run_dir = out / "runs" / name
        done = run_dir / "metrics.json"
        if not done.is_file():
            print(f"\n== {name}", flush=True)
            _train_pattern(name, run_dir, lm_dir, vocoder.config.n_units, asr_manifest, qa / "train.jsonl", spec,
                           device, progress)
            metrics = _evaluate_pattern(name, run_dir, test, vocoder, judge, spec, device)
            atomic_write_text(done, json.dumps(metrics, indent=2) + "\n")
        runs[name] = json.loads(done.read_text(encoding="utf-8"))
    lengths = _teacher_forced(test, lm_dir)
    table = summarize(runs, lengths)
    result = {"preset": preset, "patterns": list(patterns), "steps": spec.steps, "spoken_qa": qa_summary,
              "reference": reference, "teacher_forced": lengths, "table": table,
              "seconds": round(time.perf_counter() - started, 1)}
    atomic_write_text(out / "results.json", json.dumps(result, indent=2) + "\n")
    markdown = format_markdown(table, reference, qa_summary)
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


def _unit_tokenizer(qa: Path, out: Path, spec: EsiPreset, progress: bool) -> Path:
    """k-means units trained on the TRAIN split's audio (questions and answers)."""
    from speechbraid.units.tokenizer import UnitTokenizerConfig, train_tokenizer

    if not (out / "unit_tokenizer.json").is_file():
        config = UnitTokenizerConfig(encoder=spec.unit_encoder, n_units=spec.n_units, rate_hz=25.0)  # type: ignore[arg-type]
        train_tokenizer(_asr_manifest(qa), config, progress=progress).save(out)
    return out


def _asr_manifest(qa: Path) -> Path:
    """Questions and answers of the train split as speech-text pairs (ASR data, unit training audio)."""
    from speechbraid.data.manifest import write_manifest
    from speechbraid.data.records import Utterance

    path = qa / "train_speech.jsonl"
    records = [Utterance(id=f"{p.id}-{role}", text=text, audio=audio, duration=duration, domain="spoken_qa")
               for p in load_spoken_qa(qa / "train.jsonl")
               for role, text, audio, duration in (("q", p.question, p.question_audio, p.question_duration),
                                                   ("a", p.answer_text, p.answer_audio, p.answer_duration))]
    write_manifest(records, path)
    return path


def _vocoder(qa: Path, units_dir: Path, out: Path, spec: EsiPreset, device: str | None, progress: bool) -> Any:
    from speechbraid.data.audio import load_audio
    from speechbraid.training.vocoder import make_pair, train_vocoder
    from speechbraid.units.tokenizer import UnitTokenizer
    from speechbraid.units.vocoder import UnitVocoder, VocoderConfig

    if (out / "vocoder.json").is_file():
        return UnitVocoder.load(out)
    tokenizer = UnitTokenizer.load(units_dir)
    config = VocoderConfig(n_units=tokenizer.config.n_units, unit_rate_hz=tokenizer.rate_hz,
                           d_model=spec.vocoder_d_model)
    pairs = [make_pair(p.units or (), load_audio(p.answer_audio)[0], config.upsample)
             for p in load_spoken_qa(qa / "train.jsonl") if p.answer_audio]
    return train_vocoder(pairs, out, config, steps=spec.vocoder_steps, device=device, progress=progress)


def _train_pattern(name: str, run_dir: Path, lm_dir: str | Path, n_units: int, asr_manifest: Path, qa_train: Path,
                   spec: EsiPreset, device: str | None, progress: bool) -> None:
    from speechbraid.config import load_config
    from speechbraid.configs import resolve_config

    overrides = [f"model.llm={lm_dir}", f"model.num_units={n_units}",
                 f"model.speech_head={'true' if name == 'parallel' else 'false'}",
                 f"data.train=[{{manifest: '{asr_manifest}', layout: asr, weight: 0.5}}, "
                 f"{{manifest: '{qa_train}', layout: gen-{name}, variant: both, weight: 1.0}}]", "seed=0",
                 f"stages=[{{name: full, steps: {spec.steps}, lr: {spec.lr}, warmup: 0.05}}]", *spec.overrides,
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


def summarize(runs: dict[str, dict[str, Any]], lengths: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per pattern and prompt modality: the table's columns, plus each figure's change against interleaved."""
    table: dict[str, dict[str, Any]] = {}
    for name, per_modality in runs.items():
        for modality, metrics in per_modality.items():
            row = {c: metrics.get(c) for c in COLUMNS} | {"teacher_forced_steps": lengths["steps_mean"][name]}
            base = runs.get("interleaved", {}).get(modality)
            if base is not None and name != "interleaved":
                for column in ("steps_mean", "sequence_length_mean", "decode_wall_s"):
                    row[f"{column}_vs_interleaved"] = (metrics[column] / base[column] - 1) if base[column] else None
            table[f"{name} ({modality} prompt)"] = row
    return table


def format_markdown(table: dict[str, dict[str, Any]], reference: dict[str, Any], qa: dict[str, Any]) -> str:
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}"

    def rel(v: float | None) -> str:
        return "" if v is None else f" ({100 * v:+.0f}%)"

    header = ("| pattern | text-out acc % | speech-out acc % | alignment WER % | decoding steps | sequence length "
              "| decode wall s | first audio s | teacher-forced steps |")
    lines = [header, "|" + "---|" * 9]
    for name, r in table.items():
        first = "-" if r["first_audio_s_mean"] is None else f"{r['first_audio_s_mean']:.2f}"
        lines.append(
            f"| {name} | {pct(r['text_accuracy'])} | {pct(r['speech_accuracy'])} | {pct(r['alignment_wer'])} "
            f"| {r['steps_mean']:.1f}{rel(r.get('steps_mean_vs_interleaved'))} "
            f"| {r['sequence_length_mean']:.1f}{rel(r.get('sequence_length_mean_vs_interleaved'))} "
            f"| {r['decode_wall_s']:.2f}{rel(r.get('decode_wall_s_vs_interleaved'))} | {first} "
            f"| {r['teacher_forced_steps']:.1f} |")
    lines += ["", f"Spoken QA: {qa['kept']} of {qa['candidates']} synthesised pairs kept by the judge filter "
                  f"(answer WER <= {100 * qa['max_wer']:.0f}%: {100 * qa['kept_fraction']:.1f}%); "
                  f"train {qa['splits']['train']}, test {qa['splits']['test']}.",
              "Reference answers' units through the vocoder: speech-out accuracy "
              f"{pct(reference['speech_accuracy'])}%, "
              f"WER against the answer sentence {pct(reference['alignment_wer'])}% (the ceiling for speech-out).",
              "(+x%) = change against plain interleaved with the same prompt modality."]
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
            values = [scale * (table[n][column] or 0) for n in names]
            ax.barh([i + 0.4 * k for i in range(len(names))], values, height=0.38, label=column)
        ax.set_title(title)
        if len(columns) > 1:
            ax.legend(loc="lower right")
    axes[0].set_yticks(range(len(names)), names)
    axes[0].invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

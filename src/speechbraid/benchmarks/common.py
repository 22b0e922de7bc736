"""Helpers shared by the benchmark suites."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import itertools
import multiprocessing
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_CORPUS = Path("data/default")  # where `speechbraid demo` / `corpus build` write the default corpus
DEFAULT_LM = "default-lm"  # the registered text prior `speechbraid pretrain-lm` produces
BENCH_LM_VOCAB = 4000  # the pretrain-lm default, so a stand-in LM has the default embedding/logit cost
WORDNET_PASSAGES = 30_000  # enough varied text for a 4000-token BPE in well under a second


def in_fresh_process(fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn(*args)`` in a new spawned process, so its peak-memory reading is its own."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def _proc_status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # reported in kB
    raise RuntimeError(f"/proc/self/status has no {field} line")


def peak_memory_mib(fn: Callable[[], Any], device: Any) -> float:
    """MiB that ``fn()`` needs at its peak on top of what is held when it starts.

    CUDA: peak of allocated tensors. CPU (Linux): the process's resident-set high-water mark, reset just
    before the call (``/proc/self/clear_refs``) after freed heap is handed back to the system
    (``malloc_trim``); it counts allocator slack too. Run it in a fresh process (:func:`in_fresh_process`),
    so memory freed by earlier work cannot be reused unseen.
    """
    import torch

    dev = torch.device(device)
    gc.collect()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
        fn()
        torch.cuda.synchronize(dev)
        return (torch.cuda.max_memory_allocated(dev) - base) / 2**20
    ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")  # "5" resets VmHWM to the current resident set
    base = _proc_status_mib("VmRSS")
    fn()
    return _proc_status_mib("VmHWM") - base


def format_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A plain Markdown table of ``rows`` restricted to ``columns``."""
    def cell(value: Any) -> str:
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def synchronize(device: Any) -> None:
    """Wait for queued GPU work, so wall-clock readings cover it (no-op on CPU)."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class Timing:
    """One call's wall seconds (GPU work included) and this process's CPU seconds (all its threads).

    On a shared CPU the wall time carries other processes' load; CPU time mostly does not, so ratios of CPU
    times are the steadier reading there (on GPU only the wall time means anything).
    """

    wall: float
    cpu: float


def timed(fn: Callable[[], Any], device: Any) -> Timing:
    """Time one ``fn()`` call."""
    synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    synchronize(device)
    return Timing(time.perf_counter() - wall, time.process_time() - cpu)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


@dataclass(frozen=True)
class BenchCorpus:
    """The manifests the model benchmarks read, and which corpus they are (printed with the figures)."""

    train: Path  # speech training split (audio + word alignments)
    test: Path  # speech test split (decoding)
    text: Path  # text-only manifest for the `text` layout of the training mix
    text_dir: Path  # plain-text files (*.txt) a stand-in tokenizer is trained on
    source: str


def bench_corpus(corpus_dir: str | Path, work_dir: str | Path) -> BenchCorpus:
    """The default corpus under ``corpus_dir`` if its speech train and test splits exist, otherwise a
    stand-in: the ``tiny`` default corpus (espeak-ng speech with word alignments) built in ``work_dir``."""
    corpus = Path(corpus_dir)
    train, test = (corpus / "speech" / split / "manifest.jsonl" for split in ("train", "test"))
    if train.is_file() and test.is_file():
        source = f"default corpus {corpus}"
    else:
        from speechbraid.corpora import build_default_corpus

        missing = train if not train.is_file() else test
        corpus = Path(work_dir) / "stand-in-corpus"
        build_default_corpus(corpus, size="tiny", seed=0, jobs=1, progress=False)
        train, test = (corpus / "speech" / split / "manifest.jsonl" for split in ("train", "test"))
        source = f"stand-in: tiny espeak-ng corpus built for this run ({missing} not found)"
    domain_text = corpus / "text" / "domain.jsonl"
    return BenchCorpus(train, test, domain_text if domain_text.is_file() else train, corpus / "text", source)


def bench_llm(work_dir: str | Path, text_dir: str | Path) -> tuple[Path, str]:
    """The causal LM the model benchmarks wrap: the registered ``default-lm`` if there is one, else an
    untrained Llama of the ``small`` preset with a BPE tokenizer trained on the corpus text plus WordNet
    (speed does not depend on the weights). Returns (model directory, description for the output)."""
    from speechbraid.errors import ConfigError
    from speechbraid.models.registry import resolve_model

    try:
        return resolve_model(DEFAULT_LM), f"registered {DEFAULT_LM!r}"
    except ConfigError:
        pass
    import torch

    from speechbraid.corpora.general import wordnet_passages
    from speechbraid.models.text_lm import build_text_lm, get_preset, save_tokenizer, train_bpe_tokenizer

    texts = [line for path in sorted(Path(text_dir).glob("*.txt"))
             for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts += itertools.islice(wordnet_passages(), WORDNET_PASSAGES)
    tokenizer = train_bpe_tokenizer(texts, BENCH_LM_VOCAB)
    torch.manual_seed(0)
    model = build_text_lm(get_preset("small"), tokenizer)
    out = Path(work_dir) / "bench-lm"
    model.save_pretrained(out)
    save_tokenizer(tokenizer, out)
    return out, (f"stand-in: untrained 'small' Llama (hidden 256, 4 layers), BPE vocab {len(tokenizer)} "
                 f"({DEFAULT_LM!r} not registered)")


@dataclass
class BenchSetup:
    """What every model benchmark starts from: the corpus, a speech LLM around the LLM, and notes."""

    corpus: BenchCorpus
    config: Any  # ModelConfig
    model: Any  # SpeechLLM, on the device
    tokenizer: Any  # the HF tokenizer
    llm_note: str


def bench_setup(corpus_dir: str | Path, work_dir: str | Path, *, llm: str | Path | None, conformer: Any,
                device: Any, seed: int, **model_options: Any) -> BenchSetup:
    """:func:`bench_corpus`, :func:`bench_llm` (unless ``llm`` is given) and a seeded speech LLM on ``device``;
    ``model_options`` are further :class:`ModelConfig` fields (speech units, a speech head)."""
    from speechbraid.models.build import ModelConfig, build_speech_llm
    from speechbraid.models.encoders import ConformerConfig
    from speechbraid.training.runtime import seed_everything

    corpus = bench_corpus(corpus_dir, work_dir)
    llm_dir, llm_note = (Path(llm), str(llm)) if llm is not None else bench_llm(work_dir, corpus.text_dir)
    seed_everything(seed)
    config = ModelConfig(llm=str(llm_dir), conformer=conformer or ConformerConfig(), **model_options)
    model, tokenizer = build_speech_llm(config)
    return BenchSetup(corpus, config, model.to(device), tokenizer, llm_note)


class BenchStepper:
    """Optimizer steps for timing: AdamW over a model whose trainable parameters follow a mode (regexes, as
    the trainer's stages), under the device's autocast. The lr is irrelevant to speed; a small one keeps the
    weights (and so the kernels' inputs) sane."""

    def __init__(self, model: Any, device: Any) -> None:
        import torch

        from speechbraid.device import autocast_dtype

        self.model = model
        self.device = device
        self.amp = autocast_dtype(device)
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def set_trainable(self, patterns: Sequence[str]) -> None:
        """Train what ``patterns`` match; a frozen encoder runs in eval mode, so cached outputs are what it
        would compute (no dropout)."""
        from speechbraid.models.build import set_trainable

        set_trainable(self.model, patterns)
        self.model.train()
        if self.model.encoder is not None and not any(p.requires_grad for p in self.model.encoder.parameters()):
            self.model.encoder.eval()

    def autocast(self) -> Any:
        from speechbraid.device import autocast

        return autocast(self.device, self.amp)

    def update(self, loss: Any) -> None:
        from speechbraid.training.runtime import apply_gradients

        loss.backward()
        apply_gradients(self.model, self.optimizer, None, 1.0)

"""Steps every study starts with."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path


def corpus_and_text_prior(out: Path, corpus: Path, *, corpus_size: str, lm_preset: str, lm_steps: int | None,
                          lm_dir: str | Path | None, progress: bool, synth: bool = True) -> Path:
    """Build (or resume) the default corpus (its speech too unless ``synth`` is false), and pretrain (or resume) the
    text LM into ``out/lm`` unless ``lm_dir`` names one (a directory or a registered model name); returns the LM."""
    from speechbraid.corpora import build_default_corpus
    from speechbraid.training.pretrain_lm import pretrain_lm

    build_default_corpus(corpus, size=corpus_size, synth=synth, progress=progress)
    if lm_dir is not None:
        return Path(lm_dir)
    # The text prior reads general text and the speech transcripts, NOT the domain text: that text holds the
    # test entities, and adding it is what the study's domain-text rows measure (as in the paper, where the
    # LLM is a general one).
    pretrain_lm([corpus / "text" / "general_lm.txt", corpus / "text" / "train.txt"], out / "lm",
                preset=lm_preset, steps=lm_steps, resume=True, progress=progress)
    return out / "lm"


def over_seeds(values: Sequence[float | None]) -> dict[str, float] | None:
    """Mean and spread (sample std; 0 with one seed) of one figure over seeds, None where no seed has it."""
    known = [v for v in values if v is not None]
    if not known:
        return None
    return {"mean": statistics.fmean(known), "std": statistics.stdev(known) if len(known) > 1 else 0.0}

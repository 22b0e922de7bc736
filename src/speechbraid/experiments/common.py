"""Steps every study starts with."""

from __future__ import annotations

from pathlib import Path


def corpus_and_text_prior(out: Path, corpus: Path, *, corpus_size: str, lm_preset: str, lm_steps: int | None,
                          lm_dir: str | Path | None, progress: bool) -> Path:
    """Build (or resume) the default corpus, and pretrain (or resume) the text LM into ``out/lm`` unless
    ``lm_dir`` names one; returns the LM directory."""
    from speechbraid.corpora import build_default_corpus
    from speechbraid.training.pretrain_lm import pretrain_lm

    build_default_corpus(corpus, size=corpus_size, progress=progress)
    if lm_dir is not None:
        return Path(lm_dir)
    # The text prior reads general text and the speech transcripts, NOT the domain text: that text holds the
    # test entities, and adding it is what the study's domain-text rows measure (as in the paper, where the
    # LLM is a general one).
    pretrain_lm([corpus / "text" / "general_lm.txt", corpus / "text" / "train.txt"], out / "lm",
                preset=lm_preset, steps=lm_steps, resume=True, progress=progress)
    return out / "lm"

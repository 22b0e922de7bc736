"""Metrics: pure functions from hypotheses and references to numbers (WER, EER, ...); jobs live in evaluation/."""

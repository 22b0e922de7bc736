"""Evaluation: ASR metrics (WER, TER, entity error rate) and the one text normalisation for scoring."""

from speechbraid.data.normalize import normalize_for_wer, text_for_entities, tokens_for_ter, tokens_for_wer
from speechbraid.metrics.asr import (
    EntityReport,
    EntityTally,
    ErrorCounts,
    ErrorRateResult,
    Hypothesis,
    MissedEntity,
    count_occurrences,
    entity_error_rate,
    evaluate,
    format_report,
    read_hypotheses,
    recognised_entities,
    ter,
    wer,
)

__all__ = [
    "EntityReport",
    "EntityTally",
    "ErrorCounts",
    "ErrorRateResult",
    "Hypothesis",
    "MissedEntity",
    "count_occurrences",
    "entity_error_rate",
    "evaluate",
    "format_report",
    "normalize_for_wer",
    "read_hypotheses",
    "recognised_entities",
    "ter",
    "text_for_entities",
    "tokens_for_ter",
    "tokens_for_wer",
    "wer",
]

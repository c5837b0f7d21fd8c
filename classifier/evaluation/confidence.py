"""The "not sure" rule at its documented path: `classifier.evaluation.confidence.answer` (docs/export.md,
docs/serving.md). It lives in classifier/model/confidence.py, beside the metadata.json that carries a model's
threshold; this module re-exports its public names (numpy only, no TensorFlow)."""

from ..model.confidence import (
    NOT_SURE,
    RULE,
    Answer,
    add_min_confidence_flag,
    answer,
    answered,
    check_min_confidence,
    in_effect,
    min_confidence_option,
)

__all__ = [
    "NOT_SURE",
    "RULE",
    "Answer",
    "add_min_confidence_flag",
    "answer",
    "answered",
    "check_min_confidence",
    "in_effect",
    "min_confidence_option",
]

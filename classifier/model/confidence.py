"""The "not sure" rule, in one place: every surface that answers with a class applies `answer`.

Given one image's probabilities and a threshold `min_confidence`, the answer is the top class, or
"not sure" with the top class beside it as the top guess when the top probability is below the
threshold. No threshold (None) always answers. Ties go to the first class in output order, as in
`Predictor.top_k`.

One rounding rule for a probability, wherever it is shown (`percent`): a percentage with one decimal, a
probability rounded down to its 0.1% step, a threshold rounded up to its step. "Not sure" is decided on those
same steps (`answered`: the top probability's step below the threshold's), so a shown answer and a shown
threshold never seem to disagree: a threshold of 0.98635 reads "98.7%", and an image at 0.9855 is "not sure"
at "98.5%", one at 0.9871 answered at "98.7%". A probability within `NOISE` of a step counts as that step
(float32 rounding: an image at exactly the threshold is answered).

A model's own threshold is suggested by training from its validation images
(`metrics.suggest_min_confidence`) and kept in metadata.json as `min_confidence`; a
`--min-confidence` option replaces it (`in_effect`), and exports record it for deployers.
Numpy only, no TensorFlow: a command that only reads probabilities can import it cheaply.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import ArgumentParser, UsageError

NOT_SURE = "not sure"
STEPS = 1000  # a probability is shown, and "not sure" decided, in steps of 0.1%
NOISE = 1e-4  # of a step (1e-7 of a probability): float32 rounding, not a difference
# The rule in words, for export.json and anyone who applies it outside this package.
RULE = (
    "answer the top class, or 'not sure' (top class as the top guess) when its probability is below min_confidence, "
    "both counted in steps of 0.1% (the probability rounded down, min_confidence up); null: always answer the top "
    "class"
)


@dataclass(frozen=True)
class Answer:
    """One image's answer: the top class and its probability, and whether it falls below the threshold."""

    label: str  # the top class; when not sure, the top guess
    confidence: float  # its probability
    not_sure: bool

    @property
    def text(self) -> str:
        """The answer in words: `cats`, or `not sure (top guess: cats, 41.0%)`."""
        return f"{NOT_SURE} (top guess: {self.label}, {percent(self.confidence)})" if self.not_sure else self.label


def steps(probability, up: bool = False):
    """A probability (or an array of them) in 0.1% steps: rounded down, or `up` (a threshold); ints."""
    scaled = np.asarray(probability, np.float64) * STEPS
    counted = np.ceil(scaled - NOISE) if up else np.floor(scaled + NOISE)
    return counted.astype(np.int64) if counted.ndim else int(counted)


def percent(probability, up: bool = False) -> str:
    """A probability as the page and the commands show it: "98.6%" (one decimal, rounded down; `up`: a threshold,
    rounded up). The one rounding rule for a probability (the module docstring)."""
    return f"{steps(probability, up) / (STEPS / 100):.1f}%"


def on_steps(probability: float) -> float:
    """A threshold on the 0.1% steps it is applied on (rounded up): what `answered` compares with."""
    return steps(probability, up=True) / STEPS


def answered(confidence, min_confidence: float | None):
    """Whether a top probability (or an array of them) is answered at `min_confidence`: its step at or above the
    threshold's (`steps`: the probability rounded down, the threshold up); None: all."""
    if min_confidence is None:
        return np.ones_like(confidence, dtype=bool)
    return np.asarray(steps(confidence) >= steps(min_confidence, up=True))


def answer(probabilities: np.ndarray, class_names: Sequence[str], min_confidence: float | None) -> Answer:
    """The answer for one image's probabilities (in `class_names` order) at `min_confidence`."""
    top = int(np.argmax(probabilities))  # the first of equal maxima, like a stable sort
    confidence = float(probabilities[top])
    return Answer(class_names[top], confidence, not bool(answered(confidence, min_confidence)))


def in_effect(option: float | None, model_default: float | None) -> float | None:
    """The threshold to apply: the option when given, else the model's own (None: always answer)."""
    return model_default if option is None else option


def add_min_confidence_flag(parser: ArgumentParser, env: str | None = None) -> None:
    """--min-confidence P for a command that answers (`min_confidence_option` checks its value); `env`: an
    environment variable that sets it too, the flag winning."""
    parser.add_argument(
        "--min-confidence",
        default=os.environ.get(env) if env else None,
        metavar="P",
        help="answer 'not sure' (with the top guess) when the top probability is below P, 0 <= P < 1; 0: always "
        f"answer ({f'env {env}; ' if env else ''}default: the model's own threshold, suggested by training)",
    )


def min_confidence_option(value: str | float | None, flag: str = "--min-confidence") -> float | None:
    """A flag's or environment variable's text (or a number) as a threshold, checked by `check_min_confidence`."""
    number = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise UsageError(
                f"{flag} {value}: not a number; give a probability from 0 up to (not including) 1"
            ) from None
    return check_min_confidence(number, flag, shown=value)


def check_min_confidence(value, name: str = "min_confidence", shown=None) -> float | None:
    """`value` as a threshold: None, or a number 0 <= P < 1; UsageError naming `name` and `shown` (what the user
    wrote; default: the value) otherwise."""
    if value is None:
        return None
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not (number and 0 <= value < 1):  # NaN fails this too
        raise UsageError(
            f"{name} {repr(value) if shown is None else shown}: must be a number from 0 up to (not including) 1; an "
            "image whose top probability is below it is answered 'not sure'"
        )
    return float(value)

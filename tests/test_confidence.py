"""The "not sure" rule on hand-made probabilities, and the checks of its threshold."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT

from classifier.errors import UsageError
from classifier.model.confidence import answer, answered, in_effect, min_confidence_option, percent

NAMES = ["cat", "dog", "fox"]


def test_the_top_class_is_the_answer_unless_below_the_threshold():
    probabilities = np.array([0.41, 0.35, 0.24], np.float32)
    sure = answer(probabilities, NAMES, 0.4)
    assert (sure.label, sure.not_sure, sure.text) == ("cat", False, "cat")
    unsure = answer(probabilities, NAMES, 0.5)
    assert (unsure.label, unsure.not_sure) == ("cat", True)
    assert unsure.text == "not sure (top guess: cat, 41.0%)" and unsure.confidence == pytest.approx(0.41)
    assert not answer(probabilities, NAMES, None).not_sure  # no threshold: always an answer
    assert not answer(probabilities, NAMES, 0.0).not_sure
    # At exactly the threshold the image is answered (the suggestion counts it as answered too).
    assert not answer(probabilities, NAMES, float(probabilities[0])).not_sure
    assert answer(np.array([0.4, 0.4, 0.2]), NAMES, None).label == "cat"  # a tie: the first class, as top_k ranks
    np.testing.assert_array_equal(answered(np.array([0.2, 0.5, 0.9]), 0.5), [False, True, True])
    np.testing.assert_array_equal(answered(np.array([0.2, 0.5]), None), [True, True])


def test_one_rounding_rule_and_not_sure_is_decided_on_it():
    """Issue 26: 0.98635 shown as "0.99" beside a "not sure" and as "0.986" on the card. A probability is shown in
    0.1% steps rounded down, a threshold rounded up, and "not sure" is decided on those steps: the answer's figure
    is below the shown threshold exactly when the answer is "not sure"."""
    assert percent(0.98635, up=True) == "98.7%" and percent(0.98635) == "98.6%"
    assert percent(0.9855) == "98.5%" and answer(np.array([0.9855, 0.0145]), NAMES[:2], 0.98635).not_sure
    assert not answer(np.array([0.9871, 0.0129]), NAMES[:2], 0.98635).not_sure
    # Between the threshold and its step above: its shown figure (98.6%) would read below 98.7%, so not sure.
    assert answer(np.array([0.9864, 0.0136]), NAMES[:2], 0.98635).not_sure
    assert (percent(1.0), percent(0.0), percent(0.99999), percent(0.5, up=True)) == ("100.0%", "0.0%", "99.9%", "50.0%")
    rng = np.random.default_rng(0)
    thresholds, tops = rng.random(2000), rng.random(2000)
    for threshold, top in zip(thresholds, tops, strict=True):
        said = answer(np.array([top, 0.0]), NAMES[:2], float(threshold))
        below = float(percent(top)[:-1]) < float(percent(threshold, up=True)[:-1])
        assert said.not_sure == below, (top, threshold)
    # float32 probabilities at a threshold on the steps are answered, however they round.
    assert bool(answered(np.float32(0.987), 0.987)) and bool(answered(np.float32(0.41), float(np.float32(0.41))))


def test_the_option_wins_over_the_models_own_threshold():
    assert in_effect(None, 0.83) == 0.83 and in_effect(0.5, 0.83) == 0.5 and in_effect(0.0, 0.83) == 0.0
    assert in_effect(None, None) is None


def test_the_option_is_a_probability_below_one():
    assert min_confidence_option(None) is None
    assert min_confidence_option("0") == 0.0 and min_confidence_option("0.75") == 0.75
    for text, words in [
        ("abc", "--min-confidence abc: not a number"),
        ("1", "--min-confidence 1: must be a number from 0 up to (not including) 1"),
        ("-0.1", "--min-confidence -0.1: must be"),
        ("nan", "--min-confidence nan: must be"),
    ]:
        with pytest.raises(UsageError) as caught:
            min_confidence_option(text)
        assert str(caught.value).startswith(words) and "\n" not in str(caught.value), text


def test_the_rule_and_the_suggestion_import_without_tensorflow():
    """A command that only reads probabilities (a batch CLI, a deployer's script) pays no TensorFlow import."""
    code = (
        "import sys, classifier.evaluation.confidence, classifier.model.confidence, classifier.evaluation.metrics; "
        "print('tensorflow' in sys.modules)"
    )
    shown = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == "False"


def test_the_documented_path_is_the_same_rule():
    """docs/export.md and docs/serving.md name `classifier.evaluation.confidence.answer`."""
    from classifier.evaluation import confidence as documented
    from classifier.model import confidence

    assert documented.answer is confidence.answer
    assert all(getattr(documented, name) is getattr(confidence, name) for name in documented.__all__)

"""The `Predictor`'s model call: the backbone in LiteRT, the head in TensorFlow, or all of it in TensorFlow.

A model's frozen part (its backbone's scaling, the backbone, the pooling: pixels at the model's size
-> feature vector) is about 93% of a prediction's time, and LiteRT's XNNPACK kernels run it about
twice as fast as TensorFlow's on a CPU, with the same features to float rounding (figures:
benchmarks/README.md, "Waiting times"). The head, small and retrained often, stays in TensorFlow. A test-time
flips model (model/flips.py) runs its frozen part on each image and its mirror image, one batch, and averages its
head's answers, as the model does.

The frozen part's conversion, its check against TensorFlow and its cache (~/.cache/classifier/litert/, one
checked conversion per distinct frozen part, made from the model Keras loaded, never read from the model
folder) are classifier/model/litert.py's; training's backbone pass uses the same ones, so a model trained
with its backbone in LiteRT finds its conversion at its first prediction. Where conversion or the check fails,
the model runs in TensorFlow and the `log` says why.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .._tf import tf
from ..console import Log, say
from ..errors import UsageError
from ..model.artifacts import DEFAULT_ENGINE, ENGINES
from ..model.flips import average
from ..model.litert import litert_features
from ..model.network import feature_extractor, flips, head

Probabilities = Callable[[np.ndarray], np.ndarray]  # float32 pixels (N, H, W, 3) at the model's size -> (N, classes)


def probabilities_function(
    model, size: tuple[int, int], engine: str = DEFAULT_ENGINE, log: Log = say, in_subprocess: bool = False
) -> tuple[str, Probabilities]:
    """(the engine that runs, the model's pixels -> probabilities call) for `engine` (artifacts.ENGINES): "litert"
    falls back to "tensorflow", saying why, where the backbone cannot run in LiteRT; "auto" uses LiteRT only where
    the conversion is cached. `in_subprocess`: a conversion runs in a child process (see litert.litert_features)."""
    if engine not in ENGINES:
        raise UsageError(f"--engine {engine}: choose one of {', '.join(ENGINES)}")
    convert = engine == "litert"
    features = (
        None if engine == "tensorflow" else litert_features(feature_extractor(model), size, log, convert, in_subprocess)
    )
    if features is None:
        # One graph traced here for every batch: no retracing, no per-call overhead of predict(). Calling the
        # concrete function itself also skips tf.function's per-call lookup of its trace, which hashes every
        # captured weight, hundreds for InceptionV3 (figures: benchmarks/README.md).
        whole = _traced(model, tf.TensorSpec([None, *size, 3], tf.float32))
        return "tensorflow", lambda pixels: whole(tf.convert_to_tensor(pixels, tf.float32)).numpy()
    classify = head(model)
    on_features = _traced(classify, tf.TensorSpec(classify.input.shape, tf.float32))
    if flips(model):
        return "litert", _flip_averaged(features, on_features)
    return "litert", lambda pixels: on_features(tf.convert_to_tensor(features(pixels))).numpy()


def _flip_averaged(features, on_features) -> Probabilities:
    """A test-time flips model's call (model/flips.py) as the model computes it: the frozen part on the pixels and
    their mirror images in one batch, the head on every vector, each image's two answers averaged."""

    def probabilities(pixels: np.ndarray) -> np.ndarray:
        both = np.concatenate([pixels, np.flip(pixels, axis=2)])  # (2N, H, W, 3): axis 2 is the width
        answers = on_features(tf.convert_to_tensor(features(both))).numpy()
        return average(answers[: len(pixels)], answers[len(pixels) :])

    return probabilities


def _traced(model, spec):
    return tf.function(lambda inputs: model(inputs, training=False)).get_concrete_function(spec)

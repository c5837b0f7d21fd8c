"""Test-time flips (`--flip-average`): the saved model averages the probabilities of an image and of its mirror image.

    image (H, W, 3), 0..255
      -> Resizing(S) "resize"                          the model's own, as in every model (network.py)
      -> x and mirror(x)                               left-right mirror at the model's size S, exact
      -> "classifier" on each                          the ordinary model (network.build_model), nested, shared
      -> Average "probabilities"                       (p(x) + p(mirror(x))) / 2

mirror(x) is Permute((1, 3, 2)) -> Dense(S, no bias, frozen, anti-identity kernel) -> Permute((1, 3, 2)): each
output pixel is one input pixel times 1 plus zeros, so the mirror is exact in float32 (Keras ships no layer that
reverses an axis, and a Lambda would not load in safe mode). It costs S * S * 3 * S multiply-adds an image (68 M at
S = 260), next to nothing beside a backbone. Only built-in layers, so `keras.models.load_model` loads the model in
safe mode with nothing of ours, and it converts to TFLite whole.

The nested classifier keeps its own Resizing layer, the identity at S: its frozen part is then exactly the one a
model without flips has, so the feature cache and the LiteRT conversion cache (inference/runtime.py) serve both.
Training trains the nested classifier (`network.classifier`); the LiteRT runtime runs its frozen part on the pixels
and their mirror image in one batch and averages its head's outputs, as the model does.
"""

from __future__ import annotations

import numpy as np

from .._tf import keras
from .network import CLASSIFIER_MODEL, RESIZE_LAYER

MIRROR_LAYER = "mirror"
AVERAGE_LAYER = "probabilities"


def with_flips(model, size: tuple[int, int]):
    """A model that averages `model`'s probabilities on each image (resized to `size`, as `model` does) and on its
    mirror image; `model` (an ordinary, flat model as network.build_model makes it) is nested in it, weights shared."""
    inner = keras.Model(model.input, model.output, name=CLASSIFIER_MODEL)  # the same graph under the nested name
    resize = model.get_layer(RESIZE_LAYER)
    image = keras.Input(shape=(None, None, 3), name="image")
    pixels = keras.layers.Resizing(
        *size, interpolation=resize.interpolation, antialias=resize.antialias, name=RESIZE_LAYER
    )(image)
    mirrored = mirror(pixels, size[1])
    # training=False: the flips model only answers (what trains is the nested classifier, network.classifier); left
    # unset, a direct call model(x) of the saved model ran the head's Dropout (Keras 3.15).
    answers = [inner(pixels, training=False), inner(mirrored, training=False)]
    outputs = keras.layers.Average(dtype="float32", name=AVERAGE_LAYER)(answers)  # float32 as the head's softmax
    return keras.Model(image, outputs, name=f"{model.name}_flips")


def mirror(pixels, width: int):
    """`pixels` (N, H, `width`, C) mirrored left-right, from built-in layers: the width axis last, times the
    anti-identity (frozen, float32 whatever the precision policy, so pixels are not rounded), and back."""
    anti_identity = np.eye(width, dtype=np.float32)[::-1]
    x = keras.layers.Permute((1, 3, 2), name="width_last")(pixels)
    x = keras.layers.Dense(
        width,
        use_bias=False,
        trainable=False,
        kernel_initializer=keras.initializers.Constant(anti_identity),
        dtype="float32",
        name=MIRROR_LAYER,
    )(x)
    return keras.layers.Permute((1, 3, 2), name="width_back")(x)


def average(probabilities, mirrored):
    """The model's Average, in numpy: (p(x) + p(mirror(x))) / 2, for a runtime that runs the two halves itself."""
    return (np.asarray(probabilities) + np.asarray(mirrored)) / 2

"""`--backbone hub:HANDLE`: a TF-Hub image feature-vector model as a Keras 3 layer.

`hub.KerasLayer` belongs to tf_keras and cannot sit in a Keras 3 model, so `HubFeatures` wraps
`tensorflow_hub.load` (which resolves a URL or local SavedModel folder and caches downloads under
TFHUB_CACHE_DIR) in a small layer of our own. Its config is the handle: `model.keras` stores the
head's weights and, on load, the layer loads the (cached) hub model again. The layer is registered
with Keras when this module is imported; `classifier.artifacts.load_model` and `Predictor` do
that, so plain `keras.models.load_model` only needs `import classifier.hub` first.

The hub model stays frozen: its variables are not Keras variables, and TF-Hub feature vectors take
images scaled to [0, 1], which the Rescaling layer in front of it provides.
"""

from __future__ import annotations

from ._tf import keras, tf
from .errors import UsageError

HUB_MIN_SIZE = 32  # TF-Hub image models accept any size; below ~32 px their pooling stacks run out of pixels
HUB_DEFAULT_SIZE = 224  # the size nearly every TF-Hub image feature vector was trained at


def load_hub_module(handle: str):
    """Resolve (download and cache, or use a local folder) and load a TF-Hub SavedModel; UsageError if it cannot."""
    import tensorflow_hub as hub  # imported here: it is slow to import and only hub backbones need it

    try:
        module = hub.load(handle)
    except Exception as error:  # network, missing folder, not a SavedModel: hub raises many kinds
        raise UsageError(
            f"--backbone hub:{handle}: cannot load it as a TF-Hub model ({str(error).strip().splitlines()[0][:200]})"
        ) from None
    if not callable(module):
        raise UsageError(
            f"--backbone hub:{handle}: not a TF2 image feature-vector model (the loaded SavedModel is not callable)"
        )
    return module


@keras.saving.register_keras_serializable(package="classifier")
class HubFeatures(keras.layers.Layer):
    """A frozen TF-Hub image feature vector: (N, H, W, 3) in [0, 1] -> (N, features)."""

    def __init__(self, handle: str, **kwargs):
        kwargs["trainable"] = False
        super().__init__(**kwargs)
        self.handle = handle
        self._module = load_hub_module(handle)

    def call(self, images):
        # tf.data leaves the channel count unknown; a hub signature insists on 3.
        return self._module(tf.ensure_shape(tf.cast(images, tf.float32), [None, None, None, 3]))

    def get_config(self):
        return {**super().get_config(), "handle": self.handle}


def hub_backbone(handle: str):
    """A registry-style Backbone for `hub:HANDLE`."""
    from .backbones import Backbone, scaling

    if not handle:
        raise UsageError(
            "--backbone hub: needs a handle after the colon, e.g. hub:https://tfhub.dev/... or hub:path/to/saved_model"
        )

    def build(input_shape, weights, alpha):
        if weights != "imagenet":
            raise UsageError(
                f"--weights {weights or 'none'}: a hub: backbone brings its own weights; leave --weights at its default"
            )
        inputs = keras.Input(input_shape)
        return keras.Model(inputs, HubFeatures(handle, name="hub_features")(inputs), name="hub")

    return Backbone(
        f"hub:{handle}",
        build,
        scaling(1 / 255.0, 0.0),
        min_size=HUB_MIN_SIZE,
        default_cut=None,
        default_size=HUB_DEFAULT_SIZE,
    )

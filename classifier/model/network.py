"""The classifier: raw RGB pixels of any size -> class probabilities, all inside one Keras model.

    image (H, W, 3), 0..255
      -> Resizing(image_size)           the same op training's tf.data pipeline runs
      -> backbone_scaling               the backbone's own input preprocessing
                                        (Rescaling, or a fixed 1x1 conv for caffe mode)
      -> backbone (frozen)              e.g. InceptionV3 up to mixed7
      -> pooling                        -> "features": fixed for a frozen backbone, so cacheable
      -> head: Dense relu -> Dropout -> Dense softmax (one probability per class)

The head is a nested model, so it can be trained alone on cached features and still be the head
of the full model. Only built-in Keras layers, so `keras.models.load_model("model.keras")` needs
nothing of ours (except a `hub:` backbone, whose layer registers itself when `classifier.model.hub` is imported).

A frozen backbone is built once per process for its settings and reused by the next model built
with them (a retrain in the same process, as the browser's Train tab does), so the network is not
built and its weights file read again; a model sharing it saves exactly as one built alone.
"""

from __future__ import annotations

import re
from pathlib import Path

from .._tf import keras
from ..config import RESIZE_ANTIALIAS, TrainConfig
from .backbones import HUB_PREFIX, backbone_key, build_feature_extractor, get_backbone
from .finetune import BACKBONE_LAYER

SCRATCH_BATCHNORM_MOMENTUM = 0.9
FEATURES_LAYER = "pool"
RESIZE_LAYER = "resize"
HEAD_LAYER = "head"
CLASSIFIER_MODEL = "classifier"  # the ordinary classifier nested in a test-time flips model (model/flips.py)


# The last frozen backbone built, as (its key, the network, its feature extractors by pooling layer): one entry,
# so it holds one network's memory at most.
_shared_backbone: list[tuple[tuple, object, dict]] = []


def build_model(config: TrainConfig, num_classes: int):
    """Build the full model for a resolved `config`; the backbone is frozen unless there are no weights to keep.

    The head's initial weights follow `config.seed` alone, whether the backbone was built or reused."""
    backbone = get_backbone(config.backbone)
    features = _backbone_network(backbone, config)
    keras.utils.set_random_seed(config.seed)
    if not config.transfer:
        # From scratch, BatchNorm's moving statistics must catch up with weights that change fast;
        # Keras' 0.99 needs thousands of steps, so a small folder would validate at chance for ages.
        for layer in features.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = SCRATCH_BATCHNORM_MOMENTUM

    inputs = keras.Input(shape=(None, None, 3), name="image")
    x = keras.layers.Resizing(
        *config.image_shape, interpolation="bilinear", antialias=RESIZE_ANTIALIAS, name=RESIZE_LAYER
    )(inputs)
    x = backbone.preprocessing()(x)
    # training=False keeps a frozen backbone's BatchNorm in inference mode, even when fine-tuned later.
    x = features(x, training=False) if config.transfer else features(x)
    if len(x.shape) == 4:
        pool = keras.layers.GlobalAveragePooling2D if config.head_pooling == "avg" else keras.layers.Flatten
        x = pool(name=FEATURES_LAYER)(x)
    else:  # a backbone that already ends in a vector: name the boundary all the same
        x = keras.layers.Identity(name=FEATURES_LAYER)(x)
    outputs = build_head(x.shape[-1], config, num_classes)(x)
    return keras.Model(inputs, outputs, name=re.sub(r"\W+", "_", f"{backbone.name}_classifier"))


def _backbone_network(backbone, config: TrainConfig):
    """The backbone network for `config`: the one built last when it stays frozen with the same settings."""
    key = _frozen_backbone_key(config)
    if key is not None and _shared_backbone and _shared_backbone[0][0] == key:
        return _shared_backbone[0][1]
    features = build_feature_extractor(backbone, config.image_shape, config.weights, config.cut_layer, config.alpha)
    features.trainable = not config.transfer
    if key is not None:
        _shared_backbone[:] = [(key, features, {})]
    return features


def _frozen_backbone_key(config: TrainConfig) -> tuple | None:
    """What a frozen backbone network depends on; None for one that must be built fresh: it trains (--weights
    none, fine-tuning), lives under a distribution strategy or another precision, or is a hub model."""
    if (
        not config.transfer
        or config.fine_tune_epochs
        or config.backbone.startswith(HUB_PREFIX)
        or config.strategy != "default"
        or config.mixed_precision
    ):
        return None
    weights = config.weights
    if weights != "imagenet":
        file = Path(weights)
        if not file.is_file():
            return None  # building says what is wrong
        stat = file.stat()
        weights = (str(file.resolve()), stat.st_size, stat.st_mtime_ns)  # an edited file is built again
    return (backbone_key(config.backbone), config.image_shape, weights, config.cut_layer, config.alpha)


def build_head(feature_dim: int, config: TrainConfig, num_classes: int):
    """Dense relu, Dropout and the softmax output: a model from a feature vector to probabilities."""
    features = keras.Input(shape=(feature_dim,), name="features")
    x = features
    if config.dense_units:
        x = keras.layers.Dense(config.dense_units, activation="relu", name="dense")(x)
    x = keras.layers.Dropout(config.dropout, name="dropout")(x)
    # float32 even under mixed precision: a float16 softmax loses small probabilities.
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(features, outputs, name=HEAD_LAYER)


def classifier(model):
    """The ordinary classifier in `model` (image -> probabilities in one pass): the one nested in a test-time flips
    model (model/flips.py), else `model` itself. What trains, and where the backbone and the head live."""
    nested = [layer for layer in model.layers if layer.name == CLASSIFIER_MODEL and isinstance(layer, keras.Model)]
    return nested[0] if nested else model


def flips(model) -> bool:
    """Whether `model` averages the probabilities of each image and its mirror image (model/flips.py)."""
    return classifier(model) is not model


def feature_extractor(model):
    """The full model's frozen part, image -> feature vector: what the feature cache stores (of a test-time flips
    model, its classifier's: the image as it is). For a model on the shared frozen backbone, the extractor made for
    the first such model with the same pooling (the same computation), so that its traced graph can be reused
    (features.traced)."""
    model = classifier(model)
    pooling = type(model.get_layer(FEATURES_LAYER)).__name__
    shared = next((entry[2] for entry in _shared_backbone if entry[1] is model.get_layer(BACKBONE_LAYER)), {})
    if pooling not in shared:
        shared[pooling] = keras.Model(model.input, model.get_layer(FEATURES_LAYER).output, name="feature_extractor")
    return shared[pooling]


def head(model):
    """The full model's trainable head (shares its weights), feature vector -> probabilities (of a test-time flips
    model, its classifier's head, which the model applies to the image's features and to its mirror image's)."""
    return classifier(model).get_layer(HEAD_LAYER)


def resize_antialias(model) -> bool:
    """Whether `model`'s Resizing layer antialiases, so serving resizes exactly as the model was trained."""
    return bool(model.get_layer(RESIZE_LAYER).antialias)


def compile_model(model, learning_rate: float, steps_per_execution: int = 1) -> None:
    """Adam at `learning_rate`, cross-entropy and accuracy; `steps_per_execution` steps per call of the compiled
    step (Keras runs callbacks' batch hooks between calls only: ours work per epoch)."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        steps_per_execution=steps_per_execution,
    )

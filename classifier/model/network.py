"""The classifier: raw RGB pixels of any size -> class probabilities, all inside one Keras model.

    image (H, W, 3), 0..255
      -> Resizing(image_size)           the same op training's tf.data pipeline runs
      -> backbone_scaling               the backbone's own input preprocessing
                                        (Rescaling, or a fixed 1x1 conv for caffe mode)
      -> backbone (frozen)              e.g. InceptionV3 up to mixed7
      -> pooling                        -> "features": fixed for a frozen backbone, so cacheable
      -> head: Dense relu -> Dropout -> Dense softmax (one probability per class)

A combined backbone (`--backbone inception_v3@150+mobilenet_v2@224`, model/backbones.py) puts its parts side by
side between the Resizing and the head, each a nested model "part_1", "part_2"... from pixels at the model's
size S (the largest part's) to that part's pooled features:

    image -> Resizing(S) -> part_i: [Resizing(size_i) when size_i != S] -> backbone_scaling -> backbone (frozen)
          -> pooling  (for each part, in order)  -> Concatenate "pool" -> head

so the features are the parts' own, concatenated in part order, and pixels at the model's size are still one
size S for serving, LiteRT and exports. A single backbone builds exactly as above (models saved before stay
valid); `part_extractors` gives each part's extractor, what the feature cache stores per part.

The head is a nested model, so it can be trained alone on cached features and still be the head
of the full model. Only built-in Keras layers, so `keras.models.load_model("model.keras")` needs
nothing of ours (except a `hub:` backbone, whose layer registers itself when `classifier.model.hub` is imported).

A frozen backbone is built once per process for its settings and reused by the next model built
with them (a retrain in the same process, as the browser's Train tab does, or a combined model's part trained
alone before), so the network is not built and its weights file read again; a model sharing it saves exactly as
one built alone.
"""

from __future__ import annotations

import re
from pathlib import Path

from .._tf import keras
from ..config import RESIZE_ANTIALIAS, TrainConfig
from .backbones import HUB_PREFIX, backbone_key, build_feature_extractor, get_backbone, parts
from .finetune import BACKBONE_LAYER

SCRATCH_BATCHNORM_MOMENTUM = 0.9
FEATURES_LAYER = "pool"
RESIZE_LAYER = "resize"
HEAD_LAYER = "head"
PART_LAYER = "part_{}"  # a combined model's parts, numbered from 1 in order
PART_RESIZE_LAYER = "part_resize"  # a part's own Resizing, from the model's size to the part's (not RESIZE_LAYER)
CLASSIFIER_MODEL = "classifier"  # the ordinary classifier nested in a test-time flips model (model/flips.py)


# The frozen backbones of the last model built, as (its key, the network, its feature extractors by pooling layer):
# one entry (a combined model's: one per part), so it holds one model's networks' memory at most.
_shared_backbone: list[tuple[tuple, object, dict]] = []


def build_model(config: TrainConfig, num_classes: int):
    """Build the full model for a resolved `config`; the backbone is frozen unless there are no weights to keep.

    The head's initial weights follow `config.seed` alone, whether the backbone was built or reused."""
    if len(parts(config)) > 1:
        return _combined_model(config, num_classes)
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
    x = _resizing(config.image_shape, RESIZE_LAYER)(inputs)
    x = backbone.preprocessing()(x)
    # training=False keeps a frozen backbone's BatchNorm in inference mode, even when fine-tuned later.
    x = features(x, training=False) if config.transfer else features(x)
    x = _pooled(x, config)
    outputs = build_head(x.shape[-1], config, num_classes)(x)
    return keras.Model(inputs, outputs, name=re.sub(r"\W+", "_", f"{backbone.name}_classifier"))


def _resizing(shape: tuple[int, int], name: str):
    """The Resizing layer every image goes through: training's resize rule (config.RESIZE_ANTIALIAS)."""
    return keras.layers.Resizing(*shape, interpolation="bilinear", antialias=RESIZE_ANTIALIAS, name=name)


def _pooled(x, config: TrainConfig):
    """The backbone's output as the feature vector, layer FEATURES_LAYER: a feature map pooled (--head-pooling), a
    vector as it is (a backbone that already ends in one: the boundary is named all the same)."""
    if len(x.shape) == 4:
        pool = keras.layers.GlobalAveragePooling2D if config.head_pooling == "avg" else keras.layers.Flatten
        return pool(name=FEATURES_LAYER)(x)
    return keras.layers.Identity(name=FEATURES_LAYER)(x)


def _combined_model(config: TrainConfig, num_classes: int):
    """A combined backbone's model (module docstring): every part frozen, each reusing the network a model of that
    part alone would share (`_backbone_network`)."""
    every, kept = parts(config), []
    networks = [_backbone_network(get_backbone(part.backbone), part, kept) for part in every]
    if kept:
        _shared_backbone[:] = kept
    keras.utils.set_random_seed(config.seed)
    inputs = keras.Input(shape=(None, None, 3), name="image")
    x = _resizing(config.image_shape, RESIZE_LAYER)(inputs)
    # training=False as for a single backbone: else the Resizing layer's default (training=True) reaches the parts
    # and the head through Keras' call context when the model is called without `training`.
    pooled = [
        _part_model(part, network, config.image_shape, PART_LAYER.format(number))(x, training=False)
        for number, (part, network) in enumerate(zip(every, networks, strict=True), start=1)
    ]
    x = keras.layers.Concatenate(name=FEATURES_LAYER)(pooled)
    outputs = build_head(x.shape[-1], config, num_classes)(x)
    return keras.Model(inputs, outputs, name="combined_classifier")


def _part_model(part: TrainConfig, network, shape: tuple[int, int], name: str):
    """One part of a combined model, a nested model `name`: pixels at the model's size `shape` -> [Resizing to the
    part's own size] -> its scaling -> its frozen `network` -> its pooling, the part's feature vector."""
    pixels = keras.Input(shape=(*shape, 3), name="pixels")
    x = pixels if part.image_shape == tuple(shape) else _resizing(part.image_shape, PART_RESIZE_LAYER)(pixels)
    x = get_backbone(part.backbone).preprocessing()(x)
    return keras.Model(pixels, _pooled(network(x, training=False), part), name=name)


def _backbone_network(backbone, config: TrainConfig, kept: list | None = None):
    """The backbone network for `config`: the one a model built last shares when it stays frozen with the same
    settings. Its entry becomes the shared one, or joins `kept` (a combined model's parts, shared together)."""
    key = _frozen_backbone_key(config)
    entry = next((entry for entry in _shared_backbone if key is not None and entry[0] == key), None)
    if entry is None:
        features = build_feature_extractor(backbone, config.image_shape, config.weights, config.cut_layer, config.alpha)
        features.trainable = not config.transfer
        entry = (key, features, {})
    if key is not None and kept is None:
        _shared_backbone[:] = [entry]
    elif key is not None:
        kept.append(entry)
    return entry[1]


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
    network = next((layer for layer in model.layers if layer.name == BACKBONE_LAYER), None)  # none: combined
    shared = next((entry[2] for entry in _shared_backbone if network is not None and entry[1] is network), {})
    if pooling not in shared:
        shared[pooling] = keras.Model(model.input, model.get_layer(FEATURES_LAYER).output, name="feature_extractor")
    return shared[pooling]


def part_extractors(model) -> list:
    """Each part's extractor, pixels at the model's size -> that part's feature vector, in part order: a combined
    model's nested parts, or a single backbone's `feature_extractor`. The feature cache stores each one's vectors."""
    model = classifier(model)
    found = [layer for layer in model.layers if re.fullmatch(PART_LAYER.format(r"\d+"), layer.name)]
    return sorted(found, key=lambda layer: int(layer.name.rpartition("_")[2])) or [feature_extractor(model)]


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

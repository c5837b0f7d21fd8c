"""Backbones: one registry entry each, so adding a network is one small, local change.

A backbone here is a function from a 0..255 RGB image batch at a fixed size to a feature map or
vector. Its own input preprocessing is a layer inside the saved model, so nobody who loads a model
can feed it pixels scaled the wrong way. `hub:HANDLE` builds a TF-Hub feature vector (see hub.py).

`--weights imagenet` means Keras' own download, except where the package ships the file itself
(`BUNDLED_WEIGHTS`, in classifier/model/weights/ with its NOTICE): MobileNetV2 0.35 then trains with no
download, at any image size (convolution weights do not depend on it). `weights_key` names the
weights for the feature cache by the file's content, so the bundled file and the same file passed
as `--weights FILE` share cached features.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .._tf import keras
from ..config import TrainConfig
from ..console import Log, say
from ..errors import UsageError, first_line
from ..files import sha256_of
from .metadata import HUB_PREFIX, TOP  # the names metadata.json records, too

WEIGHTS_DIR = Path(__file__).parent / "weights"  # package data (pyproject.toml), with its NOTICE
# (backbone, alpha) -> the ImageNet weights file shipped in WEIGHTS_DIR that --weights imagenet loads.
BUNDLED_WEIGHTS = {("mobilenet_v2", 0.35): "mobilenet_v2_0.35_224_no_top.h5"}
SCALING_LAYER = "backbone_scaling"  # every backbone's input preprocessing layer, the first after the model's Resizing


class WeightsUnavailable(UsageError):
    """A backbone's ImageNet weights could not be downloaded (offline, or the server refused): the command line's
    message names its flags; `backbone` and `reason` let the page word it its own way (serving/wording.py)."""

    def __init__(self, backbone: str, reason: str):
        super().__init__(
            f"--weights imagenet: could not get the {backbone} ImageNet weights ({reason}); "
            "pass --weights FILE with a local Keras weights file, or --weights none to train from scratch"
        )
        self.backbone, self.reason = backbone, reason


@dataclass(frozen=True)
class PageChoice:
    """One choice of the web page's Train tab for a backbone: its dropdown label (an API value of /train: keep it
    verbatim) and the TrainConfig fields it sets besides the backbone (e.g. {"alpha": 0.35})."""

    label: str
    options: dict = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Backbone:
    """How to build one backbone and what it needs."""

    name: str
    build: Callable[..., "keras.Model"]  # (input_shape, weights, alpha) -> the network, without its classifier top
    preprocessing: Callable[[], "keras.layers.Layer"]  # a fresh layer: 0..255 RGB -> what the network was trained on
    min_size: int  # smallest image side the network accepts
    default_cut: str | None  # layer whose output we use; None = the network's output (--cut-layer top)
    default_size: int  # --image-size when none is given: the size it was pretrained at, except where noted
    fine_tune_from: Callable[[str], str | None] = lambda cut: None  # cut layer -> first layer to unfreeze
    pretrained: bool = True  # False: no weights exist, it always trains from scratch
    takes_alpha: bool = False  # --alpha (width multiplier) applies
    augment_copies: Callable[[float], int] = lambda alpha: (
        2
    )  # alpha -> --augment-copies when none is given (docs/design.md)
    page: tuple[PageChoice, ...] = ()  # the Train tab's choices of this backbone; (): not offered on the page


def scaling(scale: float, offset: float) -> Callable[[], "keras.layers.Layer"]:
    """pixels * scale + offset (InceptionV3, MobileNetV2: [-1, 1]; TF-Hub: [0, 1])."""
    return lambda: keras.layers.Rescaling(scale, offset, name=SCALING_LAYER)


CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def caffe_preprocessing() -> "keras.layers.Layer":
    """ResNet50's "caffe" mode, RGB -> BGR minus the ImageNet mean, as a fixed 1x1 convolution.

    A built-in layer with constant weights, so `keras.models.load_model` needs nothing of ours.
    """
    layer = keras.layers.Conv2D(3, 1, name=SCALING_LAYER, trainable=False)
    layer.build((None, None, None, 3))
    layer.set_weights([np.eye(3, dtype="float32")[::-1].reshape(1, 1, 3, 3), -np.asarray(CAFFE_MEAN_BGR, "float32")])
    return layer


def _inception_v3(input_shape, weights, alpha):
    return keras.applications.InceptionV3(include_top=False, weights=weights, input_shape=input_shape)


def _inception_fine_tune_from(cut: str) -> str:
    """The block just below the cut trains (cut mixedN: from mixedN-1); for the whole network, the top two
    blocks, as in the Keras guide."""
    if cut in (TOP, "mixed10"):
        return "mixed8"
    if cut.startswith("mixed") and cut[5:].isdigit() and int(cut[5:]) > 0:
        return f"mixed{int(cut[5:]) - 1}"
    return cut


def _mobilenet_v2(input_shape, weights, alpha):
    return keras.applications.MobileNetV2(include_top=False, weights=weights, input_shape=input_shape, alpha=alpha)


def _efficientnet_b0(input_shape, weights, alpha):
    return keras.applications.EfficientNetB0(include_top=False, weights=weights, input_shape=input_shape)


def _resnet50(input_shape, weights, alpha):
    return keras.applications.ResNet50(include_top=False, weights=weights, input_shape=input_shape)


SIMPLE_CNN_FILTERS = (16, 32, 64)


def _simple_cnn(input_shape, weights, alpha):
    """The course's from-scratch baseline: Conv2D -> BatchNorm -> MaxPool -> Dropout blocks."""
    inputs = keras.Input(input_shape)
    x = inputs
    for i, filters in enumerate(SIMPLE_CNN_FILTERS, start=1):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"block{i}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"block{i}_bn")(x)
        x = keras.layers.MaxPooling2D(2, name=f"block{i}_pool")(x)
        x = keras.layers.Dropout(0.1, name=f"block{i}_dropout")(x)
    return keras.Model(inputs, x, name="simple_cnn")


# In the Train tab's order (its first page choice is the tab's default): messages list the names sorted.
BACKBONES: dict[str, Backbone] = {
    "mobilenet_v2": Backbone(
        "mobilenet_v2",
        _mobilenet_v2,
        scaling(1 / 127.5, -1.0),
        min_size=32,
        default_cut=None,
        default_size=224,
        fine_tune_from=lambda cut: (
            "block_11_expand"
        ),  # the last ~third, as TensorFlow's transfer-learning tutorial (layer 100 of 154)
        takes_alpha=True,
        # The narrow widths are the fast choice: on cats_dogs, 0.35's head got nothing from augmented
        # copies, which triple its feature pass; 1.0 gains a little (figures: benchmarks/README.md).
        augment_copies=lambda alpha: 0 if alpha < 1 else 2,
        page=(
            PageChoice("MobileNetV2 0.35 (bundled weights, fastest)", {"alpha": 0.35}),
            PageChoice("MobileNetV2 1.0", {"alpha": 1.0}),
        ),
    ),
    "efficientnet_b0": Backbone(
        # Keras' EfficientNet rescales and normalises inside the network, so it takes 0..255 as is.
        "efficientnet_b0",
        _efficientnet_b0,
        scaling(1.0, 0.0),
        min_size=32,
        default_cut=None,
        default_size=224,
        fine_tune_from=lambda cut: (
            "block7a_expand_conv"
        ),  # about the top 20 layers, as the Keras EfficientNet fine-tuning guide
        page=(PageChoice("EfficientNetB0"),),
    ),
    "inception_v3": Backbone(
        # 150 px, the course's size, not its pretraining size 299: a third of the pixels, and frozen
        # mixed7 features still carry most of what 299 gives (benchmarks/README.md has the probe's figures).
        "inception_v3",
        _inception_v3,
        scaling(1 / 127.5, -1.0),
        min_size=75,
        default_cut="mixed7",
        default_size=150,
        fine_tune_from=_inception_fine_tune_from,
        # No augmented copies: on cats_dogs (50 to 2,000 photos) they did not raise the head's accuracy, and
        # each is a backbone pass per photo (figures: benchmarks/README.md). --augment-copies N asks for them.
        augment_copies=lambda alpha: 0,
        page=(PageChoice("InceptionV3 (the course's)"),),
    ),
    "resnet50": Backbone(
        "resnet50",
        _resnet50,
        caffe_preprocessing,
        min_size=32,
        default_cut=None,
        default_size=224,
        fine_tune_from=lambda cut: "conv5_block1_1_conv",  # the last stage (conv5)
    ),
    "simple_cnn": Backbone(
        "simple_cnn",
        _simple_cnn,
        scaling(1 / 255.0, 0.0),
        min_size=2 ** len(SIMPLE_CNN_FILTERS),
        default_cut=None,
        default_size=150,
        pretrained=False,
    ),
}


def hub_backbone(handle: str):
    """A registry-style Backbone for `hub:HANDLE`: a TF-Hub feature vector as one Keras layer (hub.py)."""
    from .hub import HUB_DEFAULT_SIZE, HUB_MIN_SIZE, HubFeatures

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


def page_choices() -> dict[str, dict]:
    """The Train tab's backbone choices in registry order: label -> {"backbone": name, **options}."""
    return {
        choice.label: {"backbone": backbone.name, **choice.options}
        for backbone in BACKBONES.values()
        for choice in backbone.page
    }


def downloads_weights(backbone_name: str, alpha: float = 1.0) -> bool:
    """Whether `--weights imagenet` of this backbone needs Keras' download (no file ships with the package)."""
    return BACKBONES[backbone_name].pretrained and bundled_weights(backbone_name, alpha) is None


def get_backbone(name: str) -> Backbone:
    if name.startswith(HUB_PREFIX):
        return hub_backbone(name[len(HUB_PREFIX) :])
    try:
        return BACKBONES[name]
    except KeyError:
        raise UsageError(
            f"--backbone {name}: unknown backbone (choose from {', '.join(sorted(BACKBONES))}, or hub:URL_OR_FOLDER)"
        ) from None


def resolve(config: TrainConfig, log: Log = say) -> TrainConfig:
    """`config` checked, with every option it leaves to the backbone (None) filled from the backbone's entry.

    Image size, cut layer (top: the network's output), augmented copies and the first layer fine-tuning
    unfreezes; a backbone without pretrained weights (simple_cnn) trains from scratch whatever --weights says,
    and `log` says so. Resolving a resolved config changes nothing.
    """
    backbone = get_backbone(config.validate().backbone)
    size = config.image_size or backbone.default_size
    if size < backbone.min_size:
        raise UsageError(f"--image-size {size}: {backbone.name} needs at least {backbone.min_size} px")
    if config.alpha != 1.0 and not backbone.takes_alpha:
        raise UsageError(f"--alpha {config.alpha}: only mobilenet_v2 has a width multiplier, not {backbone.name}")
    weights = config.weights
    if not backbone.pretrained and weights != "none":
        log(
            f"note: {backbone.name} has no pretrained weights; --weights {weights} is ignored and it trains from "
            "scratch"
        )
        weights = "none"
    cut = config.cut_layer or backbone.default_cut or TOP
    copies = backbone.augment_copies(config.alpha) if config.augment_copies is None else config.augment_copies
    return dataclasses.replace(
        config,
        weights=weights,
        image_size=size,
        cut_layer=cut,
        augment_copies=copies,
        # Filled even without --fine-tune-epochs, so that a --resume may add fine-tuning (a resumed run's options
        # must equal the interrupted run's, fine_tune_epochs excepted).
        fine_tune_from=config.fine_tune_from or backbone.fine_tune_from(cut),
    )


def bundled_weights(backbone_name: str, alpha: float) -> Path | None:
    """The ImageNet weights file the package ships for this backbone and width, or None (Keras downloads them)."""
    name = BUNDLED_WEIGHTS.get((backbone_name, alpha))
    # A missing file (a broken install) falls back to Keras' download rather than failing.
    return WEIGHTS_DIR / name if name and (WEIGHTS_DIR / name).is_file() else None


def keras_weights(backbone_name: str, weights: str, alpha: float) -> str | None:
    """What Keras' `weights=` gets for --weights: a file path (the bundled file for imagenet where one ships),
    "imagenet" (Keras' download cache) or None (random init)."""
    if weights == "none":
        return None
    if weights == "imagenet":
        bundled = bundled_weights(backbone_name, alpha)
        return str(bundled) if bundled else "imagenet"
    return weights


def _file_sha256(path: str | Path) -> str:
    """sha256 of a file's content, hashed once per process while its size and modification time stay the same."""
    stat = os.stat(path)
    return _sha256_at(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _sha256_at(path: str, size: int, mtime_ns: int) -> str:
    return sha256_of(Path(path))


def weights_key(backbone_name: str, weights: str, alpha: float) -> str:
    """Which weights a backbone's features come from, for cache keys: a file's content hash (bundled or given),
    else Keras' download by name and width (alpha 1.0 keeps the plain "imagenet" older caches used)."""
    source = keras_weights(backbone_name, weights, alpha)
    if source not in ("imagenet", None):
        return f"sha256:{_file_sha256(source)}"
    return weights if alpha == 1.0 else f"{weights} alpha {alpha}"


def build_feature_extractor(
    backbone: Backbone, image_size: tuple[int, int], weights: str, cut_layer: str, alpha: float = 1.0
):
    """The backbone as a Keras model named "backbone", from preprocessed pixels to features, with `weights` loaded.

    `weights` is "imagenet" (the bundled file where one ships, else Keras' download cache), "none" (random init)
    or a local weights file; `cut_layer` names the layer whose output is the features, or is `top` for the
    network's output.
    """
    input_shape = (*image_size, 3)
    source = keras_weights(backbone.name, weights, alpha)
    if source not in ("imagenet", None) and not Path(source).is_file():
        raise UsageError(f"--weights {weights}: no such file (use imagenet, none, or a Keras weights file)")
    try:
        network = backbone.build(input_shape, source, alpha)
    except UsageError:
        raise
    except Exception as error:  # Keras raises bare Exception for failed downloads
        if source == "imagenet":
            raise WeightsUnavailable(backbone.name, first_line(error)) from None
        raise UsageError(f"--weights {weights}: cannot load into {backbone.name} ({first_line(error)})") from None
    if cut_layer == TOP:
        return keras.Model(network.inputs, network.output, name="backbone")
    try:
        output = network.get_layer(cut_layer).output
    except ValueError:
        raise UsageError(
            f"--cut-layer {cut_layer}: {backbone.name} has no layer of that name (or use top for the whole network)"
        ) from None
    return keras.Model(network.inputs, output, name="backbone")

"""Backbones: one registry entry each, so adding a network is one small, local change.

A backbone here is a function from a 0..255 RGB image batch at a fixed size to a feature map or
vector. Its own input preprocessing is a layer inside the saved model, so nobody who loads a model
can feed it pixels scaled the wrong way. `hub:HANDLE` builds a TF-Hub feature vector (see hub.py);
`keras:FILE.keras` any Keras model file of built-in layers, with its scaling inside (see kerasfile.py).

`--weights imagenet` means, in this order: the backbone's file in the weights folder (`--weights-dir`,
else $CLASSIFIER_WEIGHTS_DIR), under one of the names its entry's `weights_files` gives (Keras' own
download name first; docs/training.md has the table); the file the package ships (`BUNDLED_WEIGHTS`, in
classifier/model/weights/ with its NOTICE: MobileNetV2 0.35 trains with no download, at any image size,
since convolution weights do not depend on it); else Keras' own download. `resolve()` works this out once
and the resolved config names the file. `weights_key` names the weights for the feature cache by the
file's content, so the bundled file, the weights folder's copy and the same file passed as
`--weights FILE` share cached features; `backbone_key` names a keras: backbone by its file's content.

Several backbones joined by `+` make one combined backbone (`parts`, `resolve_combined`; see its section below).
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
from . import kerasfile
from .artifacts import carried_copy
from .metadata import HUB_PREFIX, KERAS_PREFIX, PART_SEPARATOR, SIZE_MARK, TOP, backbone_parts  # metadata.json's names
from .presets import apply_preset

WEIGHTS_DIR = Path(__file__).parent / "weights"  # package data (pyproject.toml), with its NOTICE
# (backbone, alpha) -> the ImageNet weights file shipped in WEIGHTS_DIR that --weights imagenet loads.
BUNDLED_WEIGHTS = {("mobilenet_v2", 0.35): "mobilenet_v2_0.35_224_no_top.h5"}
SCALING_LAYER = "backbone_scaling"  # every backbone's input preprocessing layer, the first after the model's Resizing
WEIGHTS_DIR_ENV = "CLASSIFIER_WEIGHTS_DIR"  # --weights-dir when the flag is not given
BATCH_NORM = keras.layers.BatchNormalization  # never unfrozen (finetune.py), so never where fine-tuning starts


class WeightsUnavailable(UsageError):
    """A backbone's ImageNet weights could not be downloaded (offline, or the server refused): the command line's
    message names its flags; `backbone` and `reason` let the page word it its own way (serving/wording.py)."""

    def __init__(self, backbone: str, reason: str, names: str):
        super().__init__(
            f"--weights imagenet: could not get the {backbone} ImageNet weights ({reason}); "
            f"put {names} in a folder and pass --weights-dir DIR, or pass --weights FILE, or --weights none to "
            "train from scratch"
        )
        self.backbone, self.reason, self.names = backbone, reason, names


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
    # (alpha, image size) -> the names its ImageNet weights file may have in --weights-dir, Keras' download name first
    weights_files: Callable[[float, int], tuple[str, ...]] = lambda alpha, size: ()
    downloads: bool = True  # False: no download exists, --weights imagenet needs its file (in --weights-dir)


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


def keras_application(constructor: str) -> Callable[..., "keras.Model"]:
    """A `build` for keras.applications.<constructor> without its top (and with its own input scaling inside, where
    Keras' default include_preprocessing=True puts one: EfficientNet, EfficientNetV2, ConvNeXt, MobileNetV3)."""

    def build(input_shape, weights, alpha):
        return getattr(keras.applications, constructor)(include_top=False, weights=weights, input_shape=input_shape)

    return build


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


MOBILENET_V2_ROWS = (96, 128, 160, 192, 224)  # the sizes Keras has MobileNetV2 weights files for (else 224's)


def _mobilenet_v2_files(alpha: float, size: int) -> tuple[str, ...]:
    """Keras' download name at the size it would pick, its 224 px one, and the name ../shared/weights uses."""
    rows = size if size in MOBILENET_V2_ROWS else 224
    keras_names = [f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{r}_no_top.h5" for r in (rows, 224)]
    return (*dict.fromkeys(keras_names), f"mobilenet_v2_{float(alpha)}_224_no_top.h5")


EFFICIENTNET_LITE2_FILE = "efficientnet_lite2_imagenet_notop.keras"  # its documented name in --weights-dir


def _efficientnet_lite2(input_shape, weights, alpha):
    """EfficientNet-Lite2 from its Keras model file (kerasfile.py): `weights` is that file, as resolve() found it
    in --weights-dir (or --weights FILE); Keras has no such network to download or to build from scratch."""
    if weights is None:
        raise UsageError(
            f"--weights none: efficientnet_lite2's architecture comes only with its file; to train it from scratch, "
            f"pass --backbone keras:PATH/{EFFICIENTNET_LITE2_FILE} --weights none"
        )
    if weights == "imagenet":  # resolve() finds the file or stops; a caller that skipped it gets the same line
        raise UsageError(
            f"--backbone efficientnet_lite2: its network comes only as the file {EFFICIENTNET_LITE2_FILE} (no "
            "download exists); put it in a folder and pass --weights-dir DIR, or pass --weights FILE"
        )
    return kerasfile.network(weights, input_shape, "imagenet", label=f"--backbone efficientnet_lite2 ({weights})")


def keras_family(name: str, constructor: str, default_size: int, fine_tune_from: str, weights_file: str) -> Backbone:
    """A registry entry for one of Keras' modern families: its rescaling inside the network (so ours is the
    identity), at least 32 px, the whole network by default, `weights_file` its Keras download name."""
    return Backbone(
        name,
        keras_application(constructor),
        scaling(1.0, 0.0),
        min_size=32,
        default_cut=None,
        default_size=default_size,
        fine_tune_from=lambda cut: fine_tune_from,
        weights_files=lambda alpha, size: (weights_file,),
    )


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
        weights_files=_mobilenet_v2_files,
    ),
    "efficientnet_b0": Backbone(
        # Keras' EfficientNet rescales and normalises inside the network, so it takes 0..255 as is.
        "efficientnet_b0",
        keras_application("EfficientNetB0"),
        scaling(1.0, 0.0),
        min_size=32,
        default_cut=None,
        default_size=224,
        fine_tune_from=lambda cut: (
            "block7a_expand_conv"
        ),  # about the top 20 layers, as the Keras EfficientNet fine-tuning guide
        page=(PageChoice("EfficientNetB0"),),
        weights_files=lambda alpha, size: ("efficientnetb0_notop.h5",),
    ),
    "inception_v3": Backbone(
        # 150 px, the course's size, not its pretraining size 299: a third of the pixels, and frozen
        # mixed7 features still carry most of what 299 gives (benchmarks/README.md has the probe's figures).
        "inception_v3",
        keras_application("InceptionV3"),
        scaling(1 / 127.5, -1.0),
        min_size=75,
        default_cut="mixed7",
        default_size=150,
        fine_tune_from=_inception_fine_tune_from,
        # No augmented copies: on cats_dogs (50 to 2,000 photos) they did not raise the head's accuracy, and
        # each is a backbone pass per photo (figures: benchmarks/README.md). --augment-copies N asks for them.
        augment_copies=lambda alpha: 0,
        page=(PageChoice("InceptionV3 (the course's)"),),
        # Keras' download, or ../shared/weights' rebuild of the 2015 release (exact up to mixed8: its README).
        weights_files=lambda alpha, size: (
            "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "inception_v3_no_top_to_mixed8.h5",
        ),
    ),
    "resnet50": Backbone(
        "resnet50",
        keras_application("ResNet50"),
        caffe_preprocessing,
        min_size=32,
        default_cut=None,
        default_size=224,
        fine_tune_from=lambda cut: "conv5_block1_1_conv",  # the last stage (conv5)
        weights_files=lambda alpha, size: ("resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",),
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
    # Keras' modern families. Their ImageNet weights are Keras' downloads (on a connected machine, or their files in
    # --weights-dir), so their accuracy was NOT measured here (offline; tested with random weights only). Each
    # keeps Keras' own input scaling inside the network: EfficientNetV2-B* rescales to [0, 1] and normalises by the
    # ImageNet mean and variance, ConvNeXt normalises 0..255 by them, MobileNetV3 rescales to [-1, 1]. Sizes: Keras'
    # defaults (their pretraining sizes); fine-tuning starts at the last stage.
    **{
        f"efficientnet_v2_b{index}": keras_family(
            f"efficientnet_v2_b{index}",
            f"EfficientNetV2B{index}",
            size,
            "block6a_expand_conv",
            f"efficientnetv2-b{index}_notop.h5",
        )
        for index, size in enumerate((224, 240, 260, 300))
    },
    "convnext_tiny": keras_family(
        "convnext_tiny", "ConvNeXtTiny", 224, "convnext_tiny_downsampling_block_2", "convnext_tiny_notop.h5"
    ),
    "mobilenet_v3_large": keras_family(
        "mobilenet_v3_large",
        "MobileNetV3Large",
        224,
        "expanded_conv_12_expand",
        "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5",
    ),
    "mobilenet_v3_small": keras_family(
        "mobilenet_v3_small",
        "MobileNetV3Small",
        224,
        "expanded_conv_8_expand",
        "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
    ),
    # EfficientNet-Lite2 (ImageNet top-1 77.6% in Google's release; ../shared/weights/README.md): its network and
    # weights come only as a Keras model file of built-in layers (scaling inside, any size, 260 px its own, 1280
    # channels), loaded as a keras: backbone is. Not on the page: it needs that file.
    "efficientnet_lite2": Backbone(
        "efficientnet_lite2",
        _efficientnet_lite2,
        scaling(1.0, 0.0),
        min_size=32,
        default_cut=None,
        default_size=260,
        fine_tune_from=lambda cut: "block7a_expand_conv",  # about the top 20 layers, as efficientnet_b0's
        weights_files=lambda alpha, size: (EFFICIENTNET_LITE2_FILE,),
        downloads=False,
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


def keras_backbone(path: str) -> Backbone:
    """A registry-style Backbone for `keras:PATH`: the Keras model file's network (kerasfile.py), its own scaling
    inside; by default at its fixed input size if it has one, else 224 px, the whole network, and fine-tuning from
    the weighted layer (BatchNorm aside) two thirds of the way up to the cut."""
    if not path:
        raise UsageError(f"--backbone {KERAS_PREFIX} needs a file after the colon, e.g. keras:backbones/mine.keras")

    def build(input_shape, weights, alpha):
        return kerasfile.network(path, input_shape, weights)

    def fine_tune_from(cut: str) -> str:
        layers = kerasfile.load(path).layers
        names = [layer.name for layer in layers]
        below = layers[: names.index(cut) + 1] if cut in names else layers
        weighted = [layer.name for layer in below if layer.weights and not isinstance(layer, BATCH_NORM)]
        return weighted[len(weighted) * 2 // 3] if weighted else names[-1]

    return Backbone(
        f"{KERAS_PREFIX}{path}",
        build,
        scaling(1.0, 0.0),
        min_size=kerasfile.MIN_SIZE,
        default_cut=None,
        default_size=kerasfile.fixed_size(path) or kerasfile.DEFAULT_SIZE,
        fine_tune_from=fine_tune_from,
    )


def page_choices() -> dict[str, dict]:
    """The Train tab's backbone choices in registry order: label -> {"backbone": name, **options}."""
    return {
        choice.label: {"backbone": backbone.name, **choice.options}
        for backbone in BACKBONES.values()
        for choice in backbone.page
    }


def downloads_weights(backbone_name: str, alpha: float = 1.0, size: int = 224) -> bool:
    """Whether `--weights imagenet` of this backbone needs Keras' download: it has weights, the package ships no file
    of them and the weights folder of the environment ($CLASSIFIER_WEIGHTS_DIR) holds none."""
    backbone = BACKBONES[backbone_name]
    if not backbone.pretrained or bundled_weights(backbone_name, alpha) is not None:
        return False
    folder = os.environ.get(WEIGHTS_DIR_ENV)
    return not (folder and any(Path(folder, name).is_file() for name in backbone.weights_files(alpha, size)))


def get_backbone(name: str) -> Backbone:
    if name.startswith(HUB_PREFIX):
        return hub_backbone(name[len(HUB_PREFIX) :])
    if name.startswith(KERAS_PREFIX):
        return keras_backbone(name[len(KERAS_PREFIX) :])
    try:
        return BACKBONES[name]
    except KeyError:
        raise UsageError(
            f"--backbone {name}: unknown backbone (choose from {', '.join(sorted(BACKBONES))}, hub:URL_OR_FOLDER "
            "or keras:FILE.keras)"
        ) from None


def resolve(config: TrainConfig, log: Log = say) -> TrainConfig:
    """`config` checked, with every option it leaves to the backbone (None) filled from the backbone's entry.

    First its --preset's fields (presets.py), then the weights folder (--weights-dir, else $CLASSIFIER_WEIGHTS_DIR)
    and each keras: file (made absolute; where it is gone, the copy the model folder --out carries), then image
    size, cut layer (top: the network's output), augmented copies, the first layer fine-tuning unfreezes and the
    weights file --weights imagenet loads (`imagenet_file`). A backbone without pretrained weights (simple_cnn)
    trains from scratch whatever --weights says, and `log` says so. Resolving a resolved config changes nothing.
    Several parts (`a+b`): `resolve_combined`, once the preset has named the backbone.
    """
    config = apply_preset(config.validate())
    weights_dir, explicit = weights_folder(config)
    # The flag's folder is kept (absolute); the environment's is not, so resolving again reads it again, as leniently.
    kept_dir = weights_dir if explicit else None
    config = dataclasses.replace(config, weights_dir=kept_dir, backbone=locate_keras_files(config, log))
    if is_combined(config.backbone):
        return resolve_combined(config, log)
    backbone = get_backbone(config.backbone)
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
    if weights == "imagenet":
        weights = imagenet_file(backbone, config.alpha, size, weights_dir, explicit)
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


def weights_folder(config: TrainConfig) -> tuple[str | None, bool]:
    """(the weights folder --weights imagenet looks in, or None; whether --weights-dir named it, so that a file missing
    there is an error rather than a fall back to the bundled file or Keras' download)."""
    folder, option = config.weights_dir, "--weights-dir"
    if folder is None:
        folder, option = os.environ.get(WEIGHTS_DIR_ENV) or None, WEIGHTS_DIR_ENV
    if folder is not None and not Path(folder).is_dir():
        raise UsageError(f"{option} {folder}: not a folder (give the folder holding the weights files)")
    return (os.path.abspath(folder) if folder else None), config.weights_dir is not None


def imagenet_file(backbone: Backbone, alpha: float, size: int, folder: str | None, explicit: bool) -> str:
    """What --weights imagenet means for `backbone`: its file in `folder` under one of its documented names, else
    "imagenet" (the bundled file or Keras' download); one line naming the file(s) when `folder` was given on the
    command line and lacks it (unless the package ships it), or when the backbone has no download and no file."""
    names = backbone.weights_files(alpha, size)
    found = next((Path(folder, name) for name in names if folder and Path(folder, name).is_file()), None)
    if found is not None:
        return str(found)
    expected = " or ".join(names)
    if not backbone.downloads:
        where = f"{folder} has no {expected}" if folder else "no weights folder was given"
        raise UsageError(
            f"--backbone {backbone.name}: its ImageNet network comes only as the file {expected} ({where}); put it in "
            f"a folder and pass --weights-dir DIR (or set {WEIGHTS_DIR_ENV}), or pass --weights FILE"
        )
    if explicit and names and bundled_weights(backbone.name, alpha) is None:
        raise UsageError(
            f"--weights-dir {folder}: no ImageNet weights file for {backbone.name} in it (expected {expected}); add "
            "it, or leave --weights-dir out to use Keras' download"
        )
    return "imagenet"


def locate_keras_files(config: TrainConfig, log: Log = say) -> str:
    """`config.backbone` with each keras: part's file (parts join by +) made absolute, or, where that file is gone,
    the copy the model folder `config.out` carries of it (artifacts.carried_copy): a retrain from a saved config
    finds it wherever the folder moved; a missing file stays as it is, for loading to name."""
    located = []
    for part, size in backbone_parts(config.backbone):  # a combined backbone's part keeps its @SIZE
        path = part[len(KERAS_PREFIX) :] if part.startswith(KERAS_PREFIX) else None
        if path and os.path.exists(path):
            part = f"{KERAS_PREFIX}{os.path.abspath(path)}"
        elif path:
            copy = carried_copy(part, config.out)
            if copy is not None:
                log(f"note: {path} is gone; using the copy the model folder carries, {copy}")
                part = f"{KERAS_PREFIX}{copy}"
        located.append(part if size is None else f"{part}{SIZE_MARK}{size}")
    return PART_SEPARATOR.join(located)


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


def backbone_key(name: str) -> str:
    """A backbone name for cache keys: a registry or hub: name as it is, each keras: file (parts join by +) by its
    content's sha256, so that the file and its copy in a model folder share cached features."""
    return PART_SEPARATOR.join(
        (f"{KERAS_PREFIX}sha256:{_file_sha256(part[len(KERAS_PREFIX) :])}" if part.startswith(KERAS_PREFIX) else part)
        + ("" if size is None else f"{SIZE_MARK}{size}")
        for part, size in backbone_parts(name)  # a part's @SIZE is not part of its file's path
    )


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
            names = " or ".join(backbone.weights_files(alpha, image_size[0])) or "its weights file"
            raise WeightsUnavailable(backbone.name, first_line(error), names) from None
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


# Combined backbones: `--backbone a+b`, several frozen pretrained backbones in one model, their features joined.
#
# Each part may carry its own size, `inception_v3@150+mobilenet_v2@224`; a part without one takes `--image-size`
# when given, else its own default size. Every part is resolved as an ordinary single-backbone TrainConfig
# (`parts`): its cut layer, weights (its bundled or downloaded ImageNet weights, `keras:FILE`'s own) and alpha
# (mobilenet_v2 parts take `--alpha`, the others keep 1.0) are what that backbone alone would train with, so its
# feature-cache entries are that backbone's own (training/features.py adds the model's size to the key of a part
# fed resized pixels). The model's input size S is the largest part's: network.build_model resizes the image to S
# once and each smaller part resizes S to its own size inside the model, so serving, LiteRT and exports feed one
# size as for any model.
#
# A resolved combined config names every part's size (`backbone` "inception_v3@150+mobilenet_v2@224", `image_size`
# S, `cut_layer` the parts' cuts joined by "+", "mixed7+top"), so resolving it again changes nothing and
# metadata.json records what was combined. `augment_copies`, when not given, is the largest of the parts' defaults:
# an augmented copy k is one draw on the S-sized image, the same for every part.
#
# Refused, one line each: `--weights FILE` (one file cannot hold several networks: each part finds its own),
# `--weights none` or a part without pretrained weights (parts are frozen features), `--cut-layer` (each part cuts
# at its own default), fine-tuning, `--alpha` when no part is a mobilenet_v2, a `hub:` part, a repeated part, an
# empty part, and `--image-size` when every part names a smaller or larger size of its own.


def is_combined(backbone: str) -> bool:
    """Whether `--backbone` names several parts (or one part with an @SIZE): `resolve_combined`'s to resolve."""
    return PART_SEPARATOR in str(backbone) or backbone_parts(backbone)[0][1] is not None


def resolve_combined(config: TrainConfig, log: Log = say) -> TrainConfig:
    """A combined `config` checked and resolved (see the section's comment above); a single `NAME@SIZE` becomes NAME at
    --image-size SIZE and is resolved as any single backbone."""
    items = backbone_parts(config.validate().backbone)
    if len(items) == 1:
        (name, size), given = items[0], config.image_size
        if given not in (None, size):
            raise UsageError(f"--image-size {given}: --backbone {config.backbone} names its size; give one of them")
        return resolve(dataclasses.replace(config, backbone=name, image_size=size), log)
    _refuse_options(config)
    resolved = parts(config)
    size = max(part.image_size for part in resolved)
    if config.image_size not in (None, size) and all(given for _, given in items):
        raise UsageError(
            f"--image-size {config.image_size}: every part of --backbone {config.backbone} names its size, so the "
            f"model takes the largest, {size} px; leave --image-size out"
        )
    copies = max(part.augment_copies for part in resolved) if config.augment_copies is None else config.augment_copies
    return dataclasses.replace(
        config,
        backbone=PART_SEPARATOR.join(f"{part.backbone}{SIZE_MARK}{part.image_size}" for part in resolved),
        image_size=size,
        cut_layer=PART_SEPARATOR.join(part.cut_layer for part in resolved),
        augment_copies=copies,
        fine_tune_from=None,
    )


def parts(config: TrainConfig) -> list[TrainConfig]:
    """Each part of a combined `config` as the resolved config that backbone alone would train with (its own size,
    cut, weights and alpha; every other option the combined one's); [config] itself for a single backbone."""
    items = backbone_parts(config.backbone)
    if len(items) == 1 and items[0][1] is None:
        return [config]
    names = [name for name, _ in items]
    for name in names:
        _check_part(config.backbone, name, names)
    return [
        resolve(
            dataclasses.replace(
                config,
                backbone=name,
                preset=None,  # applied to the combined config already: it would set the part's backbone again
                image_size=size or config.image_size,
                cut_layer=None,
                fine_tune_from=None,
                alpha=config.alpha if get_backbone(name).takes_alpha else 1.0,
                augment_copies=config.augment_copies,
            ),
            log=lambda *_: None,  # nothing to say: a part with something to say (no pretrained weights) is refused
        )
        for name, size in items
    ]


def _check_part(backbone: str, name: str, names: list[str]) -> None:
    """Refuse a part that cannot be one: empty, hub:, repeated, or without pretrained weights."""
    if not name:
        raise UsageError(f"--backbone {backbone}: an empty part; join backbone names with {PART_SEPARATOR}")
    if name.startswith(HUB_PREFIX):
        raise UsageError(f"--backbone {backbone}: a hub: backbone cannot be part of a combined backbone")
    if names.count(name) > 1:
        raise UsageError(f"--backbone {backbone}: {name} is named twice; name each part once")
    if not get_backbone(name).pretrained:
        raise UsageError(
            f"--backbone {backbone}: {name} has no pretrained weights; the parts of a combined backbone are frozen "
            "pretrained networks"
        )


def _refuse_options(config: TrainConfig) -> None:
    """The options a combined backbone cannot take, each refused naming itself (a resolved config passes)."""
    what = f"a combined backbone ({config.backbone})"
    if config.weights == "none":
        raise UsageError(f"--weights none: {what} joins frozen pretrained features; train one backbone from scratch")
    if config.weights != "imagenet":
        raise UsageError(
            f"--weights {config.weights}: one file cannot hold the weights of {what}; put each part's file in a "
            "folder under its documented name and pass --weights-dir DIR"
        )
    if config.fine_tune_epochs:
        raise UsageError(f"--fine-tune-epochs {config.fine_tune_epochs}: {what} cannot be fine-tuned; leave it at 0")
    if config.fine_tune_from:
        raise UsageError(f"--fine-tune-from {config.fine_tune_from}: {what} cannot be fine-tuned")
    if config.alpha != 1.0 and not any(get_backbone(name).takes_alpha for name, _ in backbone_parts(config.backbone)):
        raise UsageError(f"--alpha {config.alpha}: only mobilenet_v2 has a width multiplier, and {what} has none")
    if config.cut_layer is not None:
        own = PART_SEPARATOR.join(part.cut_layer for part in parts(dataclasses.replace(config, cut_layer=None)))
        if config.cut_layer != own:
            raise UsageError(
                f"--cut-layer {config.cut_layer}: {what} cuts each part at its own default layer; leave --cut-layer "
                "out, or train that backbone alone to choose its cut"
            )

"""Every training hyper-parameter in one dataclass; the CLI is generated from it.

Each field carries its command-line help, so an option is added in exactly one place. Options
whose default depends on the backbone are None until `resolve(config)` (classifier/model/backbones.py) fills
them, once, before anything else reads them (as timm's `resolve_data_config` does); every module after it reads
plain fields. The config saved in `metadata.json` is the resolved dataclass as a dict.

`add_arguments(cls, parser)` makes the flags of any dataclass whose fields are `option`s. Imports plumbing only
(no TensorFlow): everything above it may read the config.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UsageError

# The resize rule every new model is built and trained with (not a flag): bilinear without antialiasing, the op the
# model's Resizing layer runs (classifier/data/images.py says why; model/network.py builds the layer with it).
RESIZE_ANTIALIAS = False
# What runs a frozen backbone (LiteRT or TensorFlow): serving's --engine (model/artifacts.py) and training's
# --feature-engine (training/engine.py) choose among these, "auto" meaning LiteRT where it costs no wait.
ENGINES = ("litert", "auto", "tensorflow")


def user_cache_dir(kind: str) -> Path:
    """Where a cache of `kind` lives by default: ~/.cache/classifier/<kind>, under $XDG_CACHE_HOME when set."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "classifier" / kind


def option(default: Any, help: str, **argparse_kwargs: Any) -> Any:
    """A config field with its command-line help (and any extra argparse settings)."""
    return field(default=default, metadata={"help": help, **argparse_kwargs})


def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
    """One `--flag` per field of the dataclass `cls` that has help (an `option()`), named, typed, defaulted and
    documented from it; a bool is --flag/--no-flag unless its option names an argparse `action`."""
    for f in dataclasses.fields(cls):
        if "help" not in f.metadata:
            continue  # a field without a flag of its own (e.g. one a shared flag sets)
        extra = dict(f.metadata)
        help_text = extra.pop("help")
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):
            action = extra.pop("action", argparse.BooleanOptionalAction)
            parser.add_argument(flag, action=action, default=f.default, help=help_text, **extra)
            continue
        kind = extra.pop("type", type(f.default) if f.default is not None else str)
        suffix = " (required)" if extra.get("required") else f" (default: {f.default})" if f.default is not None else ""
        parser.add_argument(flag, type=kind, default=f.default, help=help_text + suffix, **extra)


@dataclass
class TrainConfig:
    # What to learn from and where the model goes.
    data: str | None = option(
        None,
        "image folder (one subfolder per class, or train/ + validation/), or a built-in dataset name",
        required=True,
    )
    csv_dir: str | None = option(
        None,
        "for --data asl: folder holding sign_mnist_train.csv and sign_mnist_test.csv (or set CLASSIFIER_ASL_CSV_DIR)",
    )
    out: str | None = option(None, "model folder to write, e.g. models/cats_dogs (default: models/<data folder name>)")
    overwrite: bool = option(
        False, "replace an existing model folder (the old one is kept until the new one is complete)"
    )

    # Model.
    preset: str | None = option(
        None,
        "a named recipe (default, fast, accurate: see docs/training.md) that sets the options it names; an option "
        "left at its default takes the preset's value, one given with another value keeps it",
    )
    backbone: str = option(
        "inception_v3",
        "pretrained network to build on: a registry name (see docs/training.md), or keras:FILE.keras (any Keras "
        "model file of built-in layers, its own scaling inside); several joined by + (e.g. inception_v3+mobilenet_v2, "
        "each optionally NAME@SIZE) concatenate their frozen features (docs/training.md, Combined backbones)",
    )
    weights: str = option(
        "imagenet",
        "backbone weights: imagenet (its file in --weights-dir, else shipped in the package for mobilenet_v2 --alpha "
        "0.35, else Keras' download cache; a keras: backbone's own), none (train from scratch), or a weights FILE",
    )
    weights_dir: str | None = option(
        None,
        "folder holding ImageNet weights files by their documented names (docs/training.md), where --weights imagenet "
        "looks first, offline (default: env CLASSIFIER_WEIGHTS_DIR, where a file missing falls back to the download)",
    )
    cut_layer: str | None = option(
        None,
        "backbone layer whose output feeds the head, or top for its output (default: the backbone's own: mixed7 "
        "for inception_v3, top for the others)",
    )
    image_size: int | None = option(
        None,
        "square input size in pixels the model resizes every image to (default: the backbone's: 150 for "
        "inception_v3, as the course; 224 for the others, their pretraining size)",
        type=int,
    )
    head_pooling: str = option(
        "avg",
        "how the feature map becomes a vector: avg (global average) or flatten (the course's)",
        choices=("avg", "flatten"),
    )
    dense_units: int = option(1024, "units of the Dense relu layer in the head (0: no hidden layer)")
    dropout: float = option(0.2, "dropout rate after the Dense layer")

    # Optimisation.
    epochs: int = option(20, "passes over the training images")
    batch_size: int = option(32, "images per step")
    learning_rate: float = option(1e-4, "Adam learning rate")
    validation_split: float = option(
        0.2, "fraction of each class held out for validation when the data has no validation folder"
    )
    test_split: float = option(
        0.0,
        "fraction of each class held out as the test split when the data has no test/ folder (drawn by --seed, "
        "before validation): never trained on nor used to pick epochs, augmentation or the 'not sure' threshold, "
        "scored once at the end (0: no test split)",
    )
    seed: int = option(0, "seed for the splits, shuffling, augmentation and initial weights")

    # On-the-fly augmentation of training images (never of validation or served images).
    augment: bool = option(True, "augment training images (--no-augment turns every knob below off)")
    rotation: float = option(40.0, "random rotation, up to this many degrees either way")
    width_shift: float = option(0.2, "random horizontal shift, as a fraction of the width")
    height_shift: float = option(0.2, "random vertical shift, as a fraction of the height")
    shear: float = option(
        0.2,
        "random shear ANGLE in degrees, either way, along the width, as ImageDataGenerator's shear_range (so the "
        "course's 0.2 is 0.2 degrees, next to nothing)",
    )
    zoom: float = option(
        0.2,
        "random zoom: width and height each scaled by its own factor in [1 - zoom, 1 + zoom] (above 1 zooms out), "
        "as ImageDataGenerator's zoom_range",
    )
    horizontal_flip: bool = option(True, "randomly mirror left-right")
    vertical_flip: bool = option(False, "randomly mirror top-bottom")
    brightness: float = option(
        0.0, "random brightness change, added, as a fraction of the pixel range (Keras' RandomBrightness)"
    )

    # Feature cache: a frozen backbone's features are computed once per image (and per augmented copy).
    feature_cache: bool = option(
        True,
        "train the head on cached backbone features (frozen backbones only; --no-feature-cache runs the backbone "
        "every epoch)",
    )
    augment_copies: int | None = option(
        None,
        "with the feature cache: augmented variants cached per training image, besides the image itself (default: "
        "the backbone's: 0 for inception_v3 and mobilenet_v2 narrower than --alpha 1, else 2)",
        type=int,
    )
    cache_dir: str | None = option(None, "feature cache folder (default: ~/.cache/classifier/features)")
    feature_engine: str = option(
        "auto",
        "what runs the frozen backbone over the images the feature cache lacks: litert (converted once per machine, "
        "seconds, and cached, the conversion serving uses), auto (litert for a backbone with depthwise convolutions, "
        "converting only for a pass of 250 images or more unless the conversion is cached; tensorflow for plain "
        "convolutions, which it runs as fast on batches) or tensorflow; the features are the same to float rounding",
        choices=ENGINES,
    )
    feature_batch_size: int = option(
        256,
        "with the feature cache: cached feature vectors per step while the head trains on them, at most a quarter "
        "of the training images (--batch-size is for images; the head's steps scale --learning-rate by their batch "
        "/ --batch-size, and an epoch is every training image once, as itself or one of its augmented copies)",
    )

    # Where training runs (tf.distribute, see classifier/training/distribute.py) and at what precision.
    strategy: str = option(
        "default",
        "default (one device), mirrored (every local GPU) or multi-worker (MultiWorkerMirroredStrategy, cluster from "
        "TF_CONFIG); --batch-size is the global batch",
        choices=("default", "mirrored", "multi-worker"),
    )
    worker_timeout: float = option(
        1800.0,
        "--strategy multi-worker with the feature cache: give up, naming the missing worker, when the other workers' "
        "shares of the feature pass have not grown in the shared --cache-dir for this many seconds",
    )
    mixed_precision: bool = option(False, "compute in float16, keep float32 weights (Keras mixed_float16; GPUs only)")

    # More backbones, fine-tuning and training control (see finetune.py and control.py).
    alpha: float = option(1.0, "mobilenet_v2 width multiplier: 0.35, 0.5, 0.75, 1.0, 1.3 or 1.4 have ImageNet weights")
    fine_tune_epochs: int = option(
        0, "after the head has trained, this many more epochs with the top of the backbone unfrozen (0: no fine-tuning)"
    )
    fine_tune_from: str | None = option(
        None,
        "first backbone layer to unfreeze when fine-tuning (default: the backbone's own, mixed6 for inception_v3 cut "
        "at mixed7)",
    )
    fine_tune_learning_rate: float = option(1e-5, "Adam learning rate while fine-tuning")
    patience: int = option(
        0,
        "stop when validation loss has not improved for this many epochs and keep the best epoch's weights (0: never "
        "stop early)",
    )
    reduce_lr_on_plateau: bool = option(
        False, "divide the learning rate by 5 whenever validation loss stalls for 2 epochs"
    )
    class_weight: str = option(
        "none",
        "weight each class's loss: none, or balanced (inverse to its share of the training images)",
        choices=("none", "balanced"),
    )
    resume: bool = option(
        False,
        "continue an interrupted run of the same command from its last completed epoch (saved in <out>.checkpoint/)",
    )

    # Accuracy levers at the end of a run (model/flips.py, training/pipeline.py).
    flip_average: bool = option(
        False,
        "test-time flips: the saved model averages its probabilities on each image and on its mirror image (one more "
        "backbone pass per prediction); training reports validation accuracy without and with the averaging",
    )
    refit: bool = option(
        False,
        "once validation has chosen the epochs (all of them, or the best with --patience), train the head again from "
        "its initial weights on train + validation for that many epochs and save that head (the test split stays "
        "held out; the validation figures are then from the run before the refit)",
    )

    def validate(self) -> "TrainConfig":
        """Refuse values no run could use, naming the option."""
        checks = [
            ("image_size", self.image_size is None or self.image_size >= 1, "must be a positive number of pixels"),
            ("epochs", self.epochs >= 1, "must be at least 1"),
            ("batch_size", self.batch_size >= 1, "must be at least 1"),
            ("feature_batch_size", self.feature_batch_size >= 1, "must be at least 1"),
            ("learning_rate", self.learning_rate > 0, "must be positive"),
            ("dropout", 0.0 <= self.dropout < 1.0, "must be in [0, 1)"),
            ("dense_units", self.dense_units >= 0, "must be 0 or more"),
            ("validation_split", 0.0 < self.validation_split < 1.0, "must be between 0 and 1"),
            ("test_split", 0.0 <= self.test_split < 1.0, "must be from 0 (no test split) to below 1"),
            ("augment_copies", self.augment_copies is None or self.augment_copies >= 0, "must be 0 or more"),
            ("alpha", self.alpha > 0, "must be positive"),
            ("fine_tune_epochs", self.fine_tune_epochs >= 0, "must be 0 or more"),
            ("fine_tune_learning_rate", self.fine_tune_learning_rate > 0, "must be positive"),
            ("patience", self.patience >= 0, "must be 0 or more"),
            ("worker_timeout", self.worker_timeout > 0, "must be positive"),
        ]
        for name, ok, what in checks:
            if not ok:
                raise UsageError(f"--{name.replace('_', '-')} {getattr(self, name)}: {what}")
        return self

    @property
    def transfer(self) -> bool:
        """Whether the backbone brings pretrained features to keep frozen (any --weights but none): after
        `resolve`, which sets weights to none for a backbone that has none (simple_cnn)."""
        return self.weights != "none"

    @property
    def image_shape(self) -> tuple[int, int]:
        """(height, width) every image is resized to: the square `image_size`, once resolved."""
        return (self.image_size, self.image_size)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """Rebuild a config from saved metadata, ignoring keys this version does not know."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """One `--flag` per field, named, typed, defaulted and documented from the dataclass."""
        add_arguments(cls, parser)

    @classmethod
    def from_args(cls, namespace: argparse.Namespace) -> "TrainConfig":
        return cls(**{f.name: getattr(namespace, f.name) for f in dataclasses.fields(cls)})

"""What a model folder holds, as one typed object: `ModelMetadata`, the contents of its `metadata.json`.

Training builds it (`train.build_metadata`), `artifacts.save_model_dir` writes it and
`artifacts.read_metadata` reads it back; every other module reads its attributes. The JSON file
keeps the keys it always had (`to_dict` writes them in the same order); `from_dict` reads a file
written by an older version (missing keys take their defaults) or a newer one (keys this version
does not know are kept in `extra` and written back as they were; within `data`, they are
dropped). Only `class_names` and `image_size`, without which the model cannot be used, are required.

A model folder can come from anyone, so `from_dict` checks the types of what serving relies on,
and `describe_backbone`, `public_name`, `public_json` and `public_text` are what a public page or repository
may show of it (or of a job's log): no path of the training machine. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

from ..errors import UsageError
from .confidence import check_min_confidence

HUB_PREFIX = "hub:"  # a TF-Hub backbone's name: hub:HANDLE (the registry's too: backbones.py imports these)
KERAS_PREFIX = "keras:"  # a Keras model file as a backbone: keras:PATH.keras (model/kerasfile.py)
TOP = "top"  # --cut-layer top, cut_layer "top": the backbone's own output, the whole network
WHOLE_NETWORK = (None, TOP)  # cut_layer values that mean the whole network (older files say None)
INPUT = "RGB pixels 0..255, any size (the model resizes); float32 batch (N, H, W, 3)"
# An absolute path inside a line of text: /a/b or C:\\a\\b, at the start or after a space, a quote, (, = or keras:.
ABSOLUTE_PATH = re.compile(r"(?:(?<=^)|(?<=[\s'\"(=])|(?<=keras:))(?:/|[A-Za-z]:\\)[^\s'\"),;]+")
KERAS_PATH = re.compile(r"(?<=keras:)[^+]+")  # the path of each keras: backbone in a backbone name (parts join by +)


@dataclass
class DataSummary:
    """The images a model was trained and validated on (`metadata.json`'s `data`)."""

    root: str | None = None  # the data folder, as a path of the training machine
    train_images: int | None = None
    validation_images: int | None = None
    validation_from: str | None = None  # "folder" (a validation/ folder) or "split" (held out of train)
    test_images: int | None = None  # the held-out test split's size; None: no test split (or an older file)
    test_from: str | None = None  # "folder" (a test/ folder) or "split" (--test-split of each class)
    skipped: list[str] = field(default_factory=list)  # files the scan skipped as unusable


@dataclass
class ModelMetadata:
    """A model folder's `metadata.json`: what the model is, what it was trained on, and how it did."""

    class_names: list[str]  # in the model's output order (labels.txt holds the same)
    image_size: tuple[int, int]  # (height, width) the model was trained at; it resizes any input to this
    backbone: str = "unknown"  # registry name, or hub:HANDLE
    cut_layer: str | None = None  # backbone layer that feeds the head; "top" (or None): its output
    weights: str | None = None  # imagenet, none, or the weights file used
    input: str = INPUT  # what the saved model takes, in words
    config: dict[str, Any] = field(default_factory=dict)  # the resolved TrainConfig, as TrainConfig.to_dict()
    data: DataSummary = field(default_factory=DataSummary)
    history: dict[str, list[float]] = field(default_factory=dict)  # per epoch: loss, accuracy, val_..., learning_rate
    val_accuracy: float | None = None  # after the last epoch
    best_val_accuracy: float | None = None
    epochs_run: int | None = None
    train_seconds: float | None = None
    trained_at: str | None = None  # ISO 8601, UTC
    parameters: dict[str, int] = field(default_factory=dict)  # total, trainable
    versions: dict[str, str] = field(default_factory=dict)  # classifier, tensorflow, keras, python
    stages: list[dict] = field(default_factory=list)  # per stage: name, first_epoch, last_epoch, learning_rate
    fine_tune_start_epoch: int | None = None  # epochs before fine-tuning began (None: no fine-tuning)
    validation_metrics: dict[str, float] = field(default_factory=dict)  # accuracy, macro_f1 of the saved model
    timing: dict[str, float] = field(default_factory=dict)  # seconds per step, cached vectors
    distribution: dict[str, Any] = field(default_factory=dict)  # strategy, replicas, devices, mixed precision
    # The "not sure" threshold serving applies by default (confidence.py), suggested by training from the validation
    # images (metrics.suggest_min_confidence); None: none reached the target, or no validation images, or older file.
    min_confidence: float | None = None
    min_confidence_coverage: float | None = None  # the share of validation images answered at min_confidence
    # The held-out test split's figures, scored once after the model was final (never used to choose anything):
    # split, from, count, accuracy, macro_f1, per_class, confusion_matrix. None: no test split, or an older file.
    test: dict[str, Any] | None = None
    # The Keras model files of keras: backbones, copied into the folder so that a retrain needs nothing outside it:
    # per file {"backbone": "keras:PATH" as the config names it, "file": the copy's name here, "sha256": its content's}.
    backbone_files: list[dict] = field(default_factory=list)
    # --flip-average: validation accuracy without and with the mirror image's probabilities averaged in
    # (validation_accuracy_plain, validation_accuracy_averaged); the saved model averages. None: no flips, older file.
    flips: dict[str, Any] | None = None
    # --refit: the head was trained again from its initial weights on train + validation (epochs, images) for the
    # epochs validation chose; history, val_accuracy, validation_metrics and min_confidence come from the run before
    # the refit, whose head had not seen the validation images. None: no refit, or an older file.
    refit: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know, kept as they are

    @classmethod
    def from_dict(cls, values: dict, source: str = "metadata.json") -> "ModelMetadata":
        """Read a parsed metadata.json; UsageError naming `source` when what serving needs is missing or wrong."""
        if not isinstance(values, dict):
            raise UsageError(f"{source}: not a JSON object; not a model's metadata")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {key: value for key, value in values.items() if key in names}
        missing = [key for key in ("class_names", "image_size") if key not in known]
        if missing:
            raise UsageError(f"{source}: no {missing[0]}; not the metadata of a model folder")
        classes, size = known["class_names"], known["image_size"]
        if not (isinstance(classes, list) and classes and all(isinstance(name, str) for name in classes)):
            raise UsageError(f"{source}: class_names must be a non-empty list of names")
        if not (isinstance(size, list) and len(size) == 2 and all(_positive_int(side) for side in size)):
            raise UsageError(f"{source}: image_size must be [height, width] in pixels")
        check_min_confidence(known.get("min_confidence"), f"{source}: min_confidence")  # serving applies it
        coverage = known.get("min_confidence_coverage")  # the page shows it
        if coverage is not None and not (_number(coverage) and 0 <= coverage <= 1):
            raise UsageError(f"{source}: min_confidence_coverage must be a fraction from 0 to 1, or null")
        test = known.get("test")  # the page shows it
        shown = isinstance(test, dict) and _number(test.get("accuracy")) and _positive_int(test.get("count"))
        if test is not None and not shown:
            raise UsageError(f"{source}: test must be an object with a numeric accuracy and count, or null")
        data = known.get("data") if isinstance(known.get("data"), dict) else {}
        data_names = {f.name for f in dataclasses.fields(DataSummary)}
        known["data"] = DataSummary(**{key: value for key, value in data.items() if key in data_names})
        known["image_size"] = tuple(size)
        return cls(**known, extra={key: value for key, value in values.items() if key not in names})

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of metadata.json: the same keys, in the same order, as every version wrote."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return {**values, "image_size": list(self.image_size), "data": dataclasses.asdict(self.data), **self.extra}

    @property
    def is_hub(self) -> bool:
        return str(self.backbone).startswith(HUB_PREFIX)

    def class_list(self, most: int) -> str:
        """The class names for people: "a, b, c", or the first `most` and "... (N in all)"."""
        names = self.class_names
        return ", ".join(names[:most]) + (f" ... ({len(names)} in all)" if len(names) > most else "")

    def describe_backbone(self) -> str:
        """The backbone in words a visitor may read (the page's card, a Space's README); no machine path:
        "inception_v3, cut at `mixed7`, weights: ImageNet", "TF-Hub model `efficientnet_b0`"."""
        if self.is_hub:
            return f"TF-Hub model `{public_name(self.backbone[len(HUB_PREFIX) :])}`"
        backbone = public_json(self.backbone)  # a keras: file by its name
        where = "whole network" if self.cut_layer in WHOLE_NETWORK else f"cut at `{self.cut_layer}`"
        if self.weights in (None, "none"):
            weights = "none (trained from scratch)"
        else:
            weights = "ImageNet" if self.weights == "imagenet" else public_name(str(self.weights))
        return f"{backbone}, {where}, weights: {weights}"


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def public_name(value: str) -> str:
    """A file or folder by its last part (no machine layout on show); a URL unchanged."""
    if "://" in value:
        return value
    flavour = PureWindowsPath if "\\" in value else PurePosixPath  # Windows paths read either separator
    return flavour(value).name or value


def public_text(text: str) -> str:
    """`text` (a log line, a message) with every absolute path in it cut to its last part."""
    return ABSOLUTE_PATH.sub(lambda match: public_name(match.group()), text)


def public_json(value):
    """A JSON value (metadata.json, metrics.json) with every absolute path in it, hub: handles too, cut to its last
    part: what a public page or repository may show of a model folder."""
    if isinstance(value, dict):
        return {key: public_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [public_json(item) for item in value]
    if isinstance(value, str):
        if value.startswith(KERAS_PREFIX) or f"+{KERAS_PREFIX}" in value:  # keras:PATH, alone or a combined part
            return KERAS_PATH.sub(lambda match: public_name(match.group()), value)
        prefix = HUB_PREFIX if value.startswith(HUB_PREFIX) else ""
        path = value[len(prefix) :]
        absolute = PurePosixPath(path).is_absolute() or PureWindowsPath(path).is_absolute()
        return prefix + public_name(path) if absolute else value
    return value

"""Pretrained backbones: one entry each, so adding a backbone is one small, local change.

A backbone here is a function from a 0..255 RGB image batch at a fixed size to a feature map or
vector. Its own input scaling is part of it (inside the saved model), so nobody who loads a model
can feed it pixels scaled the wrong way.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ._tf import keras
from .errors import UsageError


@dataclass(frozen=True)
class Backbone:
    """How to build one backbone and what it needs."""

    name: str
    build: Callable[..., "keras.Model"]  # (input_shape, weights) -> full keras.applications model
    scale: tuple[float, float]  # pixels * scale + offset, the network's own preprocessing
    min_size: int  # smallest image side the network accepts
    default_cut: str | None  # layer whose output we use; None = the network's last layer
    default_size: int  # the size it was pretrained at (a good --image-size)


def _inception_v3(input_shape, weights):
    return keras.applications.InceptionV3(include_top=False, weights=weights, input_shape=input_shape)


BACKBONES: dict[str, Backbone] = {
    "inception_v3": Backbone(
        "inception_v3", _inception_v3, scale=(1 / 127.5, -1.0), min_size=75, default_cut="mixed7", default_size=299
    ),
}


def get_backbone(name: str) -> Backbone:
    try:
        return BACKBONES[name]
    except KeyError:
        raise UsageError(f"--backbone {name}: unknown backbone (choose from {', '.join(sorted(BACKBONES))})") from None


def build_feature_extractor(backbone: Backbone, image_size: tuple[int, int], weights: str, cut_layer: str | None):
    """The backbone as a Keras model from scaled pixels to features, with `weights` loaded.

    `weights` is "imagenet" (Keras' download cache), "none" (random init) or a local weights file.
    """
    input_shape = (*image_size, 3)
    keras_weights = {"imagenet": "imagenet", "none": None}.get(weights, weights)
    if keras_weights not in ("imagenet", None) and not Path(keras_weights).is_file():
        raise UsageError(f"--weights {weights}: no such file (use imagenet, none, or a Keras weights file)")
    try:
        network = backbone.build(input_shape, keras_weights)
    except UsageError:
        raise
    except Exception as error:  # Keras raises bare Exception for failed downloads
        if keras_weights == "imagenet":
            raise UsageError(
                f"--weights imagenet: could not download the {backbone.name} ImageNet weights ({_first_line(error)}); "
                "pass --weights FILE with a local Keras weights file, or --weights none to train from scratch"
            ) from None
        raise UsageError(f"--weights {weights}: cannot load into {backbone.name} ({_first_line(error)})") from None
    cut = cut_layer or backbone.default_cut
    if cut is None:
        return network
    try:
        output = network.get_layer(cut).output
    except ValueError:
        raise UsageError(f"--cut-layer {cut}: {backbone.name} has no layer of that name") from None
    return keras.Model(network.inputs, output, name=f"{backbone.name}_to_{cut}")


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__

"""resolve(): every option left to the backbone is filled once, and what it fills."""

from __future__ import annotations

from classifier.config import TrainConfig
from classifier.model.backbones import resolve


def test_resolve_fills_the_cut_and_fine_tuning_layer_and_says_when_weights_are_ignored():
    config = resolve(TrainConfig(data="unused"))
    assert (config.cut_layer, config.fine_tune_from, config.image_shape, config.transfer) == (
        "mixed7",
        "mixed6",
        (150, 150),
        True,
    )
    assert resolve(config) == config  # resolving twice changes nothing
    assert resolve(TrainConfig(data="unused", cut_layer="mixed4")).fine_tune_from == "mixed3"
    assert resolve(TrainConfig(data="unused", backbone="resnet50")).cut_layer == "top"

    lines = []
    scratch = resolve(TrainConfig(data="unused", backbone="simple_cnn"), log=lines.append)
    assert (scratch.weights, scratch.transfer, scratch.cut_layer, scratch.fine_tune_from) == (
        "none",
        False,
        "top",
        None,
    )
    assert lines == [
        "note: simple_cnn has no pretrained weights; --weights imagenet is ignored and it trains from scratch"
    ]

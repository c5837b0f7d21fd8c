"""Fine-tuning touches only what it unfreezes; early stopping stops; class weights balance."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest
from conftest import MOBILENET_STEM, tiny_config
from painted import paint, solid

from classifier.config import TrainConfig
from classifier.train import train
from classifier.training.control import class_weights

QUIET = dict(log=lambda *_: None)


def test_fine_tuning_moves_only_unfrozen_layers_and_leaves_batchnorm_alone(tmp_path, random_mobilenet_weights):
    data = paint(tmp_path / "data", {"blue": solid((20, 20, 230)), "red": solid((230, 20, 20))}, per_class=5, size=32)
    weights = random_mobilenet_weights  # MobileNetV2 at --alpha 0.35, the whole network: its default fine-tuning layer
    config = tiny_config(
        data,
        tmp_path / "m",
        backbone="mobilenet_v2",
        alpha=0.35,
        weights=str(weights),
        cache_dir=str(tmp_path / "cache"),
        cut_layer=None,
        image_size=32,
        epochs=1,
        fine_tune_epochs=1,
        fine_tune_learning_rate=1e-2,
        batch_size=8,
        dense_units=8,
        augment=False,
    )
    result = train(config, **QUIET)
    meta = result.metadata
    assert [stage["name"] for stage in meta.stages] == ["head", "fine_tune"]
    assert meta.stages[1]["from_layer"] == "block_11_expand"
    assert meta.fine_tune_start_epoch == 1 and len(meta.history["loss"]) == 2
    assert meta.history["learning_rate"] == pytest.approx([1e-3, 1e-2])

    original = keras.applications.MobileNetV2(
        alpha=0.35, include_top=False, weights=str(weights), input_shape=(32, 32, 3)
    )
    tuned = result.model.get_layer("backbone")
    names = [layer.name for layer in tuned.layers]
    first = names.index("block_11_expand")
    moved = []
    for index, layer in enumerate(tuned.layers):
        if not layer.weights:
            continue
        same = all(
            np.array_equal(a, b)
            for a, b in zip(layer.get_weights(), original.get_layer(layer.name).get_weights(), strict=True)
        )
        if isinstance(layer, keras.layers.BatchNormalization) or index < first:
            assert same, f"{layer.name} changed but should be frozen"
        else:
            moved.append(not same)
    assert moved and all(moved), "every unfrozen convolution should have moved"


def test_early_stopping_stops_and_keeps_the_best_epoch(tmp_path):
    """Validation labels swapped: the better it learns training, the worse validation loss gets."""
    blue, red = solid((20, 20, 230)), solid((230, 20, 20))
    data = tmp_path / "data"
    paint(data / "train", {"blue": blue, "red": red}, per_class=16)
    paint(data / "validation", {"blue": red, "red": blue}, per_class=4, seed=1)
    config = tiny_config(
        data,
        tmp_path / "m",
        backbone="simple_cnn",
        cut_layer=None,
        image_size=16,
        epochs=15,
        patience=2,
        learning_rate=1e-2,
        augment=False,
    )
    result = train(config, **QUIET)
    history = result.metadata.history
    run = result.metadata.epochs_run
    assert run < 15 and len(history["val_loss"]) == run
    best = int(np.argmin(history["val_loss"]))
    assert run == best + 1 + 2  # stopped after `patience` epochs without improvement
    assert result.metadata.validation_metrics["accuracy"] == pytest.approx(history["val_accuracy"][best])


def test_balanced_class_weights_even_out_the_classes():
    weights = class_weights(TrainConfig(data="x", class_weight="balanced"), [0] * 6 + [1] * 2, 2)
    assert weights == pytest.approx({0: 8 / 12, 1: 2.0})
    assert class_weights(TrainConfig(data="x"), [0, 1], 2) is None


class _StopAfter(keras.callbacks.Callback):
    """Ctrl-C at the end of an epoch."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise KeyboardInterrupt


def test_the_head_on_cached_features_backs_up_by_time_and_never_claims_an_epoch_it_did_not_back_up(
    tmp_path, monkeypatch, random_mobilenet_weights
):
    import classifier.training.pipeline as train_module

    data = paint(tmp_path / "data", {"blue": solid((20, 20, 230)), "red": solid((230, 20, 20))}, per_class=6, size=32)
    stem = dict(MOBILENET_STEM, weights=str(random_mobilenet_weights), cache_dir=str(tmp_path / "cache"))
    config = tiny_config(data, tmp_path / "m", **stem, epochs=5, augment=False)
    # Its epochs take milliseconds, under BACKUP_SECONDS: stopped at epoch 3, nothing was backed up, nothing is kept.
    with pytest.raises(KeyboardInterrupt) as stopped:
        train(config, callbacks=[_StopAfter(3)], **QUIET)
    assert not stopped.value.args and not (tmp_path / "m.checkpoint").exists()

    monkeypatch.setattr(train_module, "BACKUP_SECONDS", 0.0)  # a backup after every epoch
    with pytest.raises(KeyboardInterrupt, match="epoch 3 was the last to complete"):
        train(config, callbacks=[_StopAfter(3)], **QUIET)
    lines = []
    meta = train(dataclasses.replace(config, resume=True), log=lines.append).metadata
    assert "resume: continuing the head stage after epoch 3" in lines and len(meta.history["loss"]) == 5

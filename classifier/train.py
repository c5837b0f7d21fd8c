"""Train a classifier on a frozen pretrained backbone and save a self-contained model folder.

    python -m classifier.train --data PATH_OR_NAME [--out models/NAME] [options]

`train(config)` is the library entry point; `main` is a thin CLI over it.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from ._tf import keras
from .artifacts import check_output_dir, save_model_dir, versions
from .augment import make_augmenter
from .backbones import get_backbone
from .config import TrainConfig
from .data import image_dataset, load_image_data
from .datasets import resolve_data
from .distribute import describe, distribution_strategy, precision_policy, replica_batch_size, worker_out_dir
from .errors import ArgumentParser, cli
from .features import feature_cache_applies, training_features
from .model import build_model, check_model_options, compile_model, feature_extractor, image_size
from .model import head as model_head


@dataclass
class TrainResult:
    model_dir: Path
    metadata: dict
    model: object  # the trained keras.Model, as saved


def resolve_data_dir(config: TrainConfig) -> Path:
    """A folder path, or a built-in dataset name prepared (downloaded, converted) on demand."""
    return resolve_data(config.data, csv_dir=config.csv_dir)


def default_out_dir(data_dir: Path) -> Path:
    name = data_dir.resolve().name
    if name.endswith("_filtered"):  # cats_and_dogs_filtered -> cats_and_dogs
        name = name[: -len("_filtered")]
    return Path("models") / name


def train(config: TrainConfig, log=print) -> TrainResult:
    """Run one training job end to end; raises UsageError for anything the user must fix."""
    config.validate()
    check_model_options(config)
    strategy = distribution_strategy(config)
    started = time.time()
    data_dir = resolve_data_dir(config)
    out = check_output_dir(config.out or default_out_dir(data_dir), config.overwrite)

    keras.utils.set_random_seed(config.seed)
    data = load_image_data(data_dir, config.validation_split, config.seed)
    with strategy.scope(), precision_policy(config.mixed_precision):
        model = build_model(config, len(data.class_names))
        compile_model(model, config.learning_rate)
    if config.strategy != "default":
        log(f"strategy: {config.strategy}, {strategy.num_replicas_in_sync} replica(s) in sync")
    log(
        f"data: {len(data.train)} training and {len(data.validation)} validation images "
        f"({'validation folder' if data.validation_from == 'folder' else f'{config.validation_split:.0%} held out'}), "
        f"{len(data.class_names)} classes: {', '.join(data.class_names[:10])}{' ...' if len(data.class_names) > 10 else ''}"
    )
    if config.weights == "none":
        log("note: --weights none has no pretrained features to transfer, so the whole network trains from scratch")
    else:
        log(f"model: {config.backbone} ({config.weights} weights) frozen up to {cut_layer(config)}, {config.head_pooling} pooling head")

    history, timing = fit_head(model, data, config, strategy, log)
    metadata = build_metadata(config, data, model, history, time.time() - started)
    metadata["timing"] = timing
    metadata["distribution"] = describe(strategy, config)
    with worker_out_dir(out, strategy) as save_to:
        save_model_dir(save_to, model, metadata)
    best = max(history["val_accuracy"])
    log(
        f"done: best val_accuracy {best:.4f} (epoch {history['val_accuracy'].index(best) + 1}), "
        f"final {metadata['val_accuracy']:.4f}; {_duration(time.time() - started)}; model saved to {out}"
    )
    return TrainResult(out, metadata, model)


def fit_head(model, data, config: TrainConfig, strategy, log=print) -> tuple[dict, dict]:
    """Train the head (the backbone is frozen, or trains too with --weights none): (history, timing).

    With a frozen backbone and the feature cache on, the backbone runs once per image and copy,
    and the head trains on the cached vectors; otherwise every epoch runs the whole (already
    compiled) model on images.
    """
    epoch_log = EpochLog(config.epochs, log)
    started = time.time()
    if feature_cache_applies(config):
        x_train, y_train, x_val, y_val = training_features(feature_extractor(model), data, config, log)
        features_seconds = time.time() - started
        head = model_head(model)
        with strategy.scope():
            compile_model(head, config.learning_rate)
        history = head.fit(
            x_train, y_train, batch_size=replica_batch_size(config.batch_size, len(x_train), strategy), epochs=config.epochs,
            validation_data=(x_val, y_val), shuffle=True, verbose=0, callbacks=[epoch_log],
        )
        timing = {"features_seconds": round(features_seconds, 1), "head_seconds": round(time.time() - started - features_seconds, 1),
                  "cached_training_vectors": len(x_train)}
    else:
        size = image_size(config)
        batch = lambda split: replica_batch_size(config.batch_size, len(split), strategy)  # noqa: E731
        augmenter = make_augmenter(config, config.seed)
        train_ds = image_dataset(data.train, size, batch(data.train), shuffle=True, seed=config.seed, augmenter=augmenter)
        val_ds = image_dataset(data.validation, size, batch(data.validation))
        history = model.fit(train_ds, validation_data=val_ds, epochs=config.epochs, shuffle=False, verbose=0, callbacks=[epoch_log])
        timing = {"images_seconds": round(time.time() - started, 1)}
    return {name: [float(v) for v in values] for name, values in history.history.items()}, timing


def cut_layer(config: TrainConfig) -> str | None:
    return config.cut_layer or get_backbone(config.backbone).default_cut


def build_metadata(config: TrainConfig, data, model, history: dict, seconds: float) -> dict:
    return {
        "class_names": data.class_names,
        "image_size": list(image_size(config)),
        "backbone": config.backbone,
        "cut_layer": cut_layer(config),
        "weights": config.weights,
        "input": "RGB pixels 0..255, any size (the model resizes); float32 batch (N, H, W, 3)",
        "config": config.to_dict(),
        "data": {
            "root": str(data.root),
            "train_images": len(data.train),
            "validation_images": len(data.validation),
            "validation_from": data.validation_from,
            "skipped": [path for path, _ in data.skipped],
        },
        "history": history,
        "val_accuracy": history["val_accuracy"][-1],
        "best_val_accuracy": max(history["val_accuracy"]),
        "epochs_run": len(history["val_accuracy"]),
        "train_seconds": round(seconds, 1),
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "parameters": {"total": int(model.count_params()), "trainable": int(sum(w.numpy().size for w in model.trainable_weights))},
        "versions": versions(),
    }


class EpochLog(keras.callbacks.Callback):
    """One line per epoch: every metric Keras reports, and the epoch's wall time."""

    def __init__(self, epochs: int, log):
        super().__init__()
        self.epochs, self.log = epochs, log

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.time()

    def on_epoch_end(self, epoch, logs=None):
        metrics = "  ".join(f"{k} {v:.4f}" for k, v in sorted((logs or {}).items()) if k != "learning_rate")
        self.log(f"epoch {epoch + 1}/{self.epochs}  {metrics}  ({time.time() - self.started:.1f} s)")


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m classifier.train",
        description="Train an image classifier on a frozen pretrained backbone, with on-the-fly augmentation.",
        epilog="Example: python -m classifier.train --data cats_dogs --out models/cats_dogs",
    )
    TrainConfig.add_arguments(parser)
    return parser


@cli
def main(argv: Sequence[str] | None = None) -> int:
    config = TrainConfig.from_args(build_parser().parse_args(argv))
    train(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())

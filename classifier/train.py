"""Train a classifier on a frozen pretrained backbone and save a self-contained model folder.

    python -m classifier.train --data PATH_OR_NAME [--out models/NAME] [options]

`train(config)` is the library entry point; `main` is a thin CLI over it.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from ._tf import keras
from .artifacts import check_output_dir, save_model_dir, versions
from .augment import make_augmenter
from .backbones import HUB_PREFIX, get_backbone
from .config import TrainConfig
from .control import Checkpoint, class_weights, early_stop_note, training_callbacks
from .data import image_dataset, load_image_data
from .datasets import resolve_data
from .distribute import (
    WORKER_LOST,
    describe,
    distribution_strategy,
    is_chief,
    multi_worker_fit,
    precision_policy,
    replica_batch_size,
    worker_lost,
    worker_out_dir,
)
from .errors import ArgumentParser, cli
from .evaluate import classification_metrics, most_wrong, write_report
from .features import feature_cache_applies, training_features
from .finetune import fine_tune_layer, unfreeze_from
from .model import (
    build_model,
    check_model_options,
    compile_model,
    feature_extractor,
    image_size,
    with_backbone_defaults,
)
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
    config = with_backbone_defaults(config.validate())
    backbone = check_model_options(config)
    if not backbone.pretrained and config.weights != "none":
        log(
            f"note: {backbone.name} has no pretrained weights; --weights {config.weights} is ignored and it trains "
            "from scratch"
        )
        config = dataclasses.replace(config, weights="none")
    strategy = distribution_strategy(config, log)
    started = time.time()
    data_dir = resolve_data_dir(config)
    out = check_output_dir(config.out or default_out_dir(data_dir), config.overwrite)
    checkpoint = Checkpoint(out, config)

    keras.utils.set_random_seed(config.seed)
    data = load_image_data(data_dir, config.validation_split, config.seed)
    with strategy.scope(), precision_policy(config.mixed_precision):
        model = build_model(config, len(data.class_names))
    fine_tune_from = fine_tune_layer(model, backbone, config)
    if config.strategy != "default":
        log(f"strategy: {config.strategy}, {strategy.num_replicas_in_sync} replica(s) in sync")
    log(
        f"data: {len(data.train)} training and {len(data.validation)} validation images "
        f"({'validation folder' if data.validation_from == 'folder' else f'{config.validation_split:.0%} held out'}), "
        f"{len(data.class_names)} classes: "
        f"{', '.join(data.class_names[:10])}{' ...' if len(data.class_names) > 10 else ''}"
    )
    if config.weights == "none":
        log("note: --weights none has no pretrained features to transfer, so the whole network trains from scratch")
    else:
        weights = "" if backbone.name.startswith(HUB_PREFIX) else f" ({config.weights} weights)"
        log(
            f"model: {config.backbone}{weights} frozen up to {cut_layer(config) or 'its output'}, "
            f"{config.head_pooling} pooling head"
        )

    class_weight = class_weights(config, data.train.labels, len(data.class_names))
    batch = lambda count: replica_batch_size(config.batch_size, count, strategy)  # noqa: E731
    # The image pipelines (lazy until iterated): for the head without the cache, fine-tuning and evaluation.
    image_fit = dict(
        x=image_dataset(
            data.train,
            image_size(config),
            batch(len(data.train)),
            shuffle=True,
            seed=config.seed,
            augmenter=make_augmenter(config, config.seed),
        ),
        validation_data=image_dataset(data.validation, image_size(config), batch(len(data.validation))),
        class_weight=class_weight,
        shuffle=False,  # the training pipeline shuffles itself
    )
    cached = feature_cache_applies(config)
    timing = {}
    try:
        fit_model, fit_args = model, image_fit
        if cached:
            # The backbone is frozen: run it once per image and copy, then train the head on vectors.
            tick = time.time()
            x_train, y_train, x_val, y_val = training_features(feature_extractor(model), data, config, log)
            timing.update(features_seconds=round(time.time() - tick, 1), cached_training_vectors=len(x_train))
            fit_model = model_head(model)
            fit_args = dict(
                x=x_train,
                y=y_train,
                batch_size=batch(len(x_train)),
                validation_data=(x_val, y_val),
                class_weight=class_weight,
                shuffle=True,
            )
        tick = time.time()
        stages = [
            run_stage(
                "head",
                model,
                fit_model,
                fit_args,
                checkpoint,
                strategy,
                config,
                config.learning_rate,
                0,
                config.epochs,
                log,
            )
        ]
        timing["head_seconds"] = round(time.time() - tick, 1)
        if fine_tune_from:  # fine-tuning changes the backbone, so it trains on images, never on the cache
            tick, start = time.time(), checkpoint.epochs_done
            layers = unfreeze_from(model, fine_tune_from)
            log(
                f"fine-tuning: {layers} backbone layers from {fine_tune_from} on train (BatchNorm stays frozen) at "
                f"learning rate {config.fine_tune_learning_rate:g}"
            )
            stage = run_stage(
                "fine_tune",
                model,
                model,
                image_fit,
                checkpoint,
                strategy,
                config,
                config.fine_tune_learning_rate,
                start,
                start + config.fine_tune_epochs,
                log,
            )
            stages.append({**stage, "from_layer": fine_tune_from})
            timing["fine_tune_seconds"] = round(time.time() - tick, 1)
        if cached and not fine_tune_from:  # the head on cached features is exactly the model on images
            probabilities = model_head(model).predict(x_val, verbose=0)
        else:
            probabilities = model.predict(image_fit["validation_data"], verbose=0)
        metrics = {
            **classification_metrics(data.validation.labels, probabilities, data.class_names),
            "split": "validation",
            "data": str(data_dir),
        }
        metadata = build_metadata(config, data, model, checkpoint.history, time.time() - started)
        metadata.update(
            stages=stages,
            fine_tune_start_epoch=stages[1]["first_epoch"] - 1 if len(stages) > 1 else None,
            validation_metrics={"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_avg"]["f1"]},
            timing=timing,
            distribution=describe(strategy, config),
        )
        wrong = most_wrong(data.validation.paths, data.validation.labels, probabilities)
        with worker_out_dir(out, strategy) as save_to:
            save_model_dir(
                save_to, model, metadata, extra=lambda folder: write_report(folder, metrics, metadata, wrong)
            )
    except KeyboardInterrupt:
        raise checkpoint.interrupted() from None
    except WORKER_LOST as error:
        if config.strategy != "multi-worker":
            raise
        raise worker_lost(error, checkpoint.stopped()) from None
    checkpoint.remove()
    best = max(metadata["history"]["val_accuracy"])
    log(
        f"done: best val_accuracy {best:.4f} (epoch {metadata['history']['val_accuracy'].index(best) + 1}), "
        f"saved model's {metrics['accuracy']:.4f}; {_duration(time.time() - started)}; "
        + (f"model, metrics and plots saved to {out}" if is_chief(strategy) else "the chief worker saves the model")
    )
    return TrainResult(out, metadata, model)


def run_stage(
    name: str,
    model,
    fit_model,
    fit_args: dict,
    checkpoint: Checkpoint,
    strategy,
    config: TrainConfig,
    learning_rate: float,
    first: int,
    last: int,
    log,
) -> dict:
    """Fit epochs [first, last) of `fit_model` (the full model, or its head on cached features) at
    `learning_rate`, resumable; a stage finished before an interruption is restored instead.
    Checkpoints always hold the full `model`'s weights."""
    done = checkpoint.finished(name)
    if done:
        log(
            f"resume: the {name} stage had finished (epochs {done['first_epoch']}-{done['last_epoch']}); its weights "
            "are restored"
        )
        return checkpoint.restore_stage(name, model)
    with strategy.scope():
        compile_model(fit_model, learning_rate)
    callbacks = checkpoint.stage_callbacks(name)
    if checkpoint.epochs_done > first:
        log(f"resume: continuing the {name} stage after epoch {checkpoint.epochs_done}")
        fit_model.optimizer.learning_rate = checkpoint.history["learning_rate"][-1]
    control = training_callbacks(config)
    fit_model._initial_epoch = (
        None  # Keras keeps the epoch BackupAndRestore restored on the model, even into the next fit
    )
    total = config.epochs + config.fine_tune_epochs
    with multi_worker_fit(strategy):
        fit_model.fit(
            **fit_args,
            initial_epoch=first,
            epochs=last,
            verbose=0,
            callbacks=[*callbacks, EpochLog(total, log), *control],
        )
    note = early_stop_note(control)
    if note:
        log(note)
    info = {
        "name": name,
        "first_epoch": first + 1,
        "last_epoch": checkpoint.epochs_done,
        "learning_rate": learning_rate,
    }
    checkpoint.finish_stage(name, model, info)
    return info


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
        "parameters": {
            "total": int(model.count_params()),
            "trainable": int(sum(w.numpy().size for w in model.trainable_weights)),
        },
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

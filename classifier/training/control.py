"""Training control: early stopping, learning-rate drops, class weights, and checkpoints to resume from.

A run writes `<out>.checkpoint/` beside its model folder while it trains: `state.json` (the config
and the metrics of every epoch backed up) and, per stage, Keras' `BackupAndRestore` folder (weights at
the end of each epoch, or for the head on cached features, whose epochs take less than a backup, at
most every few seconds; two copies, so a Ctrl-C during a write still leaves a readable one). A
finished stage leaves `<stage>.weights.h5`. The folder is removed when the model folder is written.
`--resume` rebuilds the same model, skips finished stages and lets `BackupAndRestore` continue the
unfinished one at its next epoch. Early stopping's and the plateau's counters restart on resume;
the learning rate continues from the last completed epoch's.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from .._tf import keras
from ..config import TrainConfig
from ..errors import UsageError


class Cancelled(Exception):
    """A run stopped by its caller (a callback or progress hook raised it): nothing is kept, see train.train."""


# Options that may differ between an interrupted run and its --resume; any other difference is refused.
RESUMABLE_CHANGES = {
    "resume",
    "overwrite",
    "epochs",
    "fine_tune_epochs",
    "patience",
    "reduce_lr_on_plateau",
    "worker_timeout",
    "flip_average",  # acts after the epochs: the checkpoint holds the classifier's weights either way
    "refit",  # acts after the epochs
}
PLATEAU = dict(factor=0.2, patience=2, min_lr=1e-7)


def training_callbacks(config: TrainConfig) -> list:
    """The callbacks `--patience` and `--reduce-lr-on-plateau` ask for (fresh ones per stage)."""
    callbacks = []
    if config.patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience, restore_best_weights=True)
        )
    if config.reduce_lr_on_plateau:
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", **PLATEAU))
    return callbacks


def early_stop_note(callbacks: list) -> str | None:
    """One line saying where early stopping stopped, if it did."""
    for callback in callbacks:
        if isinstance(callback, keras.callbacks.EarlyStopping) and callback.stopped_epoch:
            return (
                f"early stopping: val_loss did not improve for {callback.patience} epochs after epoch "
                f"{callback.best_epoch + 1}; "
                f"stopped after epoch {callback.stopped_epoch + 1} and kept epoch {callback.best_epoch + 1}'s weights"
            )
    return None


def class_weights(config: TrainConfig, labels, num_classes: int) -> dict[int, float] | None:
    """`balanced`: each class weighs n / (classes * count), so every class adds the same total to the loss."""
    if config.class_weight == "none":
        return None
    counts = np.bincount(np.asarray(labels, int), minlength=num_classes)
    return {i: float(len(labels) / (num_classes * count)) if count else 0.0 for i, count in enumerate(counts)}


def checkpoint_dir(out: Path) -> Path:
    return out.with_name(out.name + ".checkpoint")


class Checkpoint:
    """The resumable state of one run in `<out>.checkpoint/`."""

    def __init__(self, out: Path, config: TrainConfig):
        self.folder = checkpoint_dir(out)
        self.state_file = self.folder / "state.json"
        if config.resume:
            if not self.state_file.is_file():
                raise UsageError(
                    f"--resume: no interrupted run to continue ({self.folder} does not exist); run without --resume"
                )
            self.state = json.loads(self.state_file.read_text())
            changed = sorted(
                k
                for k, v in config.to_dict().items()
                if k not in RESUMABLE_CHANGES and self.state["config"].get(k) != v
            )
            if changed:
                raise UsageError(
                    f"--resume: {', '.join('--' + k.replace('_', '-') for k in changed)} differ from the interrupted "
                    "run's; "
                    f"repeat its options (saved in {self.state_file}) or drop --resume and pass --overwrite to start "
                    "over"
                )
        else:
            if self.folder.exists() and not config.overwrite:
                raise UsageError(
                    f"--out {out}: an interrupted run left {self.folder}; add --resume to continue it, or "
                    "--overwrite to start over"
                )
            shutil.rmtree(self.folder, ignore_errors=True)
            self.state = {"config": config.to_dict(), "history": {}, "finished_stages": {}}

    @property
    def history(self) -> dict[str, list[float]]:
        return self.state["history"]

    @property
    def epochs_done(self) -> int:
        return len(next(iter(self.history.values()), []))

    def finished(self, stage: str) -> dict | None:
        return self.state["finished_stages"].get(stage)

    def stage_callbacks(self, stage: str, every: float = 0.0) -> list:
        """Back up weights after an epoch once the last backup is `every` seconds old (0: after every epoch) and
        record the epochs' metrics with it; on resume, drop epochs the backup lacks."""
        backup = self.folder / stage
        meta = backup / "training_metadata.json"
        if meta.is_file():
            keep = json.loads(meta.read_text())["epoch"]
            self.state["history"] = {k: v[:keep] for k, v in self.history.items()}
        return [_Backup(self, backup, every)]

    def finish_stage(self, stage: str, model, info: dict) -> None:
        model.save_weights(self.folder / f"{stage}.weights.h5")
        self.state["finished_stages"][stage] = info
        self.save()

    def restore_stage(self, stage: str, model) -> dict:
        model.load_weights(self.folder / f"{stage}.weights.h5")
        return self.finished(stage)

    def save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = self.state_file.with_suffix(".partial")
        partial.write_text(json.dumps(self.state, indent=1))
        os.replace(partial, self.state_file)

    def interrupted(self) -> KeyboardInterrupt:
        """The KeyboardInterrupt to re-raise: how to resume, or nothing kept when no epoch had finished."""
        return KeyboardInterrupt(*filter(None, [self.stopped()]))

    def stopped(self) -> str:
        """After a run stopped early: how to resume from its last completed epoch, or "" (and nothing
        kept) when no epoch had finished."""
        if self.epochs_done == 0:
            self.remove()
            return ""
        return (
            f"epoch {self.epochs_done} was the last to complete and is saved in {self.folder}; "
            "run the same command with --resume to continue from there"
        )

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class _Backup(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore, backing up after an epoch only once the last backup is `every` seconds old, and
    recording each epoch's metrics (and learning rate) in the checkpoint's state when its backup is made: the
    state never counts an epoch the backup lacks, so a resume continues where the backup stands. (An epoch of
    the head on cached features takes a fraction of a second, about what a backup takes.)"""

    def __init__(self, checkpoint: Checkpoint, folder: Path, every: float):
        super().__init__(str(folder), double_checkpoint=True)
        self.checkpoint, self.every = checkpoint, every
        self.pending: list[dict] = []  # the metrics of epochs done since the last backup
        self.last = time.monotonic()  # when the stage began or the last backup was made

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        self.pending.append(logs)
        if time.monotonic() - self.last >= self.every:
            super().on_epoch_end(epoch, logs)  # the backup
            self.record()

    def on_train_end(self, logs=None):
        self.record()  # the stage is complete: finish_stage saves its weights
        super().on_train_end(logs)  # deletes the backup

    def record(self) -> None:
        for logs in self.pending:
            for key, value in logs.items():
                self.checkpoint.history.setdefault(key, []).append(float(value))
        self.checkpoint.save()
        self.pending, self.last = [], time.monotonic()

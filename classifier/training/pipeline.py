"""Train a classifier on a frozen pretrained backbone and save a self-contained model folder.

`train(config)` is the library entry point and reads as the steps of a run: prepare (resolve the
options, find the data, build the model), fit the head (on cached backbone features, or on images),
fine-tune (optional), score the validation images, refit (optional), score the test split (when the data has
one), save.

`--flip-average` saves a model that averages each image's probabilities with its mirror image's (model/flips.py):
what trains is the ordinary classifier nested in it, and the validation images are scored both ways (their mirror
images' features cached as one more variant), so the summary and metadata.json say what the flips bought; the
"not sure" threshold and the test score are the averaging model's. `--refit` trains the head again from its initial
weights on train + validation for the epochs validation chose (cached features only): the validation figures are
then the run's before the refit.
Each step is a function of one `Run`, which holds what the steps share. `python -m classifier.train`
(classifier/train.py) is a thin CLI over `train`.

The test split (data/pipeline.py) reaches no step before the model is final: not training, the feature cache,
epochs, augmentation nor the "not sure" threshold (chosen on validation); it is scored once, on images, at the end.

A caller that watches or stops a run (the web page's Train tab, classifier/serving/workbench.py) passes
Keras `callbacks` (added to every fit) and `on_progress` (the backbone feature pass's
`console.Progress` after each batch). Either may raise `control.Cancelled`: the run stops there,
keeps no checkpoint and writes no model folder, so the previous model stays as it was.

With `--strategy multi-worker` and the feature cache, a worker that does not train (see
distribute.py) only computes its share of the features (`share_features`) and stops.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from .._tf import keras, tf
from ..config import TrainConfig
from ..console import Log, Progress, say
from ..data.augment import make_augmenter
from ..data.datasets import resolve_data
from ..data.pipeline import TEST_DIR, ImageData, ScanMemo, Split, image_dataset, load_image_data
from ..errors import UsageError
from ..evaluation.metrics import MIN_EVIDENCE, TARGET_PRECISION, classification_metrics, most_wrong
from ..evaluation.report import write_report
from ..model.artifacts import check_output_dir, save_model_dir, versions
from ..model.backbones import HUB_PREFIX, KERAS_PREFIX, TOP, resolve
from ..model.compat import forget_restored_epoch
from ..model.finetune import fine_tune_layer, unfreeze_from
from ..model.flips import average, with_flips
from ..model.metadata import DataSummary, ModelMetadata
from ..model.network import build_model, classifier, compile_model, feature_extractor
from ..model.network import head as model_head
from .control import Cancelled, Checkpoint, class_weights, early_stop_note, training_callbacks
from .distribute import (
    WORKER_LOST,
    FeatureShare,
    chief_trains_alone,
    describe,
    distribution_strategy,
    feature_share,
    is_chief,
    precision_policy,
    replica_batch_size,
    worker_lost,
    worker_out_dir,
)
from .features import (
    FeatureCache,
    feature_cache_applies,
    mirrored_features,
    scan_memo_dir,
    training_features,
    variant_epochs,
)

# metadata.json's and the summary's word on a refit model's validation figures.
REFIT_NOTE = (
    "the head was refit on train + validation: the validation figures (history, val_accuracy, validation_metrics, "
    "min_confidence) are from the run before the refit"
)
SCORING_BATCH = 1024  # cached feature vectors per validation or scoring step
BACKUP_SECONDS = 10.0  # the head on cached features backs up at most this often: its epochs cost less than a backup
MIN_HEAD_STEPS = 4  # the head's batch on cached features is at most this fraction of the photos: a few steps per epoch


@dataclass
class TrainResult:
    """What a run made; all None on a multi-worker worker that only computed its share of the features."""

    model_dir: Path | None
    metadata: ModelMetadata | None  # what the model folder's metadata.json holds
    model: object  # the trained keras.Model, as saved


@dataclass
class Run:
    """One training run: what its steps share. Each step reads it and adds what it produced."""

    config: TrainConfig  # resolved: every option is a plain value
    log: Log
    strategy: tf.distribute.Strategy  # the model was built under it
    data: ImageData
    out: Path
    checkpoint: Checkpoint
    model: keras.Model
    fine_tune_from: str | None  # first backbone layer to unfreeze; None: no fine-tuning
    share: FeatureShare | None = None  # this worker's share of a multi-worker feature pass
    started: float = field(default_factory=time.time)
    features: tuple | None = None  # (x_train, y_train, x_val, y_val) cached backbone features, when the cache applies
    initial_head: list | None = None  # with --refit: the head's weights before training, where the refit starts
    mirrored: object = None  # with --flip-average and the cache: the validation images' mirror images' features
    stages: list[dict] = field(default_factory=list)  # per stage: name, epochs, learning rate
    timing: dict = field(default_factory=dict)  # seconds per step, for metadata.json
    metrics: dict = field(default_factory=dict)  # the saved model's validation metrics (metrics.json)
    flips: dict | None = None  # with --flip-average: validation accuracy without and with the averaging
    refitted: dict | None = None  # with --refit: the refit's epochs and images
    wrong: list = field(default_factory=list)  # its most confidently wrong validation images (most_wrong.png)
    test_metrics: dict | None = None  # the final model's metrics on the test split (test_metrics.json), if any
    test_wrong: list = field(default_factory=list)  # its most confidently wrong test images (test_most_wrong.png)
    metadata: ModelMetadata | None = None  # built by save
    callbacks: Sequence = ()  # the caller's Keras callbacks, added to every fit
    on_progress: Callable[[Progress], None] | None = None  # the caller's watch on the feature pass
    convert_in_subprocess: bool = False  # a LiteRT conversion for the feature pass runs in a child process (a server)

    def batch(self, images: int) -> int:
        """--batch-size for a split of `images`, shrunk where the replicas need it (distribute.replica_batch_size)."""
        return replica_batch_size(self.config.batch_size, images, self.strategy)

    @functools.cached_property
    def class_weight(self) -> dict[int, float] | None:
        """--class-weight as fit() takes it."""
        return class_weights(self.config, self.data.train.labels, len(self.data.class_names))

    @functools.cached_property
    def images(self) -> dict:
        """fit()'s data arguments for training on images: tf.data pipelines, lazy until iterated."""
        config, data = self.config, self.data
        train = image_dataset(
            data.train,
            config.image_shape,
            self.batch(len(data.train)),
            shuffle=True,
            seed=config.seed,
            augmenter=make_augmenter(config, config.seed),
        )
        return dict(
            x=train,
            validation_data=image_dataset(data.validation, config.image_shape, self.batch(len(data.validation))),
            class_weight=self.class_weight,
            shuffle=False,  # the training pipeline shuffles itself
        )

    @functools.cached_property
    def head_batch(self) -> int:
        """The head's batch on cached features: --feature-batch-size, but at most a MIN_HEAD_STEPS-th of the training
        photos (so that a small set still takes several steps an epoch) unless that is below --batch-size."""
        config, photos = self.config, len(self.data.train)
        batch = min(config.feature_batch_size, max(config.batch_size, photos // MIN_HEAD_STEPS))
        return replica_batch_size(batch, photos, self.strategy, "--feature-batch-size")

    @property
    def head_learning_rate(self) -> float:
        """--learning-rate is for a step of --batch-size images; a step of `head_batch` vectors averages more
        examples, so it takes a proportionally larger step (the linear scaling rule, Goyal et al. 2017)."""
        return self.config.learning_rate * self.head_batch / self.config.batch_size

    @functools.cached_property
    def vectors(self) -> dict:
        """fit()'s data arguments for training the head on cached features: tf.data pipelines over tensors in
        memory (features.variant_epochs), so no step converts numpy arrays; validation in batches of up to
        SCORING_BATCH vectors."""
        x_train, y_train, x_val, y_val = self.features
        photos = len(self.data.train)
        train = variant_epochs(x_train, y_train, photos, self.head_batch, self.config.seed)
        validation = tf.data.Dataset.from_tensor_slices((x_val, y_val)).batch(self.vector_batch(len(x_val))).cache()
        return dict(
            x=train,
            steps_per_epoch=-(-photos // self.head_batch),  # the pipeline repeats: Keras keeps one iterator
            validation_data=validation,
            class_weight=self.class_weight,
            shuffle=False,
        )

    def vector_batch(self, vectors: int) -> int:
        """A batch for scoring `vectors` cached features: large, since a row costs microseconds and a step far more."""
        replicas = self.strategy.num_replicas_in_sync
        return replica_batch_size(
            max(replicas, min(vectors, SCORING_BATCH) // replicas * replicas), vectors, self.strategy
        )

    def timed(self, step: str):
        """A block whose wall time is recorded as timing[step]."""
        return timed(self.timing, step)


@contextlib.contextmanager
def timed(timing: dict, step: str) -> Iterator[None]:
    """Record the block's wall time in seconds as timing[step]."""
    tick = time.time()
    yield
    timing[step] = round(time.time() - tick, 1)


def train(
    config: TrainConfig,
    log: Log = say,
    callbacks: Sequence = (),
    on_progress: Callable[[Progress], None] | None = None,
    convert_in_subprocess: bool = False,
) -> TrainResult:
    """Run one training job end to end; raises UsageError for anything the user must fix, and `Cancelled` when
    `callbacks` or `on_progress` (see the module docstring) stop it. `convert_in_subprocess`: converting the
    backbone for LiteRT (training/engine.py) runs in a child process, so that it never holds a server's GIL."""
    config = resolve(config, log)
    share = feature_share(config)
    if share is not None and not share.trains:
        return share_features(config, share, log)
    run = prepare(config, log, share)
    run.callbacks, run.on_progress, run.convert_in_subprocess = callbacks, on_progress, convert_in_subprocess
    try:
        fit_head(run)
        fine_tune(run)
        score(run)
        refit(run)
        score_test(run)
        save(run)
    except KeyboardInterrupt:  # Ctrl-C: keep the completed epochs and say how to resume
        raise run.checkpoint.interrupted() from None
    except Cancelled:  # stopped by its caller, who asked for nothing to be kept
        run.checkpoint.remove()
        raise
    except WORKER_LOST as error:
        if not is_multi_worker(run.strategy):
            raise
        raise worker_lost(error, run.checkpoint.stopped()) from None
    run.checkpoint.remove()  # the model folder is complete: nothing left to resume
    log_done(run)
    return TrainResult(run.out, run.metadata, run.model)


def prepare(config: TrainConfig, log: Log, share: FeatureShare | None = None) -> Run:
    """Pick the strategy, find the data and build the model for a resolved config; every check before training."""
    check_refit(config)
    strategy = distribution_strategy(config, log)
    started = time.time()
    data_dir = resolve_data(config.data, csv_dir=config.csv_dir, log=log)
    out = check_output_dir(config.out or default_out_dir(data_dir), config.overwrite)
    checkpoint = Checkpoint(out, config)
    keras.utils.set_random_seed(config.seed)
    timing: dict = {}
    with timed(timing, "scan_seconds"):
        data = scan_data(config, data_dir)
    with timed(timing, "build_seconds"), strategy.scope(), precision_policy(config.mixed_precision):
        model = build_model(config, len(data.class_names))
        if config.flip_average:
            model = with_flips(model, config.image_shape)
    run = Run(
        config=config,
        log=log,
        strategy=strategy,
        data=data,
        out=out,
        checkpoint=checkpoint,
        model=model,
        fine_tune_from=fine_tune_layer(classifier(model), config),
        share=share,
        started=started,
        timing=timing,
        initial_head=model_head(model).get_weights() if config.refit else None,
    )
    log_setup(run)
    return run


def scan_data(config: TrainConfig, data_dir: Path) -> ImageData:
    """The images a run of `config` trains and validates on: listed, checked (through the scan memo when the
    feature cache applies) and split; classifier.batch_features fills the cache for the same split."""
    memo = ScanMemo(scan_memo_dir(config), data_dir) if feature_cache_applies(config) else None
    return load_image_data(data_dir, config.validation_split, config.seed, memo=memo, test_split=config.test_split)


def share_features(config: TrainConfig, share: FeatureShare, log: Log) -> TrainResult:
    """A multi-worker worker that does not train: compute its share of the feature pass into the shared cache."""
    log(
        f"strategy: multi-worker, worker {share.index} of {share.workers}: computing this worker's share of the "
        "feature pass"
    )
    data = scan_data(config, resolve_data(config.data, csv_dir=config.csv_dir, log=log))
    keras.utils.set_random_seed(config.seed)
    training_features(feature_extractor(build_model(config, len(data.class_names))), data, config, log, share)
    log(
        f"done: worker {share.index}'s share of the features is in {FeatureCache.for_config(config).root}; the chief "
        "(worker 0) trains the head and writes the model"
    )
    return TrainResult(None, None, None)


def default_out_dir(data_dir: Path) -> Path:
    name = data_dir.resolve().name
    if name.endswith("_filtered"):  # cats_and_dogs_filtered -> cats_and_dogs
        name = name[: -len("_filtered")]
    return Path("models") / name


def log_setup(run: Run) -> None:
    """What is about to train: replicas, data, model."""
    config, data, log = run.config, run.data, run.log
    if config.strategy != "default" and not chief_trains_alone(config):
        log(f"strategy: {config.strategy}, {run.strategy.num_replicas_in_sync} replica(s) in sync")
    held_out = "validation folder" if data.validation_from == "folder" else f"{config.validation_split:.0%} held out"
    more = " ..." if len(data.class_names) > 10 else ""
    test = "" if data.test is None else f", {len(data.test)} test images held out ({held_out_source(config, data)})"
    log(
        f"data: {len(data.train)} training and {len(data.validation)} validation images ({held_out}){test}, "
        f"{len(data.class_names)} classes: {', '.join(data.class_names[:10])}{more}"
    )
    if not config.transfer:
        log("note: --weights none has no pretrained features to transfer, so the whole network trains from scratch")
    else:
        weights = "" if config.backbone.startswith(HUB_PREFIX) else f" ({config.weights} weights)"
        if config.backbone.startswith(KERAS_PREFIX) and config.weights == "imagenet":
            weights = " (its own weights)"  # a keras: file's, which --weights imagenet means for it
        cut = "its output" if config.cut_layer == TOP else config.cut_layer
        log(f"model: {config.backbone}{weights} frozen up to {cut}, {config.head_pooling} pooling head")


def fit_head(run: Run) -> None:
    """The head's epochs: on cached backbone features when the backbone is frozen (run once per image
    and augmented copy), else the full model on images."""
    config = run.config
    if not feature_cache_applies(config):
        fit_model, inputs, steps, backup_every = classifier(run.model), run.images, 1, 0.0
        learning_rate = config.learning_rate
    else:
        with run.timed("features_seconds"):
            extractor, log, in_subprocess = feature_extractor(run.model), run.log, run.convert_in_subprocess
            run.features = training_features(
                extractor, run.data, config, log, run.share, run.on_progress, in_subprocess=in_subprocess
            )
            if config.flip_average:
                run.mirrored = mirrored_features(
                    extractor, run.data.validation, config, log, run.on_progress, in_subprocess=in_subprocess
                )
        run.timing["cached_training_vectors"] = len(run.features[0])
        fit_model, inputs, learning_rate = model_head(run.model), run.vectors, run.head_learning_rate
        run.log(f"head: batch {run.head_batch} of cached features, learning rate {learning_rate:.3g}")
        # A step on vectors takes far less time than Keras' Python around it: one call runs a whole epoch. (Not
        # across workers: Keras' loop of steps fails there, in its collective ops.)
        steps = 1 if is_multi_worker(run.strategy) else inputs["steps_per_epoch"]
        backup_every = BACKUP_SECONDS
    with run.timed("head_seconds"):
        run.stages.append(run_stage(run, "head", fit_model, inputs, learning_rate, config.epochs, steps, backup_every))


def fine_tune(run: Run) -> None:
    """With --fine-tune-epochs: unfreeze the top of the backbone and train on, on images (fine-tuning
    changes the features, so never on the cache)."""
    if not run.fine_tune_from:
        return
    config = run.config
    with run.timed("fine_tune_seconds"):
        layers = unfreeze_from(classifier(run.model), run.fine_tune_from)
        run.log(
            f"fine-tuning: {layers} backbone layers from {run.fine_tune_from} on train (BatchNorm stays frozen) at "
            f"learning rate {config.fine_tune_learning_rate:g}"
        )
        stage = run_stage(
            run,
            "fine_tune",
            classifier(run.model),
            run.images,
            config.fine_tune_learning_rate,
            epochs=config.fine_tune_epochs,
        )
    run.stages.append({**stage, "from_layer": run.fine_tune_from})


def run_stage(
    run: Run,
    name: str,
    fit_model,
    inputs: dict,
    learning_rate: float,
    epochs: int,
    steps_per_execution: int = 1,
    backup_every: float = 0.0,
) -> dict:
    """Fit `epochs` more epochs of `fit_model` (the full model, or its head on cached features) on `inputs` at
    `learning_rate`, resumable; a stage finished before an interruption is restored instead. Checkpoints
    hold `fit_model`'s weights, the only ones the stage changes, backed up after an epoch once the last backup
    is `backup_every` seconds old."""
    checkpoint, log = run.checkpoint, run.log
    done = checkpoint.finished(name)
    if done:
        log(
            f"resume: the {name} stage had finished (epochs {done['first_epoch']}-{done['last_epoch']}); its weights "
            "are restored"
        )
        return checkpoint.restore_stage(name, fit_model)
    first = sum(stage["last_epoch"] - stage["first_epoch"] + 1 for stage in run.stages)  # epochs of earlier stages
    with run.strategy.scope():
        compile_model(fit_model, learning_rate, steps_per_execution)
    callbacks = checkpoint.stage_callbacks(name, backup_every)
    if checkpoint.epochs_done > first:
        log(f"resume: continuing the {name} stage after epoch {checkpoint.epochs_done}")
        fit_model.optimizer.learning_rate = checkpoint.history["learning_rate"][-1]
    control = training_callbacks(run.config)
    total = run.config.epochs + run.config.fine_tune_epochs
    forget_restored_epoch(fit_model)
    with keras_workaround(run.strategy):
        fit_model.fit(
            **inputs,
            initial_epoch=first,
            epochs=first + epochs,
            verbose=0,
            callbacks=[*callbacks, EpochLog(total, log), *control, *run.callbacks],
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
    checkpoint.finish_stage(name, fit_model, info)
    return info


def is_multi_worker(strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def keras_workaround(strategy):
    """Around `fit`: compat.multi_worker_fit, the patch of Keras internals (keras-team/keras#20585), imported and
    applied on the one path that needs it, fit under MultiWorkerMirroredStrategy; nothing on every other path."""
    if not is_multi_worker(strategy):
        return contextlib.nullcontext()
    from ..model.compat import multi_worker_fit

    return multi_worker_fit(strategy)


def score(run: Run) -> None:
    """The saved model's metrics on the validation images (with --flip-average, of the averaged probabilities, and
    the accuracy without and with the averaging in `run.flips`)."""
    with run.timed("score_seconds"):
        plain, mirrored = validation_probabilities(run)
        probabilities = plain if mirrored is None else average(plain, mirrored)
        validation = run.data.validation
        run.metrics = {
            **classification_metrics(validation.labels, probabilities, run.data.class_names),
            "split": "validation",
            "data": str(run.data.root),
        }
        run.wrong = most_wrong(validation.paths, validation.labels, probabilities)
    if mirrored is not None:
        right = np.argmax(plain, axis=1) == np.asarray(validation.labels)
        run.flips = {
            "validation_accuracy_plain": float(np.mean(right)) if len(right) else 0.0,
            "validation_accuracy_averaged": run.metrics["accuracy"],
        }


def validation_probabilities(run: Run) -> tuple[np.ndarray, np.ndarray | None]:
    """The classifier's probabilities on the validation images and, with --flip-average, on their mirror images
    (else None): from the cached features when the head on them is exactly the model, else from the images."""
    flipped = run.config.flip_average
    if run.features is not None and not run.fine_tune_from:
        head = model_head(run.model)
        on = lambda vectors: head.predict(vectors, batch_size=run.vector_batch(len(vectors)), verbose=0)  # noqa: E731
        return on(run.features[2]), on(run.mirrored) if flipped else None
    model, images = classifier(run.model), run.images["validation_data"]
    # The batches' images (N, H, W, 3) mirrored along the width, labels as they are.
    mirrored = model.predict(images.map(lambda x, y: (tf.reverse(x, [2]), y)), verbose=0) if flipped else None
    return model.predict(images, verbose=0), mirrored


def check_refit(config: TrainConfig) -> None:
    """Refuse --refit where it cannot run: it retrains the head alone, on cached features, on one machine."""
    if not config.refit:
        return
    if config.fine_tune_epochs:
        raise UsageError(
            f"--refit with --fine-tune-epochs {config.fine_tune_epochs}: the refit retrains the head alone on cached "
            "features, and fine-tuning changes the backbone; leave out one of them"
        )
    if not feature_cache_applies(config):
        raise UsageError(
            "--refit: the refit retrains the head on cached backbone features; it needs the feature cache (no "
            "--no-feature-cache) and a pretrained backbone (not --weights none)"
        )
    if config.strategy == "multi-worker":
        raise UsageError("--refit with --strategy multi-worker: the refit runs on one machine; leave out one of them")


def refit(run: Run) -> None:
    """With --refit: the head again from its initial weights, on the features of train + validation, for the epochs
    validation chose (`chosen_epochs`), at the run's batch and learning rate; it becomes the saved model's head. The
    validation images' augmented copies are computed now when the cache lacks them; the test split stays out."""
    if not run.config.refit:
        return
    config, data, epochs = run.config, run.data, chosen_epochs(run)
    both = dataclasses.replace(data, train=joined(data.train, data.validation))
    photos = len(both.train)
    run.log(
        f"refit: the head again from its initial weights on {len(data.train)} training + {len(data.validation)} "
        f"validation images for {epochs} epochs (chosen on validation, whose figures are from before the refit)"
    )
    with run.timed("refit_seconds"):
        x, y, _, _ = training_features(feature_extractor(run.model), both, config, run.log, None, run.on_progress)
        head = model_head(run.model)
        head.set_weights(run.initial_head)
        with run.strategy.scope():
            compile_model(head, run.head_learning_rate, -(-photos // run.head_batch))
        forget_restored_epoch(head)  # the head stage's BackupAndRestore left its epoch on the head
        head.fit(
            variant_epochs(x, y, photos, run.head_batch, config.seed),
            steps_per_epoch=-(-photos // run.head_batch),
            epochs=epochs,
            class_weight=class_weights(config, both.train.labels, len(data.class_names)),
            shuffle=False,  # variant_epochs shuffles
            verbose=0,
            callbacks=[EpochLog(epochs, lambda line: run.log(f"refit {line}"))],
        )
    run.refitted = {"epochs": epochs, "images": photos}


def chosen_epochs(run: Run) -> int:
    """The head's epochs that validation chose: with --patience the best epoch's (early stopping keeps its weights:
    the first lowest val_loss), else every epoch the head stage ran."""
    ran = run.stages[0]["last_epoch"]  # the head stage, from epoch 1
    if not run.config.patience:
        return ran
    return int(np.argmin(run.checkpoint.history["val_loss"][:ran])) + 1


def joined(first: Split, second: Split) -> Split:
    """One split of `first`'s images then `second`'s, with their content hashes."""
    return Split(
        first.paths + second.paths,
        first.labels + second.labels,
        first.orientations + second.orientations,
        first.content_hashes() + second.content_hashes(),
    )


def score_test(run: Run) -> None:
    """The final model's metrics on the test split, when the data has one: its images through the whole saved
    model, once; the validation-chosen "not sure" threshold is measured on them, never chosen from them."""
    test = run.data.test
    if test is None:
        return
    with run.timed("test_seconds"):
        probabilities = run.model.predict(image_dataset(test, run.config.image_shape, run.batch(len(test))), verbose=0)
    threshold = (run.metrics["not_sure"]["suggested"] or {}).get("min_confidence")
    run.test_metrics = {
        **classification_metrics(test.labels, probabilities, run.data.class_names, threshold),
        "split": "test",
        "from": run.data.test_from,
        "data": str(run.data.root),
    }
    run.test_wrong = most_wrong(test.paths, test.labels, probabilities)


def held_out_source(config: TrainConfig, data: ImageData) -> str:
    """Where the test split comes from, in words: "test/ folder" or "25% of each class"."""
    return f"{TEST_DIR}/ folder" if data.test_from == "folder" else f"{config.test_split:.0%} of each class"


def save(run: Run) -> None:
    """The model folder (model, metadata, labels, report and the test split's), atomically; on the chief only."""
    run.metadata = build_metadata(run)

    def report(staged: Path) -> None:
        write_report(staged, run.metrics, run.metadata, run.wrong)
        if run.test_metrics is not None:
            write_report(staged, run.test_metrics, run.metadata, run.test_wrong, curves=False)  # drawn above

    with worker_out_dir(run.out, run.strategy) as folder:
        save_model_dir(folder, run.model, run.metadata, extra=report)


def build_metadata(run: Run) -> ModelMetadata:
    """What metadata.json says about the model and how it was trained."""
    config, data, model, history = run.config, run.data, run.model, run.checkpoint.history
    suggested = run.metrics["not_sure"]["suggested"] or {}  # the "not sure" default (suggest_min_confidence), if any
    return ModelMetadata(
        class_names=data.class_names,
        image_size=config.image_shape,
        backbone=config.backbone,
        cut_layer=config.cut_layer,
        weights=config.weights,
        config=config.to_dict(),
        data=DataSummary(
            root=str(data.root),
            train_images=len(data.train),
            validation_images=len(data.validation),
            validation_from=data.validation_from,
            test_images=None if data.test is None else len(data.test),
            test_from=data.test_from,
            skipped=[path for path, _ in data.skipped],
        ),
        history=history,
        val_accuracy=history["val_accuracy"][-1],
        best_val_accuracy=max(history["val_accuracy"]),
        epochs_run=len(history["val_accuracy"]),
        train_seconds=round(time.time() - run.started, 1),
        trained_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        parameters={
            "total": int(model.count_params()),
            "trainable": int(sum(w.numpy().size for w in model.trainable_weights)),
        },
        versions=versions(),
        stages=run.stages,
        fine_tune_start_epoch=run.stages[1]["first_epoch"] - 1 if len(run.stages) > 1 else None,
        validation_metrics={"accuracy": run.metrics["accuracy"], "macro_f1": run.metrics["macro_avg"]["f1"]},
        timing=run.timing,
        distribution=describe(run.strategy, config, run.share),
        min_confidence=suggested.get("min_confidence"),
        min_confidence_coverage=suggested.get("coverage"),
        test=held_out_block(run.test_metrics),
        flips=run.flips,
        refit=None if run.refitted is None else {**run.refitted, "note": REFIT_NOTE},
    )


def held_out_block(metrics: dict | None) -> dict | None:
    """metadata.json's `test`: the test split's figures (metrics.json's, named for their split), or None."""
    if metrics is None:
        return None
    kept = ("split", "from", "accuracy", "per_class", "confusion_matrix")
    return {
        **{key: metrics[key] for key in kept},
        "count": metrics["images"],
        "macro_f1": metrics["macro_avg"]["f1"],
        "class_names": metrics["class_names"],
    }


def log_done(run: Run) -> None:
    """The closing line: best and saved accuracy, time taken, where the model is."""
    history = run.metadata.history["val_accuracy"]
    where = (
        f"model, metrics and plots saved to {run.out}" if is_chief(run.strategy) else "the chief worker saves the model"
    )
    meta = run.metadata
    not_sure = (
        f"not sure below {meta.min_confidence:.3f} (answers {meta.min_confidence_coverage:.0%} of validation images)"
        if meta.min_confidence is not None
        else f"no 'not sure' threshold (none reaches {TARGET_PRECISION:.0%} right on validation, or fewer than "
        f"{MIN_EVIDENCE} validation images)"
    )
    if run.flips is not None:
        run.log(flips_summary(run.flips))
    if run.refitted is not None:
        run.log(f"refit: {run.refitted['epochs']} epochs on {run.refitted['images']} images; {REFIT_NOTE}")
    if run.test_metrics is not None:
        run.log(held_out_summary(run))
    run.log(
        f"done: best val_accuracy {max(history):.4f} (epoch {history.index(max(history)) + 1}), "
        f"saved model's {run.metrics['accuracy']:.4f}; {not_sure}; {_duration(time.time() - run.started)}; {where}"
    )


def flips_summary(flips: dict) -> str:
    """The flips' one line: validation accuracy without -> with the mirror image averaged in."""
    plain, averaged = flips["validation_accuracy_plain"], flips["validation_accuracy_averaged"]
    verdict = "helped" if averaged > plain else "did not help" if averaged < plain else "changed nothing"
    return (
        f"test-time flips on validation: {plain:.3f} -> {averaged:.3f} ({verdict}; the saved model averages each "
        "image's probabilities with its mirror image's)"
    )


def held_out_summary(run: Run) -> str:
    """The test split's one line: accuracy, size and where it comes from, and its per-class recall."""
    metrics = run.test_metrics
    recalls = ", ".join(f"{name} {figures['recall']:.3f}" for name, figures in metrics["per_class"].items())
    return (
        f"test: accuracy {metrics['accuracy']:.4f} on {metrics['images']} held-out images "
        f"({held_out_source(run.config, run.data)}; never trained, validated or tuned on), macro F1 "
        f"{metrics['macro_avg']['f1']:.4f}; recall per class: {recalls}; report in test_metrics.json"
    )


class EpochLog(keras.callbacks.Callback):
    """One line per epoch: every metric Keras reports, and the epoch's wall time."""

    def __init__(self, epochs: int, log: Log):
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

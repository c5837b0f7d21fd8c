"""Training jobs for the web page: one runs at a time in a background thread, a few wait their turn.

`Workbench.submit(name, config)` queues a job that runs `train.train(config)`, the same call as
the CLI, in the workbench's one worker thread, so the app's predictions (Gradio's queue workers)
keep being answered while it trains. At most `max_waiting` jobs wait behind the running one; the
next is refused with a message naming the limit's flag, and so is a second job for a model that
already has one queued or running. `check_room(name)` asks the same before a caller writes a job's
images, so a job that would be turned away costs nothing; `on_failed` hears of every job that ended
without a model (failed or cancelled), so the caller can drop what it wrote for it.

While a job runs, `Job.snapshot()` says where it is: the backbone feature pass (images done and
total, images per second, time left, from `console.Progress` through train's `on_progress`), then
each finished epoch's metrics (from a Keras callback), and at the end what happened. Its log lines and
its final message are what a visitor reads of the job: every absolute path in them is cut to its
last part (`metadata.public_text`), so they say `api_shapes`, not where the server keeps it.

Jobs belong to the server, not to the page that started one: `current()` is the running job, else the next
waiting one, else the one that finished last (for RECENT_SECONDS), which any page shows when it loads.

`cancel(job_id)` drops a waiting job at once; a running one stops at its next batch of the feature
pass or of an epoch (the hooks raise `control.Cancelled`). train() writes the model folder in one
atomic step after the last epoch and never while a hook runs, so a cancelled or failed job leaves
the previous model (if any) as it was, and no partial folder.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

from .._tf import keras
from ..config import TrainConfig
from ..console import Progress, say
from ..data.images import ImageError
from ..errors import UsageError, first_line, quoted
from ..model.backbones import is_combined, page_choices
from ..model.metadata import public_text
from ..training.control import Cancelled
from ..training.pipeline import TrainResult, train
from .limits import DEFAULT_LIMITS, Limits, limit_hit
from .wording import accuracy_words, few_images_warning, page_message

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)
KEPT_JOBS = 50  # finished jobs remembered for their pages; older ones are forgotten
KEPT_LINES = 200  # log lines kept per job
RECENT_SECONDS = 600  # a job finished this recently is still the server's current one (a page loaded shows it)
CANCELLED_MESSAGE = "cancelled; nothing was written, the previous model (if any) is unchanged"
EPOCH_METRICS = ("accuracy", "loss", "val_accuracy", "val_loss")
# The Train tab's backbones, by the label it shows (an API value of /train). The first is the default: its ImageNet
# weights ship in the package (no download) and it is the fastest on a CPU; the others download their weights once.
BACKBONES = page_choices()  # label -> TrainConfig options; each backbone's `page` entries (model/backbones.py)
DEFAULT_BACKBONE = next(iter(BACKBONES))
IMAGE_SIZE = 160  # the tab's default input size: accuracy near 224 px's at half its pixels (benchmarks/README.md)
EPOCHS = 10
SIZE_RANGE, EPOCHS_RANGE = (32, 320), (1, 100)  # what a page may ask for: a bound on one job's cost
# The tab trains the head alone on cached features in 10 epochs: 2.5 times the CLI's rate converges in them (scaled
# by the head's batch as the CLI's is, train.Run.head_learning_rate; figures: benchmarks/README.md).
LEARNING_RATE = 2.5e-4


def done_message(name: str, meta) -> str:
    """A finished job's line: the model saved, its validation accuracy and the images it was measured on (the saved
    model's; none without validation images), and a warning when they are few."""
    images = meta.data.validation_images
    if meta.val_accuracy is None:
        return f"done: model {name!r} saved"
    warning = few_images_warning(images)
    return f"done: model {name!r} saved, {accuracy_words(meta.val_accuracy, images)}" + (
        f" ({warning})" if warning else ""
    )


def tab_config(
    data, out, backbone: str = DEFAULT_BACKBONE, image_size: int = IMAGE_SIZE, epochs: int = EPOCHS, **more
) -> TrainConfig:
    """The training options of a job started from the Train tab (`more`: any other TrainConfig field)."""
    if backbone not in BACKBONES:
        raise UsageError(f"backbone {quoted(backbone)}: choose one of {', '.join(BACKBONES)}")
    for what, value, (low, high) in (("image size", image_size, SIZE_RANGE), ("epochs", epochs, EPOCHS_RANGE)):
        if not isinstance(value, (int, float)) or not low <= value <= high:
            raise UsageError(f"{what} {quoted(value)}: the Train tab takes {low} to {high}")
    options = dict(
        data=str(data),
        out=str(out),
        overwrite=True,
        image_size=int(image_size),
        epochs=int(epochs),
        learning_rate=LEARNING_RATE,
    )
    return TrainConfig(**{**options, **BACKBONES[backbone], **more})


def retrain_config(options: dict, data, out, **more) -> TrainConfig | None:
    """The options the Train tab retrains a model with, from its saved config `options` (`more`: as `tab_config`'s):
    the tab's, with the model's page backbone, size and epochs; a combined backbone (trained by the CLI into the
    models folder) with its parts and sizes as saved; None for a backbone the tab does not train (the CLI's to)."""
    size, epochs = options["image_size"], options["epochs"]
    label = next(
        (label for label, chosen in BACKBONES.items() if all(options.get(k) == v for k, v in chosen.items())), None
    )
    if label is not None:
        return tab_config(data, out, label, size, epochs, **more)
    if is_combined(options.get("backbone", "")):
        config = tab_config(data, out, DEFAULT_BACKBONE, size, epochs, **more)
        saved = {name: options.get(name, default) for name, default in (("alpha", 1.0), ("weights_dir", None))}
        return dataclasses.replace(config, backbone=options["backbone"], **saved)  # its parts find their files again
    return None


@dataclass
class Job:
    """One training job and what it has done so far (read by any thread, written by the worker)."""

    id: str
    name: str  # the model it trains: models/NAME
    config: TrainConfig
    state: str = QUEUED
    phase: str = "waiting for its turn"
    features: dict | None = None  # the feature passes so far (train, validation): done, total, per_second, seconds_left
    epochs: list[dict] = field(default_factory=list)  # per finished epoch: epoch and EPOCH_METRICS
    lines: collections.deque = field(default_factory=lambda: collections.deque(maxlen=KEPT_LINES))
    message: str = ""  # how it ended
    started: float | None = None
    finished: float | None = None
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    _passes: dict = field(default_factory=dict)  # id of each feature pass's Progress -> (done, total)

    def log(self, line: str) -> None:
        self.lines.append(public_text(line))  # a visitor reads it: no path of the server

    def check_cancelled(self) -> None:
        if self.cancel_requested.is_set():
            raise Cancelled(CANCELLED_MESSAGE)

    def on_features(self, progress: Progress) -> None:
        """train's `on_progress`: a feature pass after each batch (images counted over every pass so far)."""
        self.phase = "backbone feature pass"
        self._passes[id(progress)] = (progress.done, progress.total or 0)
        left = progress.seconds_left  # of the current pass
        self.features = {
            "done": sum(done for done, _ in self._passes.values()),
            "total": sum(total for _, total in self._passes.values()),
            "per_second": round(progress.rate, 1),
            "seconds_left": None if left is None else round(left, 1),
        }
        self.check_cancelled()

    def snapshot(self) -> dict:
        """What the page and API callers see: plain JSON values."""
        return {
            "id": self.id,
            "model": self.name,
            "state": self.state,
            "phase": self.phase,
            "features": self.features,
            "epochs": list(self.epochs),
            "total_epochs": self.config.epochs + self.config.fine_tune_epochs,
            "message": self.message,
            "seconds": round((self.finished or time.time()) - self.started, 1) if self.started else 0.0,
            "log": list(self.lines)[-20:],
        }


class JobWatch(keras.callbacks.Callback):
    """The Keras side of a job: records each epoch's metrics and stops the fit when the job is cancelled."""

    def __init__(self, job: Job):
        super().__init__()
        self.job = job

    def on_train_begin(self, logs=None):
        self.job.phase = "training the head"

    def on_train_batch_end(self, batch, logs=None):
        self.job.check_cancelled()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.job.epochs.append({"epoch": epoch + 1, **{k: float(logs[k]) for k in EPOCH_METRICS if k in logs}})
        self.job.check_cancelled()


class Workbench:
    """The queue of training jobs and its worker thread (started by the first job)."""

    def __init__(
        self,
        limits: Limits = DEFAULT_LIMITS,
        on_done: Callable[[Job, TrainResult], None] | None = None,
        on_failed: Callable[[Job], None] | None = None,
    ):
        self.limits = limits
        self.on_done = on_done  # called in the worker after a job's model folder is in place (the app reloads it)
        self.on_failed = on_failed  # called (outside the lock) after a job ended without a model: failed, cancelled
        self.jobs: dict[str, Job] = {}
        self._waiting: collections.deque[Job] = collections.deque()
        self._running: Job | None = None
        self._ids = itertools.count(1)
        self._changed = threading.Condition()
        self._worker: threading.Thread | None = None

    def check_room(self, name: str) -> None:
        """UsageError when a job for model `name` would be turned away now: the queue is full or `name` is busy.
        (A caller checks before it writes a job's images; `submit` checks again, under the lock.)"""
        with self._changed:
            busy = next((job for job in self.active() if job.name == name), None)
            if busy is not None:
                raise UsageError(f"model {name!r} is already training (job {busy.id}, {busy.state}); wait or cancel it")
            if len(self._waiting) >= self.limits.max_train_queue:
                raise UsageError(
                    limit_hit(self.limits, "max_train_queue", f"{len(self._waiting)} training jobs already wait")
                    + "; try again when one has finished"
                )

    def submit(self, name: str, config: TrainConfig) -> Job:
        """Queue a job training `config` into model `name`; UsageError when the queue is full or `name` is busy."""
        with self._changed:
            self.check_room(name)  # the condition's lock is re-entrant
            job = Job(id=f"job-{next(self._ids)}-{name}", name=name, config=config)
            self.jobs[job.id] = job
            self._waiting.append(job)
            self._forget_old_jobs()
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="training-jobs", daemon=True)
                self._worker.start()
            self._changed.notify_all()
            return job

    def get(self, job_id: str) -> Job:
        job = self.jobs.get(job_id or "")
        if job is None:
            raise UsageError(
                f"no training job {quoted(job_id)} on this server (finished jobs are forgotten after a while)"
            )
        return job

    def current(self, recent: float = RECENT_SECONDS) -> Job | None:
        """The server's current job: the running one, else the first waiting, else the last finished if it finished
        less than `recent` seconds ago; None when there is none."""
        with self._changed:
            active = self.active()
            if active:
                return active[0]
            done = [job for job in self.jobs.values() if job.finished is not None]
        last = max(done, key=lambda job: job.finished, default=None)
        return last if last is not None and time.time() - last.finished < recent else None

    def active(self) -> list[Job]:
        """The running job (if any), then the waiting ones in order."""
        return [job for job in (self._running, *self._waiting) if job is not None]

    def position(self, job: Job) -> int | None:
        """How many jobs run or wait before `job`, while it waits."""
        active = self.active()
        return active.index(job) if job in active and job.state == QUEUED else None

    def cancel(self, job_id: str) -> Job:
        """Stop a job: a waiting one at once, a running one at its next batch (see the module docstring)."""
        job = self.get(job_id)
        with self._changed:
            job.cancel_requested.set()
            dropped = job in self._waiting
            if dropped:
                self._waiting.remove(job)
                self._finish(job, CANCELLED, CANCELLED_MESSAGE)
        if dropped:
            self._failed(job)
        return job

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Block until the job has finished (or `timeout` seconds have passed); for scripts and tests."""
        job = self.get(job_id)
        with self._changed:
            self._changed.wait_for(lambda: job.state in FINISHED, timeout)
        return job

    def _work(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._waiting)
                job = self._running = self._waiting.popleft()
                job.state, job.phase, job.started = RUNNING, "reading the images", time.time()
            state, message = self._run(job)
            with self._changed:
                self._running = None
                self._finish(job, state, message)
            if state != DONE:
                self._failed(job)

    def _run(self, job: Job) -> tuple[str, str]:
        """Train `job`: (final state, message). Nothing escapes: the worker goes on to the next job."""
        try:
            # A LiteRT conversion for the feature pass runs in a child: the converter would hold the server's GIL.
            on_features, watch = job.on_features, [JobWatch(job)]
            result = train(
                job.config, log=job.log, callbacks=watch, on_progress=on_features, convert_in_subprocess=True
            )
            if self.on_done is not None:
                self.on_done(job, result)
        except Cancelled:
            return CANCELLED, CANCELLED_MESSAGE
        except (UsageError, ImageError) as error:  # what the user can fix, in the page's words
            return FAILED, page_message(error)
        except Exception as error:  # a bug or the machine (out of memory, disk full): the server keeps serving
            say(f"training job {job.id} failed:\n{traceback.format_exc()}")
            return FAILED, f"training failed ({type(error).__name__}: {first_line(error)}); the previous model is kept"
        return DONE, done_message(job.name, result.metadata)

    def _finish(self, job: Job, state: str, message: str) -> None:
        """Record how `job` ended (the caller holds the lock) and wake whoever waits on it."""
        job.state, job.message, job.finished = state, public_text(message), time.time()
        job.phase = state
        job.log(message)
        self._changed.notify_all()

    def _failed(self, job: Job) -> None:
        """`on_failed` for a job that ended without a model; a failure there is logged, the worker goes on."""
        if self.on_failed is None:
            return
        try:
            self.on_failed(job)
        except Exception:
            say(f"after training job {job.id} ended:\n{traceback.format_exc()}")

    def _forget_old_jobs(self) -> None:
        finished = [job_id for job_id, job in self.jobs.items() if job.state in FINISHED]
        for job_id in finished[: max(0, len(finished) - KEPT_JOBS)]:
            del self.jobs[job_id]

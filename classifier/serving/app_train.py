"""The page's Train tab, corrections and downloads: the whole loop in the browser.

Built only when `Limits.training` is on (app.py: locally, or with --allow-training); otherwise
none of these events exists, so no caller can reach them. Like the predict events, every one runs
in Gradio's queue, reads only files Gradio received on /upload (`app_guard.upload_path`) and
refuses URLs (`no_fetch`); a folder on the server is read only when the app runs locally.

- Train (`/train`): the images of up to `CLASS_SLOTS` named classes, or one zip of class folders,
  or a local folder, go into `models/NAME.data/` (classifier/data/trainset.py: checked as training data,
  deduplicated, within the limits); then a `Workbench` job trains `models/NAME` with the same
  `train()` as the CLI. `/train_status` (polled by a timer) gives its progress, `/train_cancel` stops it.
  Jobs are the server's, not the page's: with no job id both act on the server's current job
  (`Workbench.current`: running, else waiting, else finished in the last minutes), and a page that loads shows
  that job, its curve and its Cancel, and polls it (`resume`), so a reload or a new tab loses nothing.
  When it finishes, the model joins the picker (`ModelLibrary.add`) with its card and plots.
- Drafts (`drafts.py`): what the tab holds before Train (name, classes and their photos, slots shown, options) is
  saved on the server at each change, one draft per browser (its token in the browser's localStorage), and comes
  back when the page loads: a reload or a closed tab loses nothing. "Start over" empties the tab and deletes it.
- Class cards and the live preview (`cards.py`): each class slot shows its count and server-made thumbnails (a file
  Train would refuse is one tile with its reason); its webcam's every photo joins the slot's box (`capture`), "Take
  10 photos" presses it ten times; beside the progress, a webcam stream or a dropped image is classified with the
  tab's model (`preview`: paced per visitor, its own queue group, a loading model skips the frame). All private.
- Under a prediction: choosing a class in "Wrong? It is: [class]" (`/correct`) saves the shown image
  into the model's training folder under that class at once, and says so; "Add to <predicted class>"
  saves it under the prediction's class (a right answer worth learning from). `/retrain` trains the
  model again on its folder with the tab's options it was trained with, a combined backbone's parts and sizes as
  saved (the feature cache makes only the new images cost a backbone pass); its stages and how it ended show in
  the row (its own timer polls the job) as in the Train tab, and once done the card beside the prediction turns to
  the new model. The row shows only for a model the page can correct: one of models-dir/NAME with its training
  folder models-dir/NAME.data (not a CLI-trained model, nor a --model).
- A class the user named is never dropped or merged silently: a named slot with no photo, a class none of
  whose photos training can read, a zip's or folder's class folder with no image, and two classes of the
  same name (or names differing only in case) are refused naming the class, before anything is written.
- Downloads (`/download`): the model folder as a zip, a SavedModel (zip) or a TFLite file, made by
  `classifier.export` (with its check) as copies in a temporary folder; never the model folder itself.
  The JSON files in a zip (metadata.json, metrics.json, export.json) are the public copies
  (`metadata.public_json`): every absolute path of the server in them cut to its last part. The model
  folder keeps its own (export and evaluate read the training folder back from data.root).
  Gradio serves that folder in place (a static path, no copy in its cache) and `SentOnce` deletes a
  download once sent whole; at most KEPT_DOWNLOADS never fetched are kept. A zip holds the files at its
  top, so the folder it is unpacked into is the model. While one is made the page says the time so far
  (its own timer), not Gradio's progress, which shows a total guessed from earlier calls.

A served model is the operator's: Train refuses any name the page serves (a `--model` from outside the
models folder too) and any name the models folder already holds, and the models folder is never a model
folder or inside one (`limits.check_models_dir`); retrain and corrections act only on models whose
folder is models/NAME. What a visitor can leave is capped: a job the queue turns away writes nothing, a
new model's job that fails or is cancelled leaves no training folder, corrections stop at
`--max-class-images` per class and `--max-model-data-mb` per model (checked and written under one lock), and
the models folder holds at most `--max-page-models` models trained on the page.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import gradio as gr

from ..atomic import recover
from ..console import silent
from ..data import trainset
from ..data.images import ImageError
from ..errors import UsageError, quoted
from ..evaluation.plots import curves_figure
from ..exporters.registry import EXPORTERS, page_downloads
from ..model.artifacts import is_model_dir, read_metadata
from ..model.backbones import downloads_weights
from ..model.confidence import percent
from ..model.metadata import public_json
from .app_guard import FETCH_ROUTE, no_fetch, text_inputs, upload_path, upload_source
from .cards import CSS as CARD_CSS
from .cards import EMPTY as EMPTY_CARD
from .cards import Preview, Thumbnails, capture
from .drafts import STORAGE_KEY, Drafts
from .limits import MAX_TEXT, check_models_dir, limit_hit
from .wording import page_message
from .workbench import (
    BACKBONES,
    CANCELLED,
    DEFAULT_BACKBONE,
    DONE,
    EPOCHS,
    FAILED,
    FINISHED,
    IMAGE_SIZE,
    Job,
    Workbench,
    retrain_config,
    tab_config,
)

CLASS_SLOTS = 6  # class slots the tab can show; a zip or a folder brings more classes
FIRST_SLOTS = 2  # shown at first
POLL_SECONDS = 1.0
KEPT_CURVES = 8  # jobs' curves kept drawn, for the pages that poll them
CURVE = gr.Plot(format="png", render=False)  # draws a job's curves once for every page (`TrainPage.curve`)
PREPARING = "⏳ Preparing the download: {seconds:.0f} s so far"
BURST = 10  # photos a card's "Take 10 photos" button takes
PREVIEW_EVERY, PREVIEW_LIMIT_SECONDS = 0.5, 120  # the live preview: a frame every 0.5 s, a stream for 2 min at most
# Gradio's webcam (6.31, pinned in requirements.txt): its "Click to Access Webcam" and capture buttons, by markup its
# frontend writes in English whatever the browser's language (a title and an aria-label, the class as a fallback).
# test_app_train's webcam test presses them through this code: an upgrade that renames them fails it.
WEBCAM_GRANT = '[title="grant webcam access"] button'
WEBCAM_CAPTURE = 'button[aria-label="capture photo"], button.capture-button'
DOWNLOADS = {"model folder (zip)": "zip", **page_downloads()}  # label -> kind: /download takes the kind
# Prepared downloads never fetched: at most this many are kept (the oldest go first), none longer than this.
KEPT_DOWNLOADS, KEPT_DOWNLOAD_SECONDS = 3, 600


@contextlib.contextmanager
def page_errors() -> Iterator[None]:
    """A user's mistake (UsageError, ImageError) as the page's error: its one line in the page's words
    (`wording.page_message`), no traceback."""
    try:
        yield
    except (UsageError, ImageError) as error:
        raise gr.Error(page_message(error), print_exception=False) from None


class TrainPage:
    """The training events of one `App`: its models folder, its limits, one `Workbench`."""

    def __init__(self, app, cache_dir: str | None = None):
        self.app = app
        self.models_dir = Path(app.models_dir)
        self.limits = app.limits
        self.cache_dir = cache_dir  # the feature cache (None: the user's, ~/.cache/classifier/features)
        check_models_dir(self.models_dir)  # never inside a model folder
        self.workbench = Workbench(app.limits, on_done=self.publish, on_failed=self.drop_training_folder)
        self._downloads = tempfile.TemporaryDirectory(prefix="classifier-downloads-")
        self.downloads = Path(self._downloads.name).resolve()  # the only folder the page serves downloads from
        # Gradio serves a file of a static path where it is, without a copy in its cache: the one copy is ours, and
        # `SentOnce` deletes it once sent (see `download`).
        gr.set_static_paths([self.downloads])
        self._starting = threading.Lock()  # one Train at a time fills a training folder
        self._correcting = threading.Lock()  # a correction's limits are checked and its image written as one step
        self._curves: dict[tuple[str, int], object] = {}  # (job id, epochs) -> its curves, drawn (`curve`)
        self._drawing = threading.Lock()
        self.view_size = 0  # how many outputs the model view beside a prediction has (`wire_corrections` sets it)
        self.thumbnails = Thumbnails()  # the class cards' thumbnails, made once per upload
        self.pace = Preview()  # the live preview's pace, per visitor
        self.drafts = Drafts(self.models_dir, app.limits) if app.limits.max_drafts else None  # None: drafts off

    def publish(self, job: Job, result) -> None:
        """A finished job's model joins the page: predictions use the new folder, loaded here, so the first one does
        not wait for it (nor for its backbone's LiteRT conversion, the first time on this machine); the card shows
        its plots."""
        job.phase = "loading the model for predictions"
        self.app.library.add(job.name, result.model_dir, log=job.log)  # the replaced model answers until it is loaded
        engine = self.app.library.get(job.name).engine
        job.log(f"model loaded for predictions, the backbone in {engine}")
        self.app.shown.publish(job.name, result.model_dir)
        self.app.offered()  # a new model: in the choices a new page or API client reads

    # -- Train, status, cancel, retrain ------------------------------------------------------------
    def train(self, name, backbone, image_size, epochs, archive, folder, *slots):
        """Fill models/NAME.data from the images given one way, then queue a job training models/NAME."""
        labels = {f"class {slot}": label for slot, label in enumerate(slots[:CLASS_SLOTS], start=1)}
        text_inputs(name=name, backbone=backbone, folder=folder, **labels)
        name = (name or "").strip()
        with page_errors(), self._starting:
            trainset.check_model_name(name)
            self.refuse_taken(name)
            trained = len(trainset.data_folders(self.models_dir))  # in training or done: each holds its images
            if trained >= self.limits.max_page_models:
                raise UsageError(
                    limit_hit(self.limits, "max_page_models", f"{trained} models trained on this page")
                    + "; delete one (NAME and NAME.data) from the models folder first"
                )
            config = tab_config(
                self.training_folder(name),
                self.models_dir / name,
                backbone,
                image_size,
                epochs,
                cache_dir=self.cache_dir,
            )
            # The class slots are checked before the queue: naming a mistake costs no file read.
            named = self.slot_images(*self.filled_slots(archive, folder, slots))
            self.workbench.check_room(name)  # a job the queue would turn away writes nothing
            with self.images(archive, folder, named) as images:
                trainset.build(self.models_dir, name, images, self.limits)
            try:
                job = self.workbench.submit(name, config)
            except UsageError:  # the queue filled meanwhile (a retrain): the folder just built goes (the name was new)
                shutil.rmtree(self.training_folder(name), ignore_errors=True)
                raise
        return self.started(job)

    def refuse_taken(self, name: str) -> None:
        """Refuse a new model's name when the page serves a model of that name (wherever its folder is), or the
        models folder holds anything of that name: a model, a training folder, any other file or folder."""
        if name in self.app.library.names:
            raise UsageError(f"model {name!r} is served by this app: choose another name, or retrain it")
        for path in (self.models_dir / name, self.training_folder(name)):
            recover(path)  # a replace a kill interrupted is put back first
            if os.path.lexists(path):
                raise UsageError(f"{path.name!r} exists in this app's models folder: choose another model name")

    def drop_training_folder(self, job: Job) -> None:
        """After a job ended without a model: a new model's training folder goes too (a retrained model keeps its
        own), so a cancelled or failed Train keeps nothing and its name is free again."""
        with self._starting:  # not while a Train fills a folder
            if not is_model_dir(self.models_dir / job.name):
                shutil.rmtree(self.training_folder(job.name), ignore_errors=True)

    def retrain(self, model):
        """Train the picked model again on its training folder, with the tab's options it was trained with: the
        Train tab's job, progress and timer, then the correction row's (`retrain_status` polls it there)."""
        text_inputs(model=model)
        with page_errors():
            name = self.own_model(model)
            data = self.training_folder(name, must_exist=True)
            options = read_metadata(self.app.folder(name)).config
            # A model trained with test-time flips (the CLI's --flip-average) stays one.
            flips = dict(flip_average=bool(options.get("flip_average")))
            config = retrain_config(options, data, self.app.folder(name), cache_dir=self.cache_dir, **flips)
            if config is None:
                raise UsageError(f"model {name!r}: its backbone is not one of the Train tab's; retrain it with the CLI")
            job = self.workbench.submit(name, config)
        return (*self.started(job), job.id, self.retrain_line(job), gr.Timer(active=True))

    def retrain_status(self, job_id: str, model):
        """The correction row's retrain, polled: (its line, its timer, then the model view: updated once the job is
        done when the page still shows that model, else left as it is)."""
        text_inputs(model=model)
        with page_errors():
            job = self.job(job_id)
        done = job.state == DONE and job.name == model
        view = self.app.model_view(job.name) if done else [gr.skip()] * self.view_size
        return (self.retrain_line(job), gr.Timer(active=job.state not in FINISHED), *view)

    def retrain_line(self, job: Job) -> str:
        """Where a retrain is, under the prediction: its stage, then how it ended."""
        line = self.describe(job, job.snapshot())
        if job.state == DONE:
            return f"Retrained. {line} The card shows the new model; classify again to use it."
        return {FAILED: "Retrain failed. ", CANCELLED: "Retrain cancelled. "}.get(job.state, "Retraining… ") + line

    def job(self, job_id: str | None) -> Job:
        """The job `job_id`, or the server's current job when no id is given (a page loaded after it started)."""
        text_inputs(job=job_id)
        if job_id:
            return self.workbench.get(job_id)
        job = self.workbench.current()
        if job is None:
            raise UsageError("no training job on this server now: press Train to start one")
        return job

    def resume(self):
        """On a page load: the server's current job in the Train tab (its id, progress, curve; the timer polls it
        while it runs), or an empty tab when there is none."""
        job = self.workbench.current()
        if job is None:
            return "", "", None, None, gr.Timer(active=False)
        return (job.id, *self.view(job), gr.Timer(active=job.state not in FINISHED))

    def status(self, job_id: str):
        """The job's progress for the page (status, curve, details, timer, model picker) and API callers; with no
        job id, the server's current job's."""
        with page_errors():
            job = self.job(job_id)
        names = self.app.library.names
        picker = gr.Dropdown(choices=names, value=job.name, visible=len(names) > 1) if job.state == DONE else gr.skip()
        return (*self.view(job), gr.Timer(active=job.state not in FINISHED), picker)

    def cancel(self, job_id: str):
        """Cancel the job `job_id`, or the server's current job when no id is given."""
        with page_errors():
            job = self.workbench.cancel(self.job(job_id).id)
        return self.view(job)

    def started(self, job: Job):
        return (job.id, *self.view(job), gr.Timer(active=True))

    # -- drafts: the tab's unsaved work ---------------------------------------------------------------
    def restore_draft(self, token):
        """On a page load: the browser's draft back in the tab (slots shown, names, photos as uploads, model name,
        options; `Drafts.restore`), or nothing changed when it has none."""
        form = self.drafts.restore(token)
        if form is None:
            return [gr.skip()] * (1 + 3 * CLASS_SLOTS + 4)
        labels = (form.labels + [""] * CLASS_SLOTS)[:CLASS_SLOTS]
        files = (form.files + [[]] * CLASS_SLOTS)[:CLASS_SLOTS]
        backbone = form.backbone if form.backbone in BACKBONES else gr.skip()
        options = [gr.skip() if value is None else value for value in (form.size, form.epochs)]
        slots = shown_slots(form.count)[: 1 + CLASS_SLOTS]  # the count and the slots shown
        return [*slots, *labels, *(paths or None for paths in files), form.name, backbone, *options]

    def start_over(self, token=None):
        """The "Start over" button: the tab's name, classes and photos emptied, two slots shown, the draft deleted."""
        text_inputs(draft=token)
        if self.drafts is not None:
            self.drafts.delete(token)
        return [*shown_slots(FIRST_SLOTS, empty=True), ""]

    # -- the class cards and the live preview --------------------------------------------------------
    def card(self, files) -> str:
        """A class card's count and thumbnails for its box's files (`Thumbnails.card`)."""
        return self.thumbnails.card(files)

    def capture(self, frame, files):
        """A webcam photo into the class box (`cards.capture`)."""
        return capture(frame, files, self.limits)

    def preview(self, frame, job_id, model, request: gr.Request = None):
        """The live preview: the frame (a webcam's, or a dropped image) classified with the Train tab's model, at
        most once every `Preview.seconds` per visitor (frames between are skipped). A model being loaded skips the
        frame rather than wait; with no model yet the label says to train one."""
        if frame and not self.pace.due(getattr(request, "session_hash", None) or ""):
            return gr.skip()
        return self.live(frame, job_id, model)

    def live(self, frame, job_id, model):
        """One image of the live preview (a dropped one: not paced) classified with the Train tab's model."""
        text_inputs(job=job_id, model=model)
        if not frame:
            return {}
        name = self.preview_model(job_id, model)
        if name is None:
            return {"label": "No model yet: train one, then it classifies here"}
        try:
            return self.app.classify(frame, name)
        except gr.Error as error:
            if error.title == "Model loading":  # loads are never waited for: the next frame tries again
                return gr.skip()
            raise

    def preview_model(self, job_id, model) -> str | None:
        """The model the live preview uses: the Train tab's job's model once it exists (a retrain's: its current
        version until the new one is loaded), else the picked model; None when the app has no model at all."""
        job = self.workbench.jobs.get(job_id or "") or self.workbench.current()
        names = self.app.library.names or self.app.library.refresh()
        if job is not None and job.name in names:
            return job.name
        return (model or None) if names else None

    def view(self, job: Job):
        """(status line, curves figure or None, details as JSON) of a job: the figure is curves.png's (accuracy and
        loss on their own axes, whole epochs), drawn from the epochs so far."""
        snapshot = job.snapshot()
        return self.describe(job, snapshot), self.curve(job.id, snapshot["epochs"]), snapshot

    def curve(self, job_id: str, epochs: list[dict]):
        """The curves of a job's epochs so far, as the page's plot takes them, or None before the first epoch. Drawn
        once per epoch, not once per poll of each page: a drawing costs most of a second on 2 busy cores."""
        if not epochs:
            return None
        key = (job_id, len(epochs))
        with self._drawing:  # one drawing of each epoch, however many pages poll at once
            if key not in self._curves:
                history = {metric: [epoch[metric] for epoch in epochs if metric in epoch] for metric in epochs[-1]}
                history.pop("epoch")
                while len(self._curves) >= KEPT_CURVES:  # the oldest first (dicts keep their order)
                    del self._curves[next(iter(self._curves))]
                self._curves[key] = CURVE.postprocess(curves_figure(history, size=(8, 3.2)))
            return self._curves[key]

    def describe(self, job: Job, snapshot: dict) -> str:
        """One line on where the job is."""
        if job.state in FINISHED:
            return f"**{job.name}: {job.message}**"
        ahead = self.workbench.position(job)
        if ahead is not None:
            return f"**{job.name}:** waiting, {ahead} job(s) ahead"
        features, epochs = snapshot["features"], snapshot["epochs"]
        if epochs:
            last = epochs[-1]
            return f"**{job.name}:** epoch {last['epoch']} of {snapshot['total_epochs']}: {epoch_scores(last)}"
        if features and job.phase != "training the head":
            left = "" if features["seconds_left"] is None else f", about {features['seconds_left']:.0f} s left"
            return (
                f"**{job.name}:** backbone pass, {features['done']} of {features['total']} new images, "
                f"{features['per_second']:.1f} images/s{left}"
            )
        return f"**{job.name}:** {job.phase}"

    # -- the images of a job, and corrections -------------------------------------------------------
    def model_name(self, model) -> str:
        """The picked model's name (the first model's when none is picked), refused when this app has no such model."""
        if not self.app.library.names and not self.app.library.refresh():
            raise UsageError("no model yet: train one in the Train tab first")
        try:
            return self.app.library.name(model)  # a model added to the models folder since the start too
        except KeyError as error:
            raise UsageError(str(error.args[0])) from None

    def training_folder(self, name: str, must_exist: bool = False) -> Path:
        folder = trainset.data_folder(self.models_dir, name)
        if must_exist and not folder.is_dir():
            raise UsageError(
                f"model {name!r} was not trained on this page (it has no training folder {folder.name}); retrain it "
                "with python -m classifier.train"
            )
        return folder

    def own_model(self, model) -> str:
        """`model_name` of a model whose folder is this app's models-dir/NAME: the only ones the page retrains or
        corrects (a --model served from elsewhere is the operator's alone)."""
        name = self.model_name(model)
        path = Path(self.app.library.paths[name])
        if path.name != name or path.parent.resolve() != self.models_dir.resolve():
            raise UsageError(
                f"model {name!r} is served from outside this app's models folder: it cannot be retrained or "
                "corrected from the page"
            )
        return name

    def classes(self, model) -> list[str]:
        """The picked model's classes, for the correction row (none when its folder is refused)."""
        try:
            return self.app.metadata(model).class_names if self.app.library.names else []
        except (gr.Error, KeyError):  # a broken model folder (its predictions say why), or an unknown name
            return []

    def correctable(self, model) -> bool:
        """Whether the page can correct and retrain the picked model: it is this app's models-dir/NAME and has its
        training folder there (a model trained on the page; not one trained by the CLI, nor a --model)."""
        try:
            self.training_folder(self.own_model(model), must_exist=True)
        except UsageError:
            return False
        return True

    def correction_view(self, model):
        """The correction row of the picked model: its classes, shown only when the model can be corrected."""
        text_inputs(model=model)
        shown = self.correctable(model)
        return gr.Dropdown(choices=self.classes(model) if shown else [], value=None), gr.Column(visible=shown)

    def prediction_view(self, prediction, model):
        """The correction row under a new prediction: "Add to <its class>" (hidden without one), no class chosen yet,
        nothing said, and the row shown only when the model can be corrected."""
        predicted = predicted_class(prediction)
        text_inputs(model=model, prediction=predicted)  # a page's prediction is short; a caller's may not be
        save = gr.Button(value=f"Add to {predicted}", visible=True) if predicted else gr.Button(visible=False)
        label, row = self.correction_view(model)
        return save, label, "", row

    def correct_predicted(self, upload, model, prediction):
        """The "Add to <predicted class>" button: `correct` under the shown prediction's class."""
        predicted = predicted_class(prediction)
        if predicted is None:
            raise gr.Error("no prediction yet: drop an image to classify first", print_exception=False)
        return self.correct(upload, model, predicted)

    @contextlib.contextmanager
    def images(self, archive, folder, named: trainset.Images) -> Iterator[trainset.Images]:
        """The job's images, from exactly one of: the class slots (`named`: `slot_images`), a zip, a folder on this
        machine."""
        folder = (folder or "").strip()
        if sum(map(bool, (named, archive, folder))) != 1:
            raise UsageError("give the images one way: drop them into named classes, or a zip, or a folder")
        if archive:
            shown = Path(archive).name
            with trainset.unpacked_zip(Path(upload_path(archive, shown)), shown, self.limits) as images:
                yield images
        elif folder:
            if not self.limits.local:
                raise UsageError("a folder on the server is read only when the app runs locally; upload a zip")
            yield trainset.folder_images(folder)
        else:
            yield named

    @staticmethod
    def filled_slots(archive, folder, slots) -> tuple[list, list]:
        """(names, uploads) of the class slots; with a zip or a folder and no upload, names left in the slots are
        not a class each (the zip's or the folder's classes are)."""
        labels, uploads = list(slots[:CLASS_SLOTS]), list(slots[CLASS_SLOTS:])
        if (archive or (folder or "").strip()) and not any(uploads):
            labels = [""] * len(uploads)
        return labels, uploads

    @staticmethod
    def slot_images(labels, uploads) -> trainset.Images:
        """Class -> images of the class slots. A slot with images needs a name, a named slot needs images, and no
        two slots share a name (nor one that differs only in case): each refused naming the class."""
        images: trainset.Images = {}
        named = [((label or "").strip(), paths) for label, paths in zip(labels, uploads, strict=True)]
        trainset.check_distinct_classes([label for label, _ in named if label])
        for label, paths in named:
            if paths and not label:
                raise UsageError("images dropped into a class without a name: name every class you drop images into")
            if label and not paths:
                raise UsageError(f"class {quoted(label)} has no photos: drop photos into it or remove it")
            if label:
                images[label] = [(Path(upload_path(path, Path(path).name)), Path(path).name) for path in paths]
        return images

    def correct(self, upload, model, label):
        """Save the shown image into the picked model's training folder under `label`."""
        text_inputs(model=model, label=label)
        with page_errors():
            name = self.own_model(model)
            folder = self.training_folder(name, must_exist=True)
            if label not in self.app.metadata(name).class_names:
                raise UsageError(f"class {quoted(label)}: pick one of the model's classes")
            source, shown = upload_source(upload, self.limits)
            with _as_file(source, shown) as path, self._correcting:  # two corrections cannot both pass a cap
                count = trainset.class_counts(folder).get(label, 0)
                if count >= self.limits.max_class_images:
                    raise UsageError(
                        limit_hit(self.limits, "max_class_images", f"class {label!r} has {count:,} images")
                    )
                size = trainset.folder_bytes(folder) + path.stat().st_size
                if size > self.limits.max_model_data_mb * 2**20:
                    raise UsageError(
                        limit_hit(
                            self.limits,
                            "max_model_data_mb",
                            f"{name}'s training images would take {size / 2**20:,.1f} MB",
                        )
                    )
                _, new = trainset.add(folder, label, path, shown)
        if not new:
            return f"Already in class **{label}** of {name}'s training images."
        return f"Saved to class **{label}** of {name}'s training images ({count + 1}); press Retrain to learn from it."

    # -- downloads ---------------------------------------------------------------------------------
    def download(self, model, kind: str) -> str:
        """A copy of the picked model as `kind` (a DOWNLOADS value), in this page's downloads folder (Gradio serves
        it from there, no copy: a static path), deleted once sent."""
        text_inputs(model=model, kind=kind)
        with page_errors():
            if kind not in DOWNLOADS.values():
                raise UsageError(f"download {quoted(kind)}: choose one of {', '.join(DOWNLOADS.values())}")
            name = self.model_name(model)
            folder = self.app.folder(name)
            out = self.fresh_download_folder()
            try:
                return str(self.export(folder, name, kind, out))
            except BaseException:  # nothing of a failed download is kept
                shutil.rmtree(out, ignore_errors=True)
                raise

    @staticmethod
    def preparing():
        """A download starts: (what the page says, its start, its timer on)."""
        return PREPARING.format(seconds=0), time.time(), gr.Timer(active=True)

    @staticmethod
    def still_preparing(started: float | None):
        """Each second while a download is made (its timer): the time so far, no guessed total (a first TFLite
        conversion takes far longer than the next, a zip a moment); nothing once it is made (`started` is None)."""
        return gr.skip() if started is None else PREPARING.format(seconds=time.time() - started)

    @staticmethod
    def prepared(started: float | None, file) -> tuple:
        """Once the download has been made (or refused: no file): how long it took, no start, the timer off."""
        took = f"Ready, prepared in {time.time() - started:.0f} s" if file and started else ""
        return took, None, gr.Timer(active=False)

    def export(self, folder: Path, name: str, kind: str, out: Path) -> Path:
        """The one file of a download, in `out`; the export it was made from is deleted."""
        from ..exporters.export import export_model

        if kind == "zip":
            return zip_model_folder(folder, out / f"{name}.zip")
        trust = self.app.library.trust_hub_handle
        # The converter holds the GIL for seconds: in a child process, so that predictions go on meanwhile.
        result = export_model(
            folder, kind, out=out / kind, log=silent, trust_hub_handle=trust, convert_in_subprocess=True
        )
        handed_out = EXPORTERS[kind].page_file  # the one file the page hands out; None: the folder, zipped
        try:
            if handed_out is None:
                return zip_folder(result.path, out / f"{name}-{kind}.zip")
            return Path(shutil.move(result.path / handed_out, out / f"{name}{Path(handed_out).suffix}"))
        finally:
            shutil.rmtree(out / kind, ignore_errors=True)

    def fresh_download_folder(self) -> Path:
        """A new folder for one download. Prepared downloads are deleted once sent (`SentOnce`); of those never
        fetched, the ones older than KEPT_DOWNLOAD_SECONDS go, and the oldest beyond KEPT_DOWNLOADS."""
        old = time.time() - KEPT_DOWNLOAD_SECONDS
        kept = sorted((mtime, entry) for entry in self.downloads.iterdir() if (mtime := _mtime(entry)) is not None)
        for rank, (mtime, entry) in enumerate(reversed(kept), start=1):  # the newest first
            if mtime < old or rank >= KEPT_DOWNLOADS:  # with the one made now, at most KEPT_DOWNLOADS
                shutil.rmtree(entry, ignore_errors=True)
        return Path(tempfile.mkdtemp(dir=self.downloads))


def epoch_scores(epoch: dict) -> str:
    """An epoch's figures in words: "training accuracy 91.6% (loss 0.234), validation accuracy 87.5% (loss 0.345)"."""
    parts = []
    for split, prefix in (("training", ""), ("validation", "val_")):
        accuracy, loss = epoch.get(prefix + "accuracy"), epoch.get(prefix + "loss")
        if accuracy is not None:
            parts.append(f"{split} accuracy {percent(accuracy)}" + ("" if loss is None else f" (loss {loss:.3f})"))
    return ", ".join(parts)


def _mtime(path: Path) -> float | None:
    """The modification time of `path`, or None when it is gone (a download sent meanwhile)."""
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return None


class SentOnce:
    """ASGI middleware: a download (a file of `folder`, fetched with GET /gradio_api/file=...) sent whole is
    deleted with its folder at once; a download cut short stays for another try (within `fresh_download_folder`'s
    bounds)."""

    def __init__(self, app, folder: Path):
        self.app = app
        self.folder = Path(folder).resolve()

    async def __call__(self, scope, receive, send):
        fetched = FETCH_ROUTE.search(scope["path"]) if scope["type"] == "http" and scope["method"] == "GET" else None
        path = Path(fetched.group(1)).resolve() if fetched else None
        if path is None or path == self.folder or not path.is_relative_to(self.folder):
            return await self.app(scope, receive, send)
        sent = {"status": None, "whole": False}

        async def watch(message):
            if message["type"] == "http.response.start":
                sent["status"] = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                sent["whole"] = True
            await send(message)

        await self.app(scope, receive, watch)
        if sent["status"] == 200 and sent["whole"]:  # not a 206 (a range of it), nor a failed send
            shutil.rmtree(self.folder / path.relative_to(self.folder).parts[0], ignore_errors=True)


@contextlib.contextmanager
def _as_file(source, shown: str) -> Iterator[Path]:
    """An upload as a file: the uploaded file itself, or inline bytes written to a temporary one."""
    if not isinstance(source, bytes):
        yield Path(source)
        return
    with tempfile.TemporaryDirectory(prefix="classifier-inline-") as folder:
        path = Path(folder) / Path(shown).name
        path.write_bytes(source)
        yield path


def zip_folder(folder: Path, dest: Path) -> Path:
    """The regular files of `folder` in a zip at `dest`, at its top (no folder inside: unpacked into a folder, or by
    an unzip that makes one named after the zip, that folder is the model's, as `Predictor` loads it), its JSON files
    as their public copies (no absolute path of the server); symlinks are left out (nothing from elsewhere)."""
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as archive:
        for root, _, files in os.walk(folder):  # does not enter symlinked folders
            for file in sorted(files):
                path = Path(root) / file
                name = path.relative_to(folder)
                if not path.is_file() or path.is_symlink():
                    continue
                public = public_copy(path)
                if public is None:
                    archive.write(path, name)
                else:
                    archive.writestr(str(name), public)
    return dest


def public_copy(path: Path) -> str | None:
    """A JSON file's text with every absolute path of the server in it cut to its last part; None for other files."""
    if path.suffix != ".json":
        return None
    try:
        return json.dumps(public_json(json.loads(path.read_text())), indent=2) + "\n"
    except ValueError:  # not JSON after all: shipped as it is
        return None


def zip_model_folder(folder: Path, dest: Path) -> Path:
    """`zip_folder` of a model folder, again if a retrain replaced it meanwhile (so never a mix of two)."""
    for _ in range(3):
        before = read_metadata(folder).trained_at
        zip_folder(folder, dest)
        if read_metadata(folder).trained_at == before:
            return dest
    raise UsageError(f"model {folder.name!r} keeps being retrained; download it when the job has finished")


# --------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------
@dataclass
class TrainTab:
    """The Train tab's components that other events (a retrain under a prediction) update."""

    job: gr.State
    timer: gr.Timer
    status: gr.Markdown
    curve: gr.Plot
    details: gr.JSON
    controls: dict = field(default_factory=dict)  # the inputs and buttons wire_train_tab gives events

    @property
    def progress(self) -> list:
        return [self.status, self.curve, self.details]


def build_train_tab(page: TrainPage) -> TrainTab:
    """The Train tab's contents (inside a `gr.Tab`); `wire_train_tab` gives them their events."""
    gr.Markdown(
        "Name each class and drop its photos in or take them with the webcam (or give one zip of class folders), "
        "press **Train**. The model is saved under the name below, as `python -m classifier.train` saves it, and "
        "joins the picker; try it live beside the progress."
    )
    name = gr.Textbox(label="Model name", placeholder="letters, digits, - and _", max_length=MAX_TEXT)
    slots = class_slots()
    count = gr.State(FIRST_SLOTS)
    with gr.Row():
        add = gr.Button("Add a class", size="sm", min_width=120)
        remove = gr.Button("Remove the last class", size="sm", min_width=120)
        start_over = gr.Button("Start over", size="sm", min_width=120)
    local = page.limits.local
    with gr.Accordion("Or: one zip of class folders" + (", or a folder on this machine" if local else ""), open=False):
        archive = no_fetch(gr.File(file_types=[".zip"], type="filepath", label="Zip of class folders"))
        folder = gr.Textbox(label="Folder of class folders on this machine", visible=local, max_length=MAX_TEXT)
    # A row of its own: the backbones' labels are long ("MobileNetV2 0.35 (bundled weights, fastest)").
    backbone = gr.Dropdown(backbone_choices(), value=DEFAULT_BACKBONE, label="Backbone")
    with gr.Row():
        size = gr.Number(IMAGE_SIZE, label="Image size (px)", precision=0, minimum=32, maximum=320, min_width=100)
        epochs = gr.Number(EPOCHS, label="Epochs", precision=0, minimum=1, maximum=100, min_width=100)
    with gr.Row():
        train = gr.Button("Train", variant="primary", min_width=120)
        cancel = gr.Button("Cancel", variant="stop", min_width=120)
    with gr.Row(equal_height=False):
        with gr.Column(min_width=280):
            tab = TrainTab(
                job=gr.State(""),
                timer=gr.Timer(POLL_SECONDS, active=False),
                status=gr.Markdown(),
                # curves.png's figure (drawn once per epoch: `TrainPage.curve`); its panels have titles
                curve=gr.Plot(label="Accuracy and loss per epoch", format=CURVE.format, show_label=False),
                details=gr.JSON(label="Job details", visible=False),
            )
        with gr.Column(min_width=280):
            live = build_preview()
    with gr.Accordion("Download the picked model", open=False):
        kind = gr.Radio(list(DOWNLOADS.items()), value="zip", label="As")
        download = gr.Button("Prepare the download")
        prepared = gr.Markdown()  # the time so far while it is made, then how long it took
        file = gr.File(label="Download", interactive=False)
    tab.controls.update(count=count, add=add, remove=remove, train=train, cancel=cancel, kind=kind, download=download)
    tab.controls.update(groups=slots["groups"], cards=slots["cards"], webcams=slots["webcams"], **live)
    labels, uploads = slots["labels"], slots["uploads"]
    tab.controls.update(
        file=file, prepared=prepared, inputs=[name, backbone, size, epochs, archive, folder, *labels, *uploads]
    )
    tab.controls.update(slots=[*labels, *uploads], labels=labels, uploads=uploads, start_over=start_over)
    tab.controls.update(name=name, backbone=backbone, size=size, epochs=epochs)
    return tab


def build_preview() -> dict:
    """The live preview beside training: a webcam that streams, or a dropped image, and the model's answer."""
    gr.Markdown("**Try it live**: once a model exists, each frame is classified with it, after every retrain too.")
    webcam = gr.Image(
        sources=["webcam"], streaming=True, type="filepath", label="Live webcam", height=240, elem_id="live-webcam"
    )
    dropped = gr.Image(
        sources=["upload", "clipboard"], type="filepath", label="Or drop an image", height=140, elem_id="live-image"
    )
    # As on the predict tab: the answer kept as Gradio's Label value, shown as `App.answer_html` draws it (one rule).
    label = gr.Label(num_top_classes=3, label="Live prediction", visible="hidden", elem_id="live-label-value")
    shown = gr.HTML(label="Live prediction", show_label=True, container=True, elem_id="live-label")
    return {"live_webcam": no_fetch(webcam), "live_image": no_fetch(dropped), "live_label": label, "live_shown": shown}


def wire_train_tab(page: TrainPage, tab: TrainTab, model: gr.Dropdown) -> None:
    """The Train tab's events (`model`: the page's model picker, which a download reads and a finished job sets)."""
    controls = tab.controls
    slots = [controls["count"], *controls["groups"], *controls["slots"]]
    resize = dict(inputs=controls["count"], outputs=slots, api_visibility="private")
    controls["add"].click(lambda n: shown_slots(n + 1), **resize)
    controls["remove"].click(lambda n: shown_slots(n - 1), **resize)
    wire_cards(page, tab, model)
    started = [tab.job, *tab.progress, tab.timer]
    controls["train"].click(
        page.train, controls["inputs"], started, api_name="train", concurrency_limit=1, concurrency_id="train"
    )
    tab.timer.tick(page.status, tab.job, [*tab.progress, tab.timer, model], api_name="train_status")
    controls["cancel"].click(page.cancel, tab.job, tab.progress, api_name="train_cancel")
    # The time so far while a download is made (`prepared`, ticked by its timer), not Gradio's own progress: that
    # shows a total guessed from earlier downloads ("5.1/11.9s" for one that takes 21 s).
    prepared, ticking, started = controls["prepared"], gr.Timer(1.0, active=False), gr.State(None)
    ticking.tick(page.still_preparing, started, prepared, api_visibility="private")
    controls["download"].click(
        page.preparing, None, [prepared, started, ticking], api_visibility="private", concurrency_limit=None
    ).then(
        page.download,
        [model, controls["kind"]],
        controls["file"],
        api_name="download",
        show_progress="hidden",
        preprocess=False,  # the model's name as sent, as for a retrain
        concurrency_limit=1,
        concurrency_id="export",
    ).then(page.prepared, [started, controls["file"]], [prepared, started, ticking], api_visibility="private")


def backbone_choices() -> list[tuple[str, str]]:
    """The backbone dropdown's (shown label, value): the value is the /train API's label as it is; a backbone whose
    ImageNet weights are not bundled says it downloads them (offline, it cannot train)."""
    return [
        (
            f"{label} (downloads its weights)"
            if downloads_weights(opts["backbone"], opts.get("alpha", 1.0))
            else label,
            label,
        )
        for label, opts in BACKBONES.items()
    ]


def wire_drafts(page: TrainPage, tab: TrainTab, blocks: gr.Blocks) -> None:
    """The tab's draft (drafts.py): saved at each change of its fields (the latest change only, its own queue group:
    never in another visitor's way), back when the page loads; and "Start over". Private: no API endpoint. Called
    outside the page's tabs: the browser's draft token is made here, so it is read before the (hidden) tab shows."""
    controls = tab.controls
    # The browser's draft token (drafts.py), in its localStorage under a key whose secret survives a restart.
    controls["draft"] = gr.BrowserState("", storage_key=STORAGE_KEY, secret=page.drafts.secret) if page.drafts else None
    slots = [controls["count"], *controls["groups"], *controls["labels"], *controls["uploads"]]
    options = [controls[key] for key in ("name", "backbone", "size", "epochs")]
    draft = [controls["draft"]] if page.drafts else []
    controls["start_over"].click(page.start_over, draft, [*slots, controls["name"]], api_visibility="private")
    if page.drafts is None:
        return
    fields = [*options, controls["count"], *controls["labels"], *controls["uploads"]]
    gr.on(
        [field.change for field in fields],
        page.drafts.on_change,
        [controls["draft"], *fields],
        controls["draft"],
        trigger_mode="always_last",
        preprocess=False,  # the boxes' paths as sent: each checked as an upload there
        show_progress="hidden",
        api_visibility="private",
        concurrency_limit=2,
        concurrency_id="drafts",
    )
    blocks.load(page.restore_draft, controls["draft"], [*slots, *options], api_visibility="private")


def wire_cards(page: TrainPage, tab: TrainTab, model: gr.Dropdown) -> None:
    """The class cards' events (thumbnails when a box's files change, a webcam photo into its box) and the live
    preview's (a stream of frames, or a dropped image). Private: the page's own, no API endpoint."""
    controls = tab.controls
    private = dict(api_visibility="private", preprocess=False)  # payloads as sent: every path checked here
    cards = dict(concurrency_limit=2, concurrency_id="cards")  # thumbnails: two boxes at a time, a decode each
    for upload, card, webcam in zip(controls["uploads"], controls["cards"], controls["webcams"], strict=True):
        upload.change(page.card, upload, card, **private, **cards)
        captured = webcam.input(page.capture, [webcam, upload], [upload, webcam], **private)
        # Cleared, Gradio's webcam asks to be switched on again: it is, so the next press takes the next photo.
        captured.then(None, js=webcam_again(webcam.elem_id), api_visibility="private")
    webcam, image, label = controls["live_webcam"], controls["live_image"], controls["live_label"]
    preview = dict(
        fn=page.preview,
        inputs=[webcam, tab.job, model],
        outputs=label,
        postprocess=False,  # `classify`'s label value as it is
        concurrency_limit=page.limits.concurrency,
        concurrency_id="preview",  # a stream holds its slot while it runs: never one of the predict tab's
        **private,
    )
    webcam.stream(**preview, stream_every=PREVIEW_EVERY, time_limit=PREVIEW_LIMIT_SECONDS)
    # No model runs here: never waits behind predictions (no concurrency limit).
    label.change(page.app.answer_html, label, controls["live_shown"], **private, concurrency_limit=None)
    image.change(**{**preview, "fn": page.live, "inputs": [image, tab.job, model]})  # a dropped image, or cleared


def webcam_again(elem_id: str) -> str:
    """Browser code that presses the webcam's "Click to Access Webcam" of `elem_id` once it shows (for up to 3 s):
    the permission is already given, so the camera is live again at once."""
    return f"""() => {{
        let tries = 0;
        const again = () => {{
            const button = document.querySelector('#{elem_id} {WEBCAM_GRANT}');
            if (button) button.click(); else if (tries++ < 30) setTimeout(again, 100);
        }};
        again();
    }}"""


def webcam_burst(elem_id: str, count: int) -> str:
    """Browser code that switches the webcam of `elem_id` on if needed and presses its capture button `count` times,
    each time once the camera is live again (`webcam_again` switches it back on after each photo)."""
    return f"""async () => {{
        const root = document.querySelector('#{elem_id}');
        const GRANT = '{WEBCAM_GRANT}', CAPTURE = '{WEBCAM_CAPTURE}';
        const live = () => {{
            const video = root.querySelector('video:not(.hide)');
            return video !== null && video.readyState >= 2 && video.videoWidth > 0;
        }};
        const until = async (done, ms) => {{
            const end = Date.now() + ms;
            while (!done() && Date.now() < end) await new Promise((wake) => setTimeout(wake, 50));
            return done();
        }};
        if (!live()) root.querySelector(GRANT)?.click();
        for (let taken = 0; taken < {count}; taken++) {{
            if (!(await until(live, 5000))) break;
            root.querySelector(CAPTURE)?.click();
            await until(() => !live(), 3000);
        }}
    }}"""


def class_slots() -> dict[str, list]:
    """CLASS_SLOTS class cards, FIRST_SLOTS of them shown, each a column that wraps (two a row on a wide screen, one
    on a phone): its name, its image box, its count and thumbnails (`cards`), and a webcam whose every photo joins
    the box. Returns the components by kind, each a list in slot order."""
    slots: dict[str, list] = {"labels": [], "uploads": [], "groups": [], "cards": [], "webcams": []}
    with gr.Row(equal_height=False):
        for i in range(CLASS_SLOTS):
            with gr.Column(visible=i < FIRST_SLOTS, min_width=280, variant="panel", elem_classes="class-card") as group:
                slots["labels"].append(
                    gr.Textbox(label=f"Class {i + 1}", placeholder="class name", max_length=MAX_TEXT)
                )
                # Any file is taken (a HEIC too): the card marks the one training cannot read, with its reason,
                # instead of the whole box turning into an error.
                upload = gr.File(
                    file_count="multiple",
                    type="filepath",
                    label="Its photos",
                    height=120,
                    elem_id=f"class-{i + 1}-images",
                )
                slots["uploads"].append(no_fetch(upload))
                slots["cards"].append(
                    gr.HTML(EMPTY_CARD, css_template=CARD_CSS, js_on_load=None, elem_id=f"class-{i + 1}-card")
                )
                # Folded until wanted: six live cameras would not fit a phone's screen, nor be needed at once.
                with gr.Accordion("Webcam", open=False, elem_id=f"class-{i + 1}-webcam-open"):
                    webcam = gr.Image(
                        sources=["webcam"],
                        type="filepath",
                        label="Each photo taken joins this class",
                        height=200,
                        elem_id=f"class-{i + 1}-webcam",
                    )
                    burst = gr.Button(f"Take {BURST} photos", size="sm", min_width=120)
                # A burst is the webcam's own capture pressed BURST times, each once the camera is live again: every
                # photo goes the way one press goes (`TrainPage.capture`), nothing else reaches the server.
                burst.click(None, js=webcam_burst(webcam.elem_id, BURST), api_visibility="private")
                slots["webcams"].append(no_fetch(webcam))
            slots["groups"].append(group)
    return slots


def shown_slots(count: int, empty: bool = False) -> list:
    """The slots' count, their groups shown or not, and the hidden ones emptied (every one with `empty`): a removed
    class's name and photos are not sent with Train (a hidden named slot would be refused as a class with no photos,
    or train unseen)."""
    count = max(FIRST_SLOTS, min(CLASS_SLOTS, count))
    hidden = [i >= count for i in range(CLASS_SLOTS)]
    cleared = [empty or gone for gone in hidden]
    return [
        count,
        *(gr.Column(visible=not gone) for gone in hidden),
        *(gr.Textbox(value="") if clear else gr.skip() for clear in cleared),
        *(gr.File(value=None) if clear else gr.skip() for clear in cleared),
    ]


@dataclass
class CorrectionRow:
    """The correction row under a prediction, and its retrain's progress (its own job id and timer: the Train tab
    shows the job too, the row only the retrain pressed there)."""

    column: gr.Column
    label: gr.Dropdown
    save: gr.Button
    retrain: gr.Button
    said: gr.Markdown
    progress: gr.Markdown
    job: gr.State
    timer: gr.Timer


def build_correction_row(page: TrainPage, app) -> CorrectionRow:
    """Under a prediction: "Wrong? It is: [class]" (choosing one saves the image there), "Add to <predicted class>",
    Retrain, what happened (inside the tab), and the retrain's stages and how it ended. Shown only for a model the
    page can correct (`correctable`)."""
    with gr.Column(visible=page.correctable(None)) as column:
        with gr.Row():
            label = gr.Dropdown(page.classes(None), value=None, label="Wrong? It is:", scale=2)
            save = gr.Button("Add to the predicted class", size="sm", scale=1, visible=False)
            retrain = gr.Button("Retrain", size="sm", scale=1)
        said = gr.Markdown()
        progress = gr.Markdown(elem_id="retrain-progress")
    timer = gr.Timer(POLL_SECONDS, active=False)
    return CorrectionRow(column, label, save, retrain, said, progress, gr.State(""), timer)


def predicted_class(prediction) -> str | None:
    """The top class of a prediction as the page's `gr.Label` holds it (the answer's, or a "not sure" answer's top
    guess), or None when there is none."""
    confidences = prediction.get("confidences") if isinstance(prediction, dict) else None
    top = confidences[0] if isinstance(confidences, list) and confidences else None
    return top.get("label") if isinstance(top, dict) and isinstance(top.get("label"), str) else None


def wire_corrections(page: TrainPage, model, image, prediction, row: CorrectionRow, tab: TrainTab, view) -> None:
    """The correction row's events; a retrain reports its progress in the row and in the Train tab, and once done
    updates `view` (the model's card and plots beside the prediction: `App.model_view`'s outputs)."""
    column, label, save, retrain, said = row.column, row.label, row.save, row.retrain, row.said
    page.view_size = len(view)
    # Choosing a class saves the image there at once: `select` is the user's choice only (not a new prediction's
    # reset, as `change` would be), and once (`input` fires again when the list loses focus).
    label.select(page.correct, [image, model, label], said, api_name="correct", preprocess=False)
    save.click(page.correct_predicted, [image, model, prediction], said, api_visibility="private", preprocess=False)
    fresh = dict(api_visibility="private", preprocess=False)  # the prediction as sent (a `gr.Label` value)
    prediction.change(page.prediction_view, [prediction, model], [save, label, said, column], **fresh)
    # The model's name as sent (preprocess=False): a model trained since the page loaded is not among its choices.
    retrained = [tab.job, *tab.progress, tab.timer, row.job, row.progress, row.timer]
    retrain.click(page.retrain, model, retrained, api_name="retrain", preprocess=False)
    row.timer.tick(
        page.retrain_status, [row.job, model], [row.progress, row.timer, *view], api_visibility="private",
        preprocess=False,
    )  # fmt: skip
    model.change(page.correction_view, model, [label, column], api_visibility="private")

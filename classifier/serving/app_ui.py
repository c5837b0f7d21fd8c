"""The Gradio page: one image or many in, the model's top classes out, beside the model's card.

Every upload goes to the shared `Predictor` as the file the browser sent: the events run with
`preprocess=False`, so Gradio never decodes or converts the image itself and there is exactly one
preprocessing path (`images.model_pixels`: the accepted formats, EXIF, every mode to RGB, the memory
budget, then the model's resize). A bad upload, or a model folder refused at load, raises `gr.Error`
naming it, shown on the page and returned to API callers; the server keeps serving.

The page shows figures as serving/wording.py words them: one rounding rule for a probability (the answer, its
bars drawn by `answer_html`, the card's threshold, the Many images table, the metrics), every accuracy beside the
images it was measured on, dates in the browser's time zone.

`launch` serves the page to strangers: what they can send, fetch and cost the server is set there
and in app_guard.py (queue only, `Limits`, uploads only, no URLs, only the shown files readable).
"""

from __future__ import annotations

import functools
import html
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import gradio as gr
import numpy as np
import pandas as pd
from starlette.middleware import Middleware

from ..data.images import ImageError
from ..errors import UsageError, clipped
from ..evaluation.metrics import METRICS_FILE, TARGET_PRECISION, report_prefix
from ..evaluation.plots import curves_figure
from ..model.artifacts import read_metadata
from ..model.confidence import NOT_SURE, in_effect, percent
from ..model.metadata import ModelMetadata
from .app_guard import (
    CONFUSION_FILE,
    CURVES_FILE,
    RequestGuard,
    ShownFiles,
    no_fetch,
    text_inputs,
    upload_path,
    upload_source,
)
from .app_train import (
    SentOnce,
    TrainPage,
    TrainTab,
    build_correction_row,
    build_train_tab,
    wire_corrections,
    wire_drafts,
    wire_train_tab,
)
from .library import ModelLibrary, ModelLoading
from .limits import DEFAULT_LIMITS, LOOPBACK_HOSTS, Limits
from .wording import LOCAL_TIME_SCRIPT, accuracy_words, few_images_warning, local_time

TOP_K = 5
RESCAN_SECONDS = 1.0  # a request for the config or schema rescans the models folder at most this often
TRAIN_COMMAND = "python -m classifier.train --data PATH_OR_NAME --out {models_dir}/NAME"
DEMO_COMMAND = (
    "python -m classifier.shapes datasets/shapes && python -m classifier.train --data datasets/shapes "
    "--out {models_dir}/shapes --backbone mobilenet_v2 --alpha 0.35 --image-size 96 --epochs 5"
)
# The answer's bars (`App.answer_html`), as Gradio's gr.Label draws its own.
ANSWER_CSS = """
.answer h2 { margin: 0 0 0.6em; }
.answer .bar { position: relative; display: flex; justify-content: space-between; padding: 0.25em 0.5em;
  margin-bottom: 0.3em; border-radius: 4px; overflow: hidden; }
.answer .bar .fill { position: absolute; left: 0; top: 0; bottom: 0; z-index: 0;
  background: var(--stat-background-fill); opacity: 0.35; }
.answer .bar .name, .answer .bar .figure { position: relative; z-index: 1; }
"""
# The error before the top classes: a bad file's reason is read first, and the long list last (it wraps).
BATCH_COLUMNS = ["file", "prediction", "confidence", "error", f"top {TOP_K}"]
BATCH_WIDTHS = ["17%", "19%", "14%", "28%", "22%"]


def no_model_message(models_dir: str | Path) -> str:
    """What the page says when there is nothing to serve: the exact commands that fix it."""
    return (
        f"**No trained model yet** (no model folder in `{models_dir}/`). Train one, then reload this page:\n\n"
        f"```sh\n{TRAIN_COMMAND.format(models_dir=models_dir)}\n```\n\n"
        "or, offline in under a minute (real ImageNet weights ship with the package), the shapes demo:"
        f"\n\n```sh\n{DEMO_COMMAND.format(models_dir=models_dir)}\n```"
    )


class App:
    """The predict functions and card contents, bound to one `ModelLibrary`."""

    def __init__(self, library: ModelLibrary, models_dir: str | Path, limits: Limits = DEFAULT_LIMITS):
        self.library = library
        self.models_dir = str(models_dir)
        self.limits = limits
        self.shown = ShownFiles(library.paths)  # the only files of the model folders the page can show
        library.on_change = self.changed  # models added to or removed from the models folder since the start
        self.on_offer: Callable[[list[str]], None] | None = None  # told the names offered after each change
        self._rescanned = float("-inf")  # when `rescan` last listed the models folder (time.monotonic)
        library.wait_for_loads(limits.concurrency - 1)  # a queue worker is always left for the loaded models

    def changed(self, added: dict[str, Path], removed: list[str]) -> None:
        """After a rescan of the models folder: the shown files of the models added, none of those removed."""
        for name, path in added.items():
            self.shown.publish(name, path)
        for name in removed:
            self.shown.drop(name)
        self.offered()

    def rescan(self) -> None:
        """Before the app's config or API schema is read: the models folder rescanned (a listing, nothing loaded), at
        most once every RESCAN_SECONDS however often strangers ask; a change reaches the schema through `offered`."""
        now = time.monotonic()
        if now - self._rescanned >= RESCAN_SECONDS:
            self._rescanned = now
            self.library.refresh()

    def offered(self) -> None:
        """The models offered changed (a rescan, or a model trained on the page joined): `on_offer` hears the names
        now offered (`build_app`: the picker's choices in the page's config and the API's schema)."""
        if self.on_offer is not None:
            self.on_offer(self.library.names)

    def page_load(self, model: str | None):
        """A page (re)loads: the picker's choices from the models folder as it is now (rescanned; `model` stays
        picked while it is offered), and the picked model's view."""
        text_inputs(model=model)
        names = self.library.refresh()
        value = model if model in names else (names[0] if names else None)
        return (gr.Dropdown(choices=names, value=value, visible=len(names) > 1), *self.model_view(value))

    def name(self, model: str | None) -> str:
        """`model` (the first one when None) once the library offers it; gr.Error naming it when it does not (the
        models folder is rescanned first: a model may have been added since). The picker takes any value typed or
        sent (allow_custom_value), so every use of a model's name on the page goes through here."""
        try:
            return self.library.name(model)
        except KeyError as error:
            raise gr.Error(str(error.args[0]), title="Unknown model", print_exception=False) from None

    def folder(self, model: str | None) -> Path:
        """The model folder of `model` (the first one when None), as `name` checks it."""
        return self.library.paths[self.name(model)]

    def predictor(self, model: str | None):
        """The shared predictor of `model`; gr.Error naming it when it is unknown or its folder is refused at load, or
        saying so when another request is loading a model (ModelLibrary.get: one load at a time from the page)."""
        if not self.library.names and not self.library.refresh():  # none at start: maybe one since
            raise gr.Error(no_model_message(self.models_dir), title="No model")
        try:
            return self.library.get(model, wait=False)  # loads never hold every queue worker
        except ModelLoading as error:
            raise gr.Error(str(error), title="Model loading", print_exception=False) from None
        except KeyError as error:
            raise gr.Error(str(error.args[0]), title="Unknown model", print_exception=False) from None
        except (UsageError, ImageError) as error:  # a tampered or broken model folder: say which and why
            raise self.refused(model, error) from None

    def refused(self, model: str | None, error: Exception) -> gr.Error:
        """The page's error for a model folder that does not load, naming the model (not this machine's path)."""
        name = self.name(model)
        return gr.Error(
            f"model {name!r} cannot be used: {_shown(error, str(self.folder(model)), name)}",
            title="Model refused",
            print_exception=False,
        )

    def classify(self, upload: dict | None, model: str | None = None) -> dict:
        """One image -> a `gr.Label` value as sent: the answer as `label` (the top class, or "Not sure (top guess:
        ..., 98.5%)"), and the top classes' `confidences` (probabilities, unrounded) either way. The page shows it
        with `answer_html`."""
        text_inputs(model=model)
        predictor = self.predictor(model)
        source, name = upload_source(upload, self.limits)
        try:
            probabilities = predictor.predict_proba([source])[0]
        except ImageError as error:
            raise gr.Error(_shown(error, source, name), title="Not a usable image", print_exception=False) from None
        said = predictor.answer(probabilities)
        return {
            # The class name as it is; "not sure (top guess: ...)" capitalised, as the label's heading.
            "label": said.text[0].upper() + said.text[1:] if said.not_sure else said.label,
            "confidences": [{"label": label, "confidence": p} for label, p in predictor.top_k(probabilities, TOP_K)],
        }

    def classify_if_any(self, upload: dict | None, model: str | None = None) -> dict:
        """`classify` for the page's change event: a cleared image clears the prediction."""
        return self.classify(upload, model) if upload else {}

    def classify_files(self, paths: list[str] | None, model: str | None = None) -> pd.DataFrame:
        """Several files -> one table row each; a bad file gets its error in its row, the rest go on."""
        text_inputs(model=model)
        paths = paths or []
        if len(paths) > self.limits.max_batch:  # counted as sent: the same upload named twice is two files
            raise gr.Error(
                f"{len(paths)} files: this app classifies at most {self.limits.max_batch} per request; "
                "send them in several",
                title="Too many files",
                print_exception=False,
            )
        predictor = self.predictor(model)
        rows, good, pixels = [], [], []
        for path in paths:
            name = clipped(Path(path).name)
            rows.append([name, "", "", "", ""])
            try:
                pixels.append(predictor.pixels(upload_path(path, name)))
                good.append(len(rows) - 1)
            except ImageError as error:
                rows[-1][3] = _shown(error, path, name)
        if pixels:
            for row, probabilities in zip(good, predictor.probabilities_of_pixels(np.stack(pixels)), strict=True):
                said, ranked = predictor.answer(probabilities), predictor.top_k(probabilities, TOP_K)
                rows[row][1:5] = [
                    f"{NOT_SURE} (top guess: {said.label})" if said.not_sure else said.label,
                    percent(said.confidence),
                    "",
                    ", ".join(f"{label} {percent(p)}" for label, p in ranked),
                ]
        return pd.DataFrame(rows, columns=BATCH_COLUMNS)

    @staticmethod
    def answer_html(prediction) -> str:
        """A `classify` value as the page shows it: the answer, then a bar per top class with its `percent`, the one
        rounding rule of the page (the card's threshold and the answer's figure use it too)."""
        if not isinstance(prediction, dict) or not isinstance(prediction.get("label"), str):
            return ""
        bars = [
            f'<div class="bar"><span class="name">{html.escape(str(item.get("label")))}</span>'
            f'<span class="figure">{percent(item["confidence"])}</span>'
            f'<span class="fill" style="width:{percent(max(0.0, min(1.0, item["confidence"])))}"></span></div>'
            for item in prediction.get("confidences") or []
            if isinstance(item, dict) and isinstance(item.get("confidence"), (int, float))
        ]
        return f'<div class="answer"><h2>{html.escape(prediction["label"])}</h2>{"".join(bars)}</div>'

    # -- the model's card, curves and examples --------------------------------------------------
    def examples(self, model: str | None) -> list[Path]:
        return self.shown.examples(self.name(model)) if self.library.names else []

    def metadata(self, model: str | None) -> ModelMetadata:
        """metadata.json of `model`, read without loading the network (the card needs no weights)."""
        try:
            return read_metadata(self.folder(model))
        except UsageError as error:  # not JSON, or not what a model's metadata holds
            raise self.refused(model, error) from None

    def card(self, model: str | None) -> str:
        if not self.library.names:
            return no_model_message(self.models_dir)
        meta = self.metadata(model)
        lines = [
            f"### {self.name(model)}",
            f"- **Classes ({len(meta.class_names)}):** {meta.class_list(30)}",
            f"- **Backbone:** {meta.describe_backbone()}",
            f"- **Image size:** {' x '.join(str(side) for side in meta.image_size)} px",
            *validation_lines(meta),
            *held_out_line(meta),
            *levers_lines(meta),
            f"- **Trained:** {local_time(meta.trained_at)}, {_known(meta.epochs_run)} epochs on "
            f"{_known(meta.data.train_images)} images",
            self.not_sure_line(meta),
        ]
        return "\n".join(lines)

    def not_sure_line(self, meta: ModelMetadata) -> str:
        """The card's line on the "not sure" threshold in effect: --min-confidence's, or the model's own."""
        threshold = in_effect(self.library.min_confidence, meta.min_confidence)
        if threshold is None:
            return "- **Not sure:** never (this model has no threshold; `--min-confidence P` sets one)"
        shown = percent(threshold, up=True)  # rounded up, as "not sure" is decided (model/confidence.py)
        if self.library.min_confidence is not None:
            return f"- **Not sure below:** {shown} top probability (set by `--min-confidence`)"
        coverage = "" if meta.min_confidence_coverage is None else f"{percent(meta.min_confidence_coverage)} of "
        return (
            f"- **Not sure below:** {shown} top probability (the model's own: it answers {coverage}validation "
            f"images, at least {percent(TARGET_PRECISION)} of them right)"
        )

    def curves(self, model: str | None):
        """(curves.png or None, a figure or None): the picture when the folder has one, else the history drawn as
        training draws curves.png (evaluation/plots.py)."""
        if not self.library.names:
            return None, None
        path = self.shown.path(self.name(model), CURVES_FILE)
        if path:
            return str(path), None
        meta = self.metadata(model)
        return None, (curves_figure(meta.history, meta.fine_tune_start_epoch) if meta.history else None)

    def evaluation(self, model: str | None):
        """(metrics tables as Markdown or None, confusion_matrix.png or None): what training measured on the held-out
        test split (when the model has one) and on validation, each named."""
        if not self.library.names:
            return None, None
        metrics_file = self.folder(model) / METRICS_FILE
        confusion = self.shown.path(self.name(model), CONFUSION_FILE)
        tables = [
            f"**{title}**\n\n{metrics_markdown(json.loads(path.read_text()), split)}"
            for title, path, split in (
                (
                    "Test metrics (held-out test split)",
                    metrics_file.with_name(report_prefix("test") + METRICS_FILE),
                    "test",
                ),
                ("Validation metrics", metrics_file, "validation"),
            )
            if path.is_file()
        ]
        table = "\n\n".join(tables) or None
        return table, (str(confusion) if confusion else None)

    def model_view(self, model: str | None):
        """Every model-dependent output, for the page load and the picker."""
        text_inputs(model=model)
        picture, history = self.curves(model)
        table, confusion = self.evaluation(model)
        examples = self.examples(model)
        return (
            self.card(model),
            gr.Image(value=picture, visible=picture is not None),
            gr.Plot(value=history, visible=history is not None),
            gr.Markdown(value=table or "", visible=table is not None),
            gr.Image(value=confusion, visible=confusion is not None),
            gr.Dataset(samples=[[str(p)] for p in examples], visible=bool(examples)),
        )

    def example(self, index: int | None, model: str | None):
        text_inputs(model=model)
        examples = self.examples(model)
        return str(examples[index]) if index is not None and 0 <= index < len(examples) else None


def model_picker(names: list[str]) -> gr.Dropdown:
    """The model picker. Its choices are refreshed from the models folder at each page load (`App.page_load`) and,
    in the page's config and the API's schema, whenever the models offered change (`offer`); a name typed, or sent
    by the API, that is not among them is checked by the library (allow_custom_value: a model added since)."""
    picker = gr.Dropdown(
        names, value=names[0] if names else None, label="Model", visible=len(names) > 1, allow_custom_value=True
    )
    # An instance attribute, not a subclass: Gradio writes a .pyi stub beside the module of a Component subclass.
    picker.api_info = lambda: {
        "type": "string",
        "enum": [value for _, value in picker.choices],
        "description": "the name of a model in the app's models folder (they come and go: a client that connected "
        "before a model was added may still name it)",
    }
    return picker


def offer(blocks: gr.Blocks, picker: gr.Dropdown, names: list[str]) -> None:
    """The picker's choices are `names` in what a new page or client reads of the app: its config (/config, which
    gradio_client reads when it connects) and its API schema (/info, view_api). Gradio works both out once, at
    launch: the picker's entry in the config is updated in place (its keys only: a request copying the config
    meanwhile sees the old list or the new one) and the schemas Gradio derived from it are dropped, to be derived
    again at the next request. A page already open refreshes its own picker (`App.page_load`, a finished job)."""
    picker.choices = [(name, name) for name in names]
    config = getattr(blocks, "config", None) or {}  # set when the Blocks is built, again at launch
    for component in config.get("components", []):
        if component.get("id") == picker._id:
            component["props"]["choices"] = picker.choices
            component["api_info"] = component["api_info_as_input"] = picker.api_info()
    server = getattr(blocks, "server_app", None)  # None until launched
    if server is not None:  # gradio/routes.py's App caches the API schema it derives from the config
        server.api_info = server.all_app_info = None
        server.page_api_info = {}


@dataclass
class Page:
    """What the page's tabs build on and hand each other: the app, the Train tab's `trainer` (None: no training on
    this page), the model picker, the Blocks, and each tab's built components by its label (what `wire` receives)."""

    app: App
    trainer: TrainPage | None
    model: gr.Dropdown
    blocks: gr.Blocks  # the page, for its load events
    built: dict[str, Any] = field(default_factory=dict)
    view: list = field(default_factory=list)  # the model's card and plots beside the tabs (`App.model_view`'s outputs)


@dataclass(frozen=True)
class PageTab:
    """One tab of the page: `build` lays out its components inside `gr.Tab(label)` and returns what `wire` needs;
    `wire` gives them their events once the whole page exists (a tab's events may reach another tab's components)."""

    label: str
    build: Callable[[Page], Any]
    wire: Callable[[Page, Any], None]


def _build_one_image(page: Page) -> dict:
    image = no_fetch(  # the inputs refuse URLs instead of downloading them
        gr.Image(sources=["upload", "clipboard", "webcam"], type="filepath", image_mode=None, label="Image", height=320)
    )
    button = gr.Button("Classify", variant="primary")
    # The API's value (the answer and unrounded probabilities), kept in the page but shown as `answer_html` draws it:
    # Gradio's own bars round to whole percents, the page's one rule is percent() (model/confidence.py).
    label = gr.Label(num_top_classes=TOP_K, label="Prediction", visible="hidden")
    shown = gr.HTML(label="Prediction", show_label=True, container=True, elem_id="prediction")
    correction = build_correction_row(page.trainer, page.app) if page.trainer else None
    examples = gr.Dataset(
        components=[gr.Image(visible=False)], samples=[], type="index", label="Examples", visible=False
    )
    return dict(image=image, button=button, label=label, shown=shown, correction=correction, examples=examples)


def _predict_event(page: Page) -> dict:
    """The settings both predict events share: one concurrency group, at most `concurrency` decode and predict."""
    return dict(concurrency_limit=page.app.limits.concurrency, concurrency_id="predict")


def _wire_one_image(page: Page, built: dict) -> None:
    app, image, examples = page.app, built["image"], built["examples"]
    predict = dict(
        fn=app.classify,
        inputs=[image, page.model],
        outputs=built["label"],
        preprocess=False,
        postprocess=False,  # `classify` sends the label itself: the answer, which may be "Not sure"
        **_predict_event(page),
    )
    built["button"].click(**predict, api_name="predict")
    # Any new image (drop, upload, paste, webcam, an example) is classified without a click.
    image.change(**{**predict, "fn": app.classify_if_any}, api_visibility="private")
    # No model runs here: never waits behind predictions (no concurrency limit).
    built["label"].change(
        app.answer_html, built["label"], built["shown"], api_visibility="private", preprocess=False,
        concurrency_limit=None,
    )  # fmt: skip
    examples.click(app.example, [examples, page.model], image, api_visibility="private")


def _build_many_images(page: Page) -> dict:
    files = no_fetch(
        gr.File(file_count="multiple", type="filepath", label=f"Images (up to {page.app.limits.max_batch})")
    )
    button = gr.Button("Classify all", variant="primary")
    table = gr.Dataframe(
        headers=BATCH_COLUMNS, label="Predictions", interactive=False, wrap=True, column_widths=BATCH_WIDTHS
    )
    return dict(files=files, button=button, table=table)


def _wire_many_images(page: Page, built: dict) -> None:
    inputs = [built["files"], page.model]
    built["button"].click(
        page.app.classify_files, inputs, built["table"], api_name="predict_batch", **_predict_event(page)
    )


def _build_train(page: Page) -> TrainTab:
    return build_train_tab(page.trainer)


def _wire_train(page: Page, tab: TrainTab) -> None:
    """The Train tab's events, and the correction row's under a prediction (a retrain reports in the row and in the
    Train tab, and updates the card)."""
    wire_train_tab(page.trainer, tab, page.model)
    # A page that loads shows the server's current job (started from another page, or before a reload) and polls it.
    page.blocks.load(page.trainer.resume, None, [tab.job, *tab.progress, tab.timer], api_visibility="private")
    wire_drafts(page.trainer, tab, page.blocks)  # the tab's unsaved work, saved and back on a load (drafts.py)
    one_image = page.built[ONE_IMAGE.label]
    built = [one_image[part] for part in ("image", "label", "correction")]
    wire_corrections(page.trainer, page.model, *built, tab, page.view)


ONE_IMAGE = PageTab("One image", _build_one_image, _wire_one_image)
MANY_IMAGES = PageTab("Many images", _build_many_images, _wire_many_images)
TRAIN_TAB = PageTab("Train", _build_train, _wire_train)


def page_tabs(trainer: TrainPage | None) -> list[PageTab]:
    """The page's tabs in order; the Train tab only with a trainer. A new tab is one entry here."""
    return [ONE_IMAGE, MANY_IMAGES] + ([TRAIN_TAB] if trainer else [])


def build_model_view(page: Page) -> list:
    """The column beside the tabs: the picked model's card, curves, metrics and confusion matrix."""
    names = page.app.library.names
    card = gr.Markdown(page.app.card(names[0] if names else None))
    curves = gr.Image(label="Training curves", interactive=False, visible=False)
    history = gr.Plot(label="Training curves", visible=False, format="png", show_label=False)
    metrics = gr.Markdown(visible=False)
    confusion = gr.Image(label="Confusion matrix (validation)", interactive=False, visible=False)
    return [card, curves, history, metrics, confusion]


def build_app(app: App, trainer: TrainPage | None = None) -> gr.Blocks:
    """The Blocks page of `app`, with its queue: every event waits there, within `app.limits`; with `trainer`, the
    Train tab and the correction row under a prediction (classifier/serving/app_train.py)."""
    names, limits, tabs = app.library.names, app.limits, page_tabs(trainer)
    with gr.Blocks(title="Image classifier", delete_cache=limits.delete_cache) as demo:
        gr.Markdown("# Image classifier\nDrop, upload, paste or photograph an image; the model ranks its classes.")
        model = model_picker(names)
        page = Page(app, trainer, model, demo)
        with gr.Row():
            with gr.Column():
                for tab in tabs:
                    with gr.Tab(tab.label):
                        page.built[tab.label] = tab.build(page)
            with gr.Column():
                view = page.view = [*build_model_view(page), page.built[ONE_IMAGE.label]["examples"]]
        for tab in tabs:
            tab.wire(page, page.built[tab.label])
        demo.load(app.page_load, model, [model, *view], api_visibility="private")
        app.on_offer = functools.partial(offer, demo, model)
        model.change(app.model_view, model, view, api_visibility="private")
    # api_open=False: POST /gradio_api/run/<name> (which would skip the queue and its limits) answers 404;
    # the page and gradio_client join the queue (/gradio_api/queue/join), and so does /gradio_api/call/<name>.
    demo.queue(api_open=False, default_concurrency_limit=limits.concurrency, max_size=limits.max_queue)
    return demo


def launch(
    library: ModelLibrary,
    models_dir: str | Path,
    host: str,
    port: int,
    limits: Limits = DEFAULT_LIMITS,
    share: bool = False,
    block: bool = True,
    train_cache: str | None = None,
) -> gr.Blocks:
    """Build the page for `library` and serve it to strangers; returns the running Blocks. `train_cache`: the
    feature cache of jobs started from the page (None: the user's default)."""
    app = App(library, models_dir, limits)
    trainer = TrainPage(app, train_cache) if limits.training else None
    demo = build_app(app, trainer)
    # The models folder too: its models come and go (the library rescans it), none of it is readable.
    blocked = [*library.paths.values(), Path(models_dir)]
    hosts = (host, *LOOPBACK_HOSTS) if limits.local else None
    demo.launch(
        server_name=host,
        server_port=port,
        share=share,
        max_file_size=limits.max_upload,
        # Only copies of the files the page shows are readable, never a model folder itself.
        allowed_paths=[str(app.shown.folder), *([str(trainer.downloads)] if trainer else [])],
        blocked_paths=[str(Path(path).resolve()) for path in blocked],
        # Run locally, the app answers only requests addressed to this machine (no DNS-rebinding page).
        app_kwargs={
            "middleware": [
                Middleware(RequestGuard, max_body=limits.max_body, hosts=hosts, before_schema=app.rescan),
                *([Middleware(SentOnce, folder=trainer.downloads)] if trainer else []),  # downloads go once sent
            ]
        },
        css=ANSWER_CSS,
        head=LOCAL_TIME_SCRIPT,  # dates in the browser's time zone (wording.local_time)
        mcp_server=False,  # Gradio's MCP server (GRADIO_MCP_SERVER=true) would be another way in
        enable_monitoring=False,  # /monitoring: traffic figures for anyone who asks
        run_history=False,  # /gradio_api/runs: calls the Hugging Face Hub on a visitor's behalf
        prevent_thread_lock=not block,
        quiet=not block,
    )
    return demo


def _shown(error: Exception, source, name: str) -> str:
    """The error as the user knows the file or model: its own name, not the server's (temporary) path."""
    return str(error).replace(str(source) if isinstance(source, str) else "image bytes", name)


def validation_lines(meta: ModelMetadata) -> list[str]:
    """The card's validation accuracy, the images it was measured on, and a warning when they are few."""
    images = meta.data.validation_images
    best = "" if meta.best_val_accuracy is None else f" ({percent(meta.best_val_accuracy)} at the best epoch)"
    line = f"- **{accuracy_words(meta.val_accuracy, images).capitalize()}**{best}"
    warning = few_images_warning(images)
    return [line] + ([f"- ⚠️ {warning}"] if warning else [])


def held_out_line(meta: ModelMetadata) -> list[str]:
    """The card's line on the held-out test split ("test accuracy 91.3% on 240 images"), or none."""
    if meta.test is None:
        return []
    source = "a test/ folder" if meta.test.get("from") == "folder" else "--test-split"
    count = meta.test["count"]
    warning = few_images_warning(count, "test")
    return [
        f"- **{accuracy_words(meta.test['accuracy'], count, 'test').capitalize()}** held out (test split from "
        f"{source}: never trained on, nor used to choose anything)" + (f"; ⚠️ {warning}" if warning else "")
    ]


def metrics_markdown(metrics: dict, split: str) -> str:
    """A split's metrics.json as a Markdown table in percentages (`percent`), one row per class and the macro
    average, then the accuracy on the images it was measured on (and a warning when they are few)."""
    rows = ["| class | precision | recall | F1 | images |", "| --- | ---: | ---: | ---: | ---: |"]
    named = [(html.escape(name), row) for name, row in metrics["per_class"].items()]
    for name, row in [*named, ("*macro average*", {**metrics["macro_avg"], "support": metrics["images"]})]:
        figures = " | ".join(percent(row[key]) for key in ("precision", "recall", "f1"))
        rows.append(f"| {name} | {figures} | {row['support']} |")
    warning = few_images_warning(metrics["images"], split)
    accuracy = f"**{accuracy_words(metrics['accuracy'], metrics['images'], split).capitalize()}**"
    return "\n".join(rows) + f"\n\n{accuracy}" + (f"\n\n⚠️ {warning}" if warning else "")


def levers_lines(meta: ModelMetadata) -> list[str]:
    """The card's lines on test-time flips and the refit, for a model trained with them (metadata.json's `flips`,
    `refit`); none otherwise."""
    lines = []
    flips = meta.flips if isinstance(meta.flips, dict) else None
    if flips is not None:
        plain, averaged = flips.get("validation_accuracy_plain"), flips.get("validation_accuracy_averaged")
        lines.append(
            f"- **Test-time flips:** each image's answer is averaged with its mirror image's (validation accuracy "
            f"{_fraction(plain)} without, {_fraction(averaged)} with)"
        )
    if isinstance(meta.refit, dict):
        images, epochs = _known(meta.refit.get("images")), _known(meta.refit.get("epochs"))
        lines.append(
            f"- **Refit:** the head was trained again on training + validation images ({images}) for {epochs} "
            "epochs: the validation figures are from the run before the refit, no longer held out"
        )
    return lines


def _fraction(value) -> str:
    return percent(value) if isinstance(value, (int, float)) else "unknown"


def _known(value) -> str:
    return "?" if value is None else str(value)

"""The Gradio page: one image or many in, the model's top classes out, beside the model's card.

Every upload goes to the shared `Predictor` as the file the browser sent: the events run with
`preprocess=False`, so Gradio never decodes or converts the image itself and there is exactly one
preprocessing path (`images.load_rgb`: EXIF, every mode to RGB, size limits, bombs). A bad upload
raises `gr.Error`, shown on the page and returned to API callers; the server keeps serving.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd

from .artifacts import read_metadata
from .evaluate import METRICS_FILE, format_table
from .images import ImageError, is_image_file
from .serving import ModelLibrary

TOP_K = 5
CURVES_FILE = "curves.png"
CONFUSION_FILE = "confusion_matrix.png"
EXAMPLES_DIR = "examples"
TRAIN_COMMAND = "python -m classifier.train --data PATH_OR_NAME --out {models_dir}/NAME"
DEMO_COMMAND = (
    "python -m classifier.shapes datasets/shapes && python -m classifier.train --data datasets/shapes "
    "--out {models_dir}/shapes --weights none --cut-layer mixed2 --image-size 75 --epochs 12 --learning-rate 1e-3 "
    "--no-augment"
)
MAX_UPLOAD = "50mb"  # far above any photo; a multi-gigabyte upload is refused before it reaches disk
BATCH_COLUMNS = ["file", "prediction", "confidence", f"top {TOP_K}", "error"]


def no_model_message(models_dir: str | Path) -> str:
    """What the page says when there is nothing to serve: the exact commands that fix it."""
    return (
        f"**No trained model yet** (no model folder in `{models_dir}/`). Train one, then restart the app:\n\n"
        f"```sh\n{TRAIN_COMMAND.format(models_dir=models_dir)}\n```\n\n"
        f"or, offline in about a minute, the shapes demo:\n\n```sh\n{DEMO_COMMAND.format(models_dir=models_dir)}\n```"
    )


def upload_source(upload: dict | None) -> tuple[str | bytes, str]:
    """A raw Gradio file payload -> (what the Predictor reads, the name to show the user)."""
    if not upload:
        raise gr.Error("No image: drop, upload, paste or capture one first.")
    name = upload.get("orig_name") or Path(upload.get("path") or "image").name
    url = upload.get("url") or ""
    if not upload.get("path") and url.startswith("data:"):  # inline base64, as some webcams send it
        return base64.b64decode(url.split(",", 1)[1]), name
    return upload["path"], name


class App:
    """The predict functions and card contents, bound to one `ModelLibrary`."""

    def __init__(self, library: ModelLibrary, models_dir: str | Path):
        self.library = library
        self.models_dir = str(models_dir)

    def predictor(self, model: str | None):
        if not self.library.names:
            raise gr.Error(no_model_message(self.models_dir), title="No model")
        try:
            return self.library.get(model)
        except KeyError as error:
            raise gr.Error(str(error.args[0])) from None

    def classify(self, upload: dict | None, model: str | None = None) -> dict[str, float]:
        """One image -> {class: probability} for the top classes (a `gr.Label` value)."""
        predictor = self.predictor(model)
        source, name = upload_source(upload)
        try:
            probabilities = predictor.predict_proba([source])[0]
        except ImageError as error:
            raise gr.Error(_shown(error, source, name), title="Not a usable image", print_exception=False) from None
        return dict(predictor.top_k(probabilities, TOP_K))

    def classify_if_any(self, upload: dict | None, model: str | None = None) -> dict[str, float] | None:
        """`classify` for the page's change event: a cleared image clears the prediction."""
        return self.classify(upload, model) if upload else None

    def classify_files(self, paths: list[str] | None, model: str | None = None) -> pd.DataFrame:
        """Several files -> one table row each; a bad file gets its error in its row, the rest go on."""
        predictor = self.predictor(model)
        rows, good, pixels = [], [], []
        for path in paths or []:
            name = Path(path).name
            rows.append([name, "", None, "", ""])
            try:
                pixels.append(predictor.pixels(path))
                good.append(len(rows) - 1)
            except ImageError as error:
                rows[-1][4] = _shown(error, path, name)
        if pixels:
            for row, probabilities in zip(good, predictor.probabilities_of_pixels(np.stack(pixels)), strict=True):
                ranked = predictor.top_k(probabilities, TOP_K)
                rows[row][1:4] = [
                    ranked[0][0],
                    round(ranked[0][1], 4),
                    ", ".join(f"{label} {p:.3f}" for label, p in ranked),
                ]
        return pd.DataFrame(rows, columns=BATCH_COLUMNS)

    # -- the model's card, curves and examples --------------------------------------------------
    def examples(self, model: str | None) -> list[Path]:
        if not self.library.names:
            return []
        folder = self.library.paths[model or self.library.names[0]] / EXAMPLES_DIR
        return sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p)) if folder.is_dir() else []

    def metadata(self, model: str | None) -> dict:
        """metadata.json of `model`, read without loading the network (the card needs no weights)."""
        return read_metadata(self.library.paths[model or self.library.names[0]])

    def card(self, model: str | None) -> str:
        if not self.library.names:
            return no_model_message(self.models_dir)
        meta = self.metadata(model)
        classes = meta["class_names"]
        shown = ", ".join(classes[:30]) + (f" ... ({len(classes)} in all)" if len(classes) > 30 else "")
        data = meta.get("data", {})
        lines = [
            f"### {model or self.library.names[0]}",
            f"- **Classes ({len(classes)}):** {shown}",
            f"- **Backbone:** {meta.get('backbone')} cut at `{meta.get('cut_layer')}`, weights: {meta.get('weights')}",
            f"- **Image size:** {' x '.join(str(s) for s in meta['image_size'])} px",
            f"- **Validation accuracy:** {_fraction(meta.get('val_accuracy'))} after the last epoch, "
            f"{_fraction(meta.get('best_val_accuracy'))} at the best",
            f"- **Trained:** {meta.get('trained_at', 'unknown')}, {meta.get('epochs_run', '?')} epochs on "
            f"{data.get('train_images', '?')} images",
        ]
        return "\n".join(lines)

    def curves(self, model: str | None):
        """(curves.png or None, history table or None): the picture when the folder has one, else the history."""
        if not self.library.names:
            return None, None
        path = self.library.paths[model or self.library.names[0]] / CURVES_FILE
        if path.is_file():
            return str(path), None
        history = self.metadata(model).get("history", {})
        rows = [
            (epoch + 1, metric, value)
            for metric, values in history.items()
            if "accuracy" in metric
            for epoch, value in enumerate(values)
        ]
        return None, (pd.DataFrame(rows, columns=["epoch", "metric", "value"]) if rows else None)

    def evaluation(self, model: str | None):
        """(metrics table as Markdown or None, confusion_matrix.png or None): what training measured on validation."""
        if not self.library.names:
            return None, None
        folder = self.library.paths[model or self.library.names[0]]
        metrics_file, confusion = folder / METRICS_FILE, folder / CONFUSION_FILE
        table = (
            f"**Validation metrics**\n\n```\n{format_table(json.loads(metrics_file.read_text()))}\n```"
            if metrics_file.is_file()
            else None
        )
        return table, (str(confusion) if confusion.is_file() else None)

    def model_view(self, model: str | None):
        """Every model-dependent output, for the page load and the picker."""
        picture, history = self.curves(model)
        table, confusion = self.evaluation(model)
        examples = self.examples(model)
        return (
            self.card(model),
            gr.Image(value=picture, visible=picture is not None),
            gr.LinePlot(value=history, visible=history is not None),
            gr.Markdown(value=table or "", visible=table is not None),
            gr.Image(value=confusion, visible=confusion is not None),
            gr.Dataset(samples=[[str(p)] for p in examples], visible=bool(examples)),
        )

    def example(self, index: int | None, model: str | None):
        examples = self.examples(model)
        return str(examples[index]) if index is not None and 0 <= index < len(examples) else None


def build_app(
    library: ModelLibrary, models_dir: str | Path = "models", concurrency: int = 4, max_queue: int = 64
) -> gr.Blocks:
    """The Blocks page with an explicit queue: `concurrency` requests run at once, `max_queue` wait."""
    app = App(library, models_dir)
    names = library.names
    with gr.Blocks(title="Image classifier") as demo:
        gr.Markdown("# Image classifier\nDrop, upload, paste or photograph an image; the model ranks its classes.")
        model = gr.Dropdown(names, value=names[0] if names else None, label="Model", visible=len(names) > 1)
        with gr.Row():
            with gr.Column():
                with gr.Tab("One image"):
                    image = gr.Image(
                        sources=["upload", "clipboard", "webcam"],
                        type="filepath",
                        image_mode=None,
                        label="Image",
                        height=320,
                    )
                    button = gr.Button("Classify", variant="primary")
                    label = gr.Label(num_top_classes=TOP_K, label="Prediction")
                    examples = gr.Dataset(
                        components=[gr.Image(visible=False)], samples=[], type="index", label="Examples", visible=False
                    )
                with gr.Tab("Many images"):
                    files = gr.File(file_count="multiple", type="filepath", label="Images")
                    batch_button = gr.Button("Classify all", variant="primary")
                    table = gr.Dataframe(headers=BATCH_COLUMNS, label="Predictions", interactive=False)
            with gr.Column():
                card = gr.Markdown(app.card(names[0] if names else None))
                curves = gr.Image(label="Training curves", interactive=False, visible=False)
                history = gr.LinePlot(x="epoch", y="value", color="metric", label="Training curves", visible=False)
                metrics = gr.Markdown(visible=False)
                confusion = gr.Image(label="Confusion matrix (validation)", interactive=False, visible=False)

        predict = dict(
            fn=app.classify,
            inputs=[image, model],
            outputs=label,
            preprocess=False,
            concurrency_limit=concurrency,
            concurrency_id="predict",
        )
        button.click(**predict, api_name="predict")
        # Any new image (drop, upload, paste, webcam, an example) is classified without a click.
        image.change(**{**predict, "fn": app.classify_if_any}, api_visibility="private")
        examples.click(app.example, [examples, model], image, api_visibility="private")
        batch_button.click(
            app.classify_files,
            [files, model],
            table,
            api_name="predict_batch",
            concurrency_limit=concurrency,
            concurrency_id="predict",
        )
        view = [card, curves, history, metrics, confusion, examples]
        demo.load(app.model_view, model, view, api_visibility="private")
        model.change(app.model_view, model, view, api_visibility="private")
    demo.queue(default_concurrency_limit=concurrency, max_size=max_queue)
    return demo


def launch(demo: gr.Blocks, library: ModelLibrary, host: str, port: int, share: bool = False, block: bool = True):
    """Serve `demo`; uploads are capped and only the model folders are readable besides Gradio's cache."""
    return demo.launch(
        server_name=host,
        server_port=port,
        share=share,
        max_file_size=MAX_UPLOAD,
        allowed_paths=[str(path.resolve()) for path in library.paths.values()],  # curves.png, examples/
        prevent_thread_lock=not block,
        quiet=not block,
    )


def _shown(error: ImageError, source, name: str) -> str:
    """The error as the user knows the file: its own name, not the server's temporary path."""
    return str(error).replace(str(source) if isinstance(source, str) else "image bytes", name)


def _fraction(value) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "unknown"

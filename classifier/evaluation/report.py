"""The report on a model folder: accuracy, per-class precision/recall/F1, confusion matrix, and plots.

`evaluate()` (what `python -m classifier.evaluate`, classifier/evaluate.py, runs) writes `metrics.json`,
`confusion_matrix.png`, `curves.png` (from the saved training history) and `most_wrong.png` into `out` (default:
the model folder) and logs a table, closed by the "not sure" threshold these images suggest and what the model's
own threshold does on them. A data folder without train/validation folders is split exactly as training split it
(the validation fraction and seed saved in the model's metadata), so split "validation" is never an image it
trained on. Training calls `write_report` on its validation predictions, so every model folder has these.
"""

from __future__ import annotations

from pathlib import Path

from ..atomic import write_json
from ..config import TrainConfig
from ..console import Log, say
from ..data.datasets import resolve_data
from ..data.images import load_rgb
from ..data.pipeline import image_dataset, load_image_data
from ..errors import UsageError
from ..model.artifacts import load_model, read_metadata
from ..model.metadata import ModelMetadata
from .metrics import METRICS_FILE, classification_metrics, format_table, most_wrong
from .plots import plot_confusion_matrix, plot_curves, plot_images


def write_report(
    folder: Path, metrics: dict, metadata: ModelMetadata, wrong: list[tuple[str, int, int, float]]
) -> list[Path]:
    """metrics.json and the three PNGs into `folder`; the same files for `train` and `evaluate`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / METRICS_FILE, metrics)
    names = metrics["class_names"]
    return [
        folder / METRICS_FILE,
        plot_curves(metadata.history, folder / "curves.png", metadata.fine_tune_start_epoch),
        plot_confusion_matrix(metrics["confusion_matrix"], names, folder / "confusion_matrix.png"),
        plot_images(
            [load_rgb(path) for path, *_ in wrong],
            [f"true {names[t]}\npredicted {names[p]} ({c:.0%})" for _, t, p, c in wrong],
            folder / "most_wrong.png",
        ),
    ]


def evaluate(
    model_dir: str | Path,
    data: str | None = None,
    split: str = "validation",
    out: str | Path | None = None,
    log: Log = say,
    trust_hub_handle: bool = False,
) -> dict:
    """Score a model folder on a dataset split, write the report into `out` (default: the model folder);
    return the metrics."""
    metadata = read_metadata(model_dir)
    config = TrainConfig.from_dict(metadata.config)  # what training used; an older file's missing keys: defaults
    source = data or metadata.data.root
    if source is None:
        raise UsageError(f"{model_dir}: its metadata records no data folder; pass --data PATH_OR_NAME")
    data_dir = resolve_data(source, csv_dir=config.csv_dir, log=log)
    image_data = load_image_data(data_dir, config.validation_split, config.seed)
    if image_data.class_names != metadata.class_names:
        raise UsageError(
            f"--data {data or data_dir}: its classes ({', '.join(image_data.class_names)}) are not the model's "
            f"({', '.join(metadata.class_names)})"
        )
    images = getattr(image_data, split)
    model = load_model(model_dir, trust_hub_handle)
    dataset = image_dataset(images, metadata.image_size, config.batch_size)
    probabilities = model.predict(dataset, verbose=0)
    metrics = {
        **classification_metrics(images.labels, probabilities, image_data.class_names, metadata.min_confidence),
        "split": split,
        "data": str(data_dir),
    }
    written = write_report(
        Path(out or model_dir), metrics, metadata, most_wrong(images.paths, images.labels, probabilities)
    )
    log(format_table(metrics))
    log(f"wrote {', '.join(str(path) for path in written)}")
    return metrics

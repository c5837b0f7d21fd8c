"""The report on a model folder: accuracy, per-class precision/recall/F1, confusion matrix, and plots.

`evaluate()` (what `python -m classifier.evaluate`, classifier/evaluate.py, runs) writes `metrics.json`,
`confusion_matrix.png`, `curves.png` (from the saved training history) and `most_wrong.png` into `out` (default:
the model folder) and logs a table, closed by the "not sure" threshold these images suggest and what the model's
own threshold does on them. A data folder without train/validation folders is split exactly as training split it
(the validation fraction and seed saved in the model's metadata), so split "validation" is never an image it
trained on. Training calls `write_report` on its validation predictions, so every model folder has these.

The test split (a model trained with a test/ folder or --test-split) is what `evaluate` scores by default when the
model has one, re-made exactly as training made it. Its report files are named for it, `test_metrics.json`,
`test_confusion_matrix.png` and `test_most_wrong.png` (training writes them too), so they never replace the
validation report the page shows; the other splits write the unprefixed names, as before.
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
from .metrics import METRICS_FILE, classification_metrics, format_table, most_wrong, report_prefix
from .plots import plot_confusion_matrix, plot_curves, plot_images


def write_report(
    folder: Path,
    metrics: dict,
    metadata: ModelMetadata,
    wrong: list[tuple[str, int, int, float]],
    curves: bool = True,
) -> list[Path]:
    """metrics.json and the three PNGs into `folder` (named for metrics["split"], see `report_prefix`); the same
    files for `train` and `evaluate`. `curves=False` leaves out curves.png, which depends on the history alone (a
    second report of one training run)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    split = metrics.get("split")
    prefix = report_prefix(split)
    write_json(folder / f"{prefix}{METRICS_FILE}", metrics)
    names = metrics["class_names"]
    return [
        folder / f"{prefix}{METRICS_FILE}",
        *([plot_curves(metadata.history, folder / "curves.png", metadata.fine_tune_start_epoch)] if curves else []),
        plot_confusion_matrix(metrics["confusion_matrix"], names, folder / f"{prefix}confusion_matrix.png", split),
        plot_images(
            [load_rgb(path) for path, *_ in wrong],
            [f"true {names[t]}\npredicted {names[p]} ({c:.0%})" for _, t, p, c in wrong],
            folder / f"{prefix}most_wrong.png",
        ),
    ]


def evaluate(
    model_dir: str | Path,
    data: str | None = None,
    split: str | None = None,
    out: str | Path | None = None,
    log: Log = say,
    trust_hub_handle: bool = False,
) -> dict:
    """Score a model folder on a dataset split (default: its test split when it was trained with one, else
    validation), write the report into `out` (default: the model folder); return the metrics."""
    metadata = read_metadata(model_dir)
    config = TrainConfig.from_dict(metadata.config)  # what training used; an older file's missing keys: defaults
    source = data or metadata.data.root
    if source is None:
        raise UsageError(f"{model_dir}: its metadata records no data folder; pass --data PATH_OR_NAME")
    data_dir = resolve_data(source, csv_dir=config.csv_dir, log=log)
    image_data = load_image_data(data_dir, config.validation_split, config.seed, test_split=config.test_split)
    if image_data.class_names != metadata.class_names:
        raise UsageError(
            f"--data {data or data_dir}: its classes ({', '.join(image_data.class_names)}) are not the model's "
            f"({', '.join(metadata.class_names)})"
        )
    split = split or default_split(metadata, image_data.test is not None, log)
    images = getattr(image_data, split)
    if images is None:
        raise UsageError(
            f"--split test: --data {data or data_dir} has no test split (no test/ folder, and the model was trained "
            "without --test-split); use --split validation"
        )
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
    log(f"{split} split: {len(images)} images")
    log(format_table(metrics))
    log(f"wrote {', '.join(str(path) for path in written)}")
    return metrics


def default_split(metadata: ModelMetadata, data_has_test: bool, log: Log) -> str:
    """The split `evaluate` scores when none is asked for: the test split when the model was trained with one and
    the data has one (said in one line), else validation."""
    if metadata.test is None and not metadata.data.test_images:
        return "validation"
    if not data_has_test:
        log("note: the model has a test split but this data has none; scoring the validation split")
        return "validation"
    log("scoring the test split, held out from training (--split validation for the validation images)")
    return "test"

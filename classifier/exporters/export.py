"""Export a model folder for serving: a TF Serving SavedModel or a TFLite model, checked before it lands.

    python -m classifier.export MODEL_DIR --format savedmodel|tflite [--quantize none|float16|dynamic|int8] [--out DIR]

Each export is a folder, written atomically (built beside `--out`, renamed into place when complete):

    savedmodel:  saved_model.pb, variables/, labels.txt, export.json
    tflite:      model.tflite, labels.txt, export.json

`model.tflite` carries its labels (labels.txt, as the output's TENSOR_AXIS_LABELS file) and input
normalisation (mean 0, std 1: it takes pixels 0..255 and normalises inside) as TFLite metadata,
written by MediaPipe's metadata writer, which MediaPipe's ImageClassifier and the Android task
libraries read. MediaPipe is optional (`pip install -e ".[tflite-metadata]"`); without it the file
has no metadata and `export.json` says why and how to get it.

Right after writing, the export is loaded back the way its users load it (`tf.saved_model.load`,
the LiteRT interpreter), run on sample images and compared with the Keras model (see
`exportcheck` for what each format may change). The figures are printed and saved in
`export.json`; a failed check is an error (exit 1) and leaves nothing at `--out`. `export.json`
also records the model's "not sure" threshold (`min_confidence`) and the rule that applies it.
"""

from __future__ import annotations

import importlib.metadata
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from .._tf import keras, tf
from ..console import Log, say, silent
from ..data.images import decode_bytes_rgb_tf, resize
from ..datasets import resolve_data
from ..errors import ArgumentParser, UsageError, cli, first_line
from ..evaluation.confidence import RULE
from ..model.artifacts import (
    LABELS_FILE,
    add_trust_flag,
    check_output_dir,
    load_model,
    read_metadata,
    staged_dir,
    versions,
    write_json,
    write_labels,
)
from ..model.compat import mediapipe_metadata
from ..model.metadata import ModelMetadata
from ..model.network import resize_antialias
from ..model.tflite import PIXELS_SIGNATURE, LiteRTModel, convert_tflite, pixels_spec
from . import check as exportcheck

FORMATS = ("savedmodel", "tflite")
QUANTIZE = ("none", "float16", "dynamic", "int8")
EXPORT_FILE = "export.json"
TFLITE_FILE = "model.tflite"
CHECK_IMAGES = 200  # real images the check runs on: enough for an agreement rate to mean something
CALIBRATION_IMAGES = 200  # int8 representative images (TFLite's guide: a few hundred)
METADATA_EXTRA = 'pip install -e ".[tflite-metadata]" (the extra that installs mediapipe)'
BYTES_SIGNATURE = "serving_bytes"  # beside tflite.PIXELS_SIGNATURE, "serving_default"


@dataclass
class ExportResult:
    path: Path
    metadata: dict  # what export.json holds, check figures included


def default_out(model_dir: Path, format: str, quantize: str) -> Path:
    return model_dir / "export" / ("savedmodel" if format == "savedmodel" else f"tflite_{quantize}")


def export_model(
    model_dir: str | Path,
    format: str = "savedmodel",
    quantize: str = "none",
    out: str | Path | None = None,
    data: str | None = None,
    tolerance: float | None = None,
    overwrite: bool = False,
    log: Log = say,
    trust_hub_handle: bool = False,
    min_agreement: float | None = None,
) -> ExportResult:
    """Write, check and move into place one export of `model_dir`; raises ExportCheckError on a failed check.

    `tolerance` replaces a float export's largest accepted |p_export - p_keras|, `min_agreement` a quantized
    export's share of top-1 answers that must agree (see exportcheck).
    """
    if format not in FORMATS:
        raise UsageError(f"--format {format}: choose one of {', '.join(FORMATS)}")
    if quantize not in QUANTIZE:
        raise UsageError(f"--quantize {quantize}: choose one of {', '.join(QUANTIZE)}")
    if format == "savedmodel" and quantize != "none":
        raise UsageError(f"--quantize {quantize}: only for --format tflite (a SavedModel keeps the float32 model)")
    if tolerance is not None and not tolerance > 0:
        raise UsageError(f"--tolerance {tolerance}: must be positive")
    if tolerance is not None and quantize != "none":
        raise UsageError(
            f"--tolerance: only for float exports; --quantize {quantize} is judged by top-1 agreement, see "
            "--min-agreement"
        )
    if min_agreement is not None and not 0 <= min_agreement <= 1:
        raise UsageError(f"--min-agreement {min_agreement}: must be between 0 and 1")
    if min_agreement is not None and quantize == "none":
        raise UsageError(
            "--min-agreement: only for quantized exports (--quantize float16, dynamic or int8); see --tolerance"
        )
    model_dir = Path(model_dir)
    metadata = read_metadata(model_dir)
    out = check_output_dir(out or default_out(model_dir, format, quantize), overwrite, is_export_dir, "export folder")
    size = metadata.image_size
    train_folder, check_folder, why_none = model_data_folders(metadata, data)
    if quantize == "int8" and train_folder is None:
        raise UsageError(
            f"--quantize int8 needs real images to calibrate on, and {why_none}; pass --data FOLDER with images like "
            "the training ones"
        )
    model = load_model(model_dir, trust_hub_handle)
    samples = exportcheck.image_samples(check_folder, size, CHECK_IMAGES, why_none)
    reference = predict_batches(lambda batch: model(batch, training=False), samples.pixels)
    rule = exportcheck.allowance(format, quantize, tolerance, min_agreement)
    targets = samples.targets(metadata.class_names)

    with staged_dir(out) as folder:
        if format == "savedmodel":
            write_savedmodel(model, size, folder)
            results = check_savedmodel(folder, samples, reference, rule, targets)
            tflite_metadata = None
        else:
            calibration = calibration_pixels(train_folder, size) if quantize == "int8" else None
            converted = convert_tflite(model, size, quantize, calibration)
            tflite, tflite_metadata = with_tflite_metadata(converted, metadata.class_names)
            if not tflite_metadata["written"]:
                log(f"note: model.tflite has no TFLite metadata: {tflite_metadata['why']}")
            (folder / TFLITE_FILE).write_bytes(tflite)
            probabilities = run_tflite(folder / TFLITE_FILE, samples.pixels)
            results = {"tflite": exportcheck.compare(probabilities, reference, rule, targets)}
        for name, figures in results.items():
            log(f"check {exportcheck.describe(name, figures)}")
        check = exportcheck.check(results, samples.source, rule)
        record = export_metadata(model_dir, metadata, format, quantize, check, tflite_metadata)
        write_json(folder / EXPORT_FILE, record)
        write_labels(folder, metadata.class_names)
    log(f"exported {format}{'' if quantize == 'none' else f' ({quantize})'} to {out}, checked on {samples.source}")
    return ExportResult(out, record)


def is_export_dir(path: Path) -> bool:
    return (path / EXPORT_FILE).is_file()


def model_data_folders(metadata: ModelMetadata, data: str | None) -> tuple[Path | None, Path | None, str]:
    """(training folder, check folder, why there are none) from --data or the metadata's data.root."""
    if data is not None:
        return (*exportcheck.data_folders(resolve_data(data, log=silent)), "")
    root = metadata.data.root
    if root and Path(root).is_dir():
        return (*exportcheck.data_folders(Path(root)), "")
    return None, None, f"the training folder {root or '(none recorded)'} in the model's metadata is not on this machine"


# --------------------------------------------------------------------------------------------
# SavedModel for TF Serving
# --------------------------------------------------------------------------------------------
def write_savedmodel(model, size: tuple[int, int], folder: Path) -> None:
    """Two signatures, both returning {"probabilities": (N, classes)} in labels.txt order:
    `serving_default` takes float pixels (N, H, W, 3) 0..255 at the model's size; `serving_bytes`
    takes encoded JPEG/PNG/GIF/BMP files (N,) and decodes them in-graph like training does.
    """
    archive = keras.export.ExportArchive()
    archive.track(model)

    def from_pixels(images):
        return {"probabilities": model(images, training=False)}

    antialias = resize_antialias(model)

    def from_bytes(image_bytes):
        # EXIF orientation is not read in-graph: send upright images (training applies the tag).
        decode = lambda data: resize(decode_bytes_rgb_tf(data, 1, max(size)), size, antialias)  # noqa: E731
        images = tf.map_fn(decode, image_bytes, fn_output_signature=tf.TensorSpec([*size, 3], tf.float32))
        return {"probabilities": model(images, training=False)}

    archive.add_endpoint(PIXELS_SIGNATURE, from_pixels, [pixels_spec(size)])
    archive.add_endpoint(BYTES_SIGNATURE, from_bytes, [tf.TensorSpec([None], tf.string, name="image_bytes")])
    archive.write_out(str(folder), verbose=False)


def check_savedmodel(
    folder: Path, samples: exportcheck.Samples, reference: np.ndarray, rule: exportcheck.Allowance, targets
) -> dict:
    """Load the SavedModel as TF Serving would and compare both signatures with the Keras model."""
    loaded = tf.saved_model.load(str(folder))
    from_pixels = loaded.signatures[PIXELS_SIGNATURE]
    pixels = predict_batches(lambda batch: from_pixels(images=tf.constant(batch))["probabilities"], samples.pixels)
    results = {PIXELS_SIGNATURE: exportcheck.compare(pixels, reference, rule, targets)}
    upright = [i for i, data in enumerate(samples.encoded) if data is not None]
    if upright:
        encoded = np.array([samples.encoded[i] for i in upright], dtype=object)
        from_bytes = loaded.signatures[BYTES_SIGNATURE]
        probabilities = predict_batches(
            lambda batch: from_bytes(image_bytes=tf.constant(batch))["probabilities"], encoded
        )
        results[BYTES_SIGNATURE] = exportcheck.compare(
            probabilities, reference[upright], rule, None if targets is None else targets[upright]
        )
    return results


def predict_batches(predict, inputs: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """`predict(batch)` over `inputs` in batches of `batch_size`, so 200 check images need little memory."""
    return np.concatenate([np.asarray(predict(inputs[i : i + batch_size])) for i in range(0, len(inputs), batch_size)])


# --------------------------------------------------------------------------------------------
# TFLite (the conversion itself: classifier/model/tflite.py)
# --------------------------------------------------------------------------------------------
def calibration_pixels(train_folder: Path, size: tuple[int, int]) -> np.ndarray:
    """int8's calibration set: CALIBRATION_IMAGES training images through the training pipeline, (N, H, W, 3)."""
    return exportcheck.split_pixels(exportcheck.sample_split(train_folder, CALIBRATION_IMAGES), size)


def run_tflite(path: Path, pixels: np.ndarray) -> np.ndarray:
    """Run a TFLite model over `pixels` in the LiteRT interpreter, in batches, (de)quantising input and output."""
    return predict_batches(LiteRTModel(path=path), pixels)


def with_tflite_metadata(tflite: bytes, class_names: list[str]) -> tuple[bytes, dict]:
    """The model with its labels and input normalisation as TFLite metadata (MediaPipe's writer), and export.json's
    `tflite_metadata` record; without MediaPipe, the model unchanged and a record of why and how to get it."""
    try:
        _, writers = mediapipe_metadata()
    except ImportError as error:
        why = f"MediaPipe's metadata writer could not be imported ({first_line(error)})"
        return tflite, {"written": False, "why": why, "to_add_it": f"{METADATA_EXTRA}, then export again"}
    writer = writers.MetadataWriter.create(bytearray(tflite))
    writer.add_general_info("image classifier", "Classifies an RGB image into one of: " + ", ".join(class_names))
    # MediaPipe feeds (pixel - mean) / std: mean 0 and std 1 hand over pixels 0..255, which the model normalises
    # itself (its backbone's scaling is inside it). A uint8 (int8) input takes pixels as they are.
    writer.add_image_input(
        norm_mean=[0.0], norm_std=[1.0], description="RGB pixels 0..255 at the model's size; it normalises them itself"
    )
    writer.add_classification_output(
        writers.Labels().add(class_names, exported_filename=LABELS_FILE),
        name="probabilities",
        description="softmax probabilities, one per label, in labels.txt order",
    )
    written, _ = writer.populate()
    return bytes(written), {
        "written": True,
        "labels": f"{LABELS_FILE} (packed in model.tflite, the output's TENSOR_AXIS_LABELS)",
        "normalization": {"mean": [0.0], "std": [1.0]},
        "writer": f"mediapipe {importlib.metadata.version('mediapipe')}",
    }


# --------------------------------------------------------------------------------------------
# Metadata and CLI
# --------------------------------------------------------------------------------------------
def export_metadata(
    model_dir: Path,
    metadata: ModelMetadata,
    format: str,
    quantize: str,
    check: dict,
    tflite_metadata: dict | None = None,
) -> dict:
    size = list(metadata.image_size)
    pixels = f"float32 (N, {size[0]}, {size[1]}, 3), RGB pixels 0..255 at the model's size"
    if format == "savedmodel":
        inputs = {
            PIXELS_SIGNATURE: {"images": pixels},
            BYTES_SIGNATURE: {
                "image_bytes": "string (N,), encoded JPEG/PNG/GIF/BMP files, upright (EXIF orientation is not applied)"
            },
        }
    else:
        inputs = {"images": pixels.replace("float32", "uint8 (quantised)") if quantize == "int8" else pixels}
    return {
        "format": format,
        "quantize": quantize,
        "class_names": metadata.class_names,
        "image_size": size,
        "inputs": inputs,
        "outputs": {"probabilities": "(N, classes), in class_names / labels.txt order"},
        # The model's "not sure" threshold, so a deployment answers as the app and the predict command do.
        "min_confidence": metadata.min_confidence,
        "min_confidence_rule": RULE,
        "check": check,
        **({} if tflite_metadata is None else {"tflite_metadata": tflite_metadata}),
        "source_model": str(model_dir.resolve()),
        "trained_at": metadata.trained_at,
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
    }


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m classifier.export",
        description=(
            "Export a model folder as a TF Serving SavedModel or a TFLite model, checked against the Keras model."
        ),
        epilog="Example: python -m classifier.export models/cats_dogs --format tflite --quantize int8",
    )
    parser.add_argument("model_dir", help="model folder written by python -m classifier.train")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="savedmodel",
        help="savedmodel (TF Serving) or tflite (default: savedmodel)",
    )
    parser.add_argument(
        "--quantize",
        choices=QUANTIZE,
        default="none",
        help="tflite only: none, float16 weights, dynamic (int8 weights), int8 (full integer) (default: none)",
    )
    parser.add_argument(
        "--out",
        help="export folder to write (default: MODEL_DIR/export/savedmodel or MODEL_DIR/export/tflite_<quantize>)",
    )
    parser.add_argument(
        "--data",
        help=(
            "image folder (or built-in dataset name) to check and calibrate on (default: the training folder in the "
            "model's metadata)"
        ),
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        help="float exports (savedmodel, --quantize none): largest accepted |p_export - p_keras| (default: "
        + _defaults("max_difference", lambda key: key[0])
        + ")",
    )
    parser.add_argument(
        "--min-agreement",
        type=float,
        help="quantized exports: share of the check images whose top-1 answer must match the Keras model's, "
        f"near-ties aside (default: {_defaults('min_agreement', lambda key: key[1])}, and a few disagreements "
        "always allowed)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing export folder")
    add_trust_flag(parser)
    return parser


def _defaults(field: str, name) -> str:
    """The allowance table's `field` per export kind, for --help: e.g. "1e-05 savedmodel, 0.0001 tflite"."""
    rules = exportcheck.ALLOWANCES.items()
    return ", ".join(f"{getattr(rule, field)} {name(key)}" for key, rule in rules if getattr(rule, field) is not None)


@cli
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        export_model(
            args.model_dir,
            args.format,
            args.quantize,
            args.out,
            args.data,
            tolerance=args.tolerance,
            min_agreement=args.min_agreement,
            overwrite=args.overwrite,
            log=print,  # the check figures are the command's output
            trust_hub_handle=args.trust_hub_handle,
        )
    except exportcheck.ExportCheckError as error:
        say(f"error: {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

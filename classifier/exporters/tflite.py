"""The TFLite exporter (`--format tflite`, `--quantize none|float16|dynamic|int8`); the conversion itself is
classifier/model/tflite.py.

    model.tflite, labels.txt, export.json

`model.tflite` carries its labels (labels.txt, as the output's TENSOR_AXIS_LABELS file) and input normalisation
(mean 0, std 1: it takes pixels 0..255 and normalises inside) as TFLite metadata, written by MediaPipe's metadata
writer when MediaPipe is installed (`pip install -e ".[tflite-metadata]"`); without it export.json says why.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np

from ..errors import first_line
from ..model.artifacts import LABELS_FILE
from ..model.compat import mediapipe_metadata
from ..model.tflite import LiteRTModel, convert_tflite
from .check import Allowance, ExportJob, compare, pixels_input, predict_batches, sample_split, split_pixels

TFLITE_FILE = "model.tflite"
CALIBRATION_IMAGES = 200  # int8 representative images (TFLite's guide: a few hundred)
METADATA_EXTRA = 'pip install -e ".[tflite-metadata]" (the extra that installs mediapipe)'

# --quantize -> what the check allows (see check.py's docstring for why, the docs for the figures).
ALLOWANCES = {
    "none": Allowance(max_difference=1e-4),  # float32 on LiteRT's kernels (XNNPACK)
    "float16": Allowance(min_agreement=0.99, min_flips=1, max_mean_difference=0.01),
    "dynamic": Allowance(min_agreement=0.95, min_flips=2, max_mean_difference=0.1),
    "int8": Allowance(min_agreement=0.90, min_flips=3, max_mean_difference=0.1),
}


def write(job: ExportJob, folder: Path) -> dict:
    """model.tflite into `folder` (int8 calibrated on the training images), with its metadata where MediaPipe is
    installed; export.json's `tflite_metadata` entry."""
    size, quantize = job.metadata.image_size, job.options.quantize
    calibration = calibration_pixels(job.train_folder, size) if quantize == "int8" else None
    converted = convert_tflite(job.model, size, quantize, calibration, in_subprocess=job.options.convert_in_subprocess)
    tflite, tflite_metadata = with_tflite_metadata(converted, job.metadata.class_names)
    if not tflite_metadata["written"]:
        job.log(f"note: model.tflite has no TFLite metadata: {tflite_metadata['why']}")
    (folder / TFLITE_FILE).write_bytes(tflite)
    return {"tflite_metadata": tflite_metadata}


def check(job: ExportJob, folder: Path) -> dict[str, dict]:
    """Run model.tflite in the LiteRT interpreter and compare it with the Keras model."""
    probabilities = run_tflite(folder / TFLITE_FILE, job.samples.pixels)
    return {"tflite": compare(probabilities, job.reference, job.rule, job.targets)}


def inputs(size: tuple[int, int], quantize: str) -> dict:
    """export.json's "inputs": int8 takes uint8 pixels, the others float32."""
    pixels = pixels_input(size)
    return {"images": pixels.replace("float32", "uint8 (quantised)") if quantize == "int8" else pixels}


def calibration_pixels(train_folder: Path, size: tuple[int, int]) -> np.ndarray:
    """int8's calibration set: CALIBRATION_IMAGES training images through the training pipeline, (N, H, W, 3)."""
    return split_pixels(sample_split(train_folder, CALIBRATION_IMAGES), size)


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

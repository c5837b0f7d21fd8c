"""Export a model folder for serving: a TF Serving SavedModel or a TFLite model, checked before it lands.

    python -m classifier.export MODEL_DIR --format savedmodel|tflite [--quantize none|float16|dynamic|int8] [--out DIR]

Each export is a folder, written atomically (built beside `--out`, renamed into place when complete):

    savedmodel:  saved_model.pb, variables/, labels.txt, export.json
    tflite:      model.tflite, labels.txt, export.json

Right after writing, the export is loaded back the way its users load it (`tf.saved_model.load`,
the LiteRT interpreter), run on sample images and compared with the Keras model (see
`exportcheck`). The figures are printed and saved in `export.json`; a failed check is an error
(exit 1) and leaves nothing at `--out`.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from . import exportcheck
from ._tf import keras, tf
from .artifacts import (
    add_trust_flag,
    check_output_dir,
    load_model,
    read_metadata,
    staged_dir,
    versions,
    write_json,
    write_labels,
)
from .console import Log, say, silent
from .datasets import resolve_data
from .errors import ArgumentParser, UsageError, cli
from .images import decode_bytes_rgb_tf, resize
from .metadata import ModelMetadata
from .model import resize_antialias

FORMATS = ("savedmodel", "tflite")
QUANTIZE = ("none", "float16", "dynamic", "int8")
EXPORT_FILE = "export.json"
TFLITE_FILE = "model.tflite"
CHECK_IMAGES = 32  # images the check runs on
CALIBRATION_IMAGES = 200  # int8 representative images (TFLite's guide: a few hundred)
# Largest |p_export - p_keras| accepted, per (format, quantize); measured figures in benchmarks/README.md.
# SavedModel runs the same TensorFlow kernels as Keras; TFLite float32 runs different kernels
# (XNNPACK); float16 rounds weights to 11 significant bits; dynamic quantises weights to int8 and
# activations per batch; int8 quantises everything to 8 bits with ranges calibrated on real images.
TOLERANCES = {
    ("savedmodel", "none"): 1e-5,
    ("tflite", "none"): 1e-4,
    ("tflite", "float16"): 1e-2,
    ("tflite", "dynamic"): 1e-1,
    ("tflite", "int8"): 1e-1,
}
PIXELS_SIGNATURE, BYTES_SIGNATURE = "serving_default", "serving_bytes"


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
) -> ExportResult:
    """Write, check and move into place one export of `model_dir`; raises ExportCheckError on a failed check."""
    if format not in FORMATS:
        raise UsageError(f"--format {format}: choose one of {', '.join(FORMATS)}")
    if quantize not in QUANTIZE:
        raise UsageError(f"--quantize {quantize}: choose one of {', '.join(QUANTIZE)}")
    if format == "savedmodel" and quantize != "none":
        raise UsageError(f"--quantize {quantize}: only for --format tflite (a SavedModel keeps the float32 model)")
    if tolerance is not None and not tolerance > 0:
        raise UsageError(f"--tolerance {tolerance}: must be positive")
    model_dir = Path(model_dir)
    metadata = read_metadata(model_dir)
    out = check_output_dir(out or default_out(model_dir, format, quantize), overwrite, is_export_dir, "export folder")
    size = metadata.image_size
    train_folder, check_folder, why_none = _data_folders(metadata, data)
    if quantize == "int8" and train_folder is None:
        raise UsageError(
            f"--quantize int8 needs real images to calibrate on, and {why_none}; pass --data FOLDER with images like "
            "the training ones"
        )
    model = load_model(model_dir, trust_hub_handle)
    samples = exportcheck.image_samples(check_folder, size, CHECK_IMAGES, why_none)
    reference = model(samples.pixels, training=False).numpy()
    tolerance = tolerance or TOLERANCES[format, quantize]

    with staged_dir(out) as folder:
        if format == "savedmodel":
            write_savedmodel(model, size, folder)
            results = check_savedmodel(folder, samples, reference, tolerance)
        else:
            calibration = exportcheck.sample_split(train_folder, CALIBRATION_IMAGES) if quantize == "int8" else None
            (folder / TFLITE_FILE).write_bytes(convert_tflite(model, size, quantize, calibration))
            results = {
                "tflite": exportcheck.compare(run_tflite(folder / TFLITE_FILE, samples.pixels), reference, tolerance)
            }
        for name, figures in results.items():
            log(f"check {exportcheck.describe(name, figures)}")
        record = export_metadata(model_dir, metadata, format, quantize, exportcheck.check(results, samples.source))
        write_json(folder / EXPORT_FILE, record)
        write_labels(folder, metadata.class_names)
    log(f"exported {format}{'' if quantize == 'none' else f' ({quantize})'} to {out}, checked on {samples.source}")
    return ExportResult(out, record)


def is_export_dir(path: Path) -> bool:
    return (path / EXPORT_FILE).is_file()


def _data_folders(metadata: ModelMetadata, data: str | None) -> tuple[Path | None, Path | None, str]:
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

    archive.add_endpoint(PIXELS_SIGNATURE, from_pixels, [_pixels_spec(size)])
    archive.add_endpoint(BYTES_SIGNATURE, from_bytes, [tf.TensorSpec([None], tf.string, name="image_bytes")])
    archive.write_out(str(folder), verbose=False)


def _pixels_spec(size: tuple[int, int]):
    return tf.TensorSpec([None, *size, 3], tf.float32, name="images")


def check_savedmodel(folder: Path, samples: exportcheck.Samples, reference: np.ndarray, tolerance: float) -> dict:
    """Load the SavedModel as TF Serving would and compare both signatures with the Keras model."""
    loaded = tf.saved_model.load(str(folder))
    pixels = loaded.signatures[PIXELS_SIGNATURE](images=tf.constant(samples.pixels))["probabilities"].numpy()
    results = {PIXELS_SIGNATURE: exportcheck.compare(pixels, reference, tolerance)}
    upright = [i for i, data in enumerate(samples.encoded) if data is not None]
    if upright:
        encoded = tf.constant([samples.encoded[i] for i in upright])
        from_bytes = loaded.signatures[BYTES_SIGNATURE](image_bytes=encoded)["probabilities"].numpy()
        results[BYTES_SIGNATURE] = exportcheck.compare(from_bytes, reference[upright], tolerance)
    return results


# --------------------------------------------------------------------------------------------
# TFLite
# --------------------------------------------------------------------------------------------
def convert_tflite(model, size: tuple[int, int], quantize: str, calibration=None) -> bytes:
    """The model from pixels at its size to probabilities, as a TFLite flatbuffer.

    The model's Resizing layer is left out: at the model's size it is the identity (the check
    proves it), and models saved before the resize rule changed antialias, which has no TFLite
    kernel. int8 is full-integer with uint8 pixels in and uint8 probabilities out (for
    integer-only accelerators), calibrated on `calibration` (a Split of training images).
    """
    at_size = keras.Model(model.get_layer("backbone_scaling").input, model.output)
    with tempfile.TemporaryDirectory(prefix="classifier-tflite-") as saved:
        # Through a SavedModel: the converter freezes its variables into constants (a concrete
        # function of a Keras 3 model would keep them as uninitialised resource variables).
        archive = keras.export.ExportArchive()
        archive.track(at_size)
        archive.add_endpoint(
            PIXELS_SIGNATURE, lambda images: {"probabilities": at_size(images, training=False)}, [_pixels_spec(size)]
        )
        archive.write_out(saved, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=[PIXELS_SIGNATURE])
        _configure(converter, size, quantize, calibration)
        return converter.convert()


def _configure(converter, size: tuple[int, int], quantize: str, calibration) -> None:
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize == "int8":
        pixels = exportcheck.split_pixels(calibration, size)
        converter.representative_dataset = lambda: ([pixels[i : i + 1]] for i in range(len(pixels)))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8


def run_tflite(path: Path, pixels: np.ndarray) -> np.ndarray:
    """Run a TFLite model over a batch in the LiteRT interpreter, (de)quantising its input and output."""
    interpreter = Interpreter(model_path=str(path))
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(source["index"], [len(pixels), *source["shape"][1:]])
    interpreter.allocate_tensors()
    interpreter.set_tensor(source["index"], _quantize(pixels, source))
    interpreter.invoke()
    output = interpreter.get_tensor(target["index"])
    scale, zero_point = target["quantization"]
    return (output.astype(np.float32) - zero_point) * scale if scale else output


def _quantize(values: np.ndarray, details: dict) -> np.ndarray:
    scale, zero_point = details["quantization"]
    if not scale:
        return values.astype(details["dtype"])
    limits = np.iinfo(details["dtype"])
    return np.clip(np.round(values / scale + zero_point), limits.min, limits.max).astype(details["dtype"])


# --------------------------------------------------------------------------------------------
# Metadata and CLI
# --------------------------------------------------------------------------------------------
def export_metadata(model_dir: Path, metadata: ModelMetadata, format: str, quantize: str, check: dict) -> dict:
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
        "check": check,
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
        "--tolerance", type=float, help="largest accepted |p_export - p_keras| (default: per format: docs/export.md)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing export folder")
    add_trust_flag(parser)
    return parser


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
            args.tolerance,
            args.overwrite,
            log=print,  # the check figures are the command's output
            trust_hub_handle=args.trust_hub_handle,
        )
    except exportcheck.ExportCheckError as error:
        say(f"error: {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

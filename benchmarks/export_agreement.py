"""What each TFLite quantization changes in a trained model's answers, measured on real photos.

    python benchmarks/export_agreement.py MODEL_DIR [--data FOLDER] [--images 1000] [--quantize none float16 ...]

Converts the model folder as `python -m classifier.export` does (same conversion, same int8
calibration on up to 200 training images) and runs each file in the LiteRT interpreter on up to
`--images` photos of the data folder's validation set (default: the training folder recorded in
the model's metadata). Prints, per quantization: top-1 agreement with the Keras model, the
disagreements beyond near-ties and the Keras model's largest lead among them, max and mean
|p_export - p_keras|, accuracy of the Keras model and of the export against the folder labels,
file size, conversion time, and the verdict of the export check's own rule (registry.ALLOWANCES)
on this many photos. These are the figures the allowances are set from.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import machine

from classifier.exporters import check as exportcheck
from classifier.exporters.check import predict_batches
from classifier.exporters.export import model_data_folders
from classifier.exporters.registry import ALLOWANCES, QUANTIZE
from classifier.exporters.tflite import calibration_pixels, run_tflite
from classifier.model.artifacts import load_model, read_metadata
from classifier.model.tflite import convert_tflite


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--data", help="data folder (default: the training folder in the model's metadata)")
    parser.add_argument("--images", type=int, default=1000, help="validation photos to compare on (default: 1000)")
    parser.add_argument("--quantize", nargs="+", default=list(QUANTIZE), choices=QUANTIZE)
    args = parser.parse_args()

    metadata = read_metadata(args.model_dir)
    size = tuple(metadata["image_size"])
    train_folder, check_folder, why_none = model_data_folders(metadata, args.data)
    if check_folder is None:
        raise SystemExit(f"error: {why_none}; pass --data FOLDER")
    model = load_model(args.model_dir)
    samples = exportcheck.image_samples(check_folder, size, args.images)
    targets = samples.targets(metadata["class_names"])
    reference = predict_batches(lambda batch: model(batch, training=False), samples.pixels)
    print(f"{machine()}; {args.model_dir.name} ({metadata.get('backbone')}, {size[0]} px), {samples.source}")
    header = "quantize | agreement | beyond near-ties (largest lead) | max |dp| | mean |dp| | accuracy | MB | convert"
    print(header)
    for quantize in args.quantize:
        calibration = calibration_pixels(train_folder, size) if quantize == "int8" else None
        started = time.time()
        tflite = convert_tflite(model, size, quantize, calibration)
        seconds = time.time() - started
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.tflite"
            path.write_bytes(tflite)
            probabilities = run_tflite(path, samples.pixels)
        rule = ALLOWANCES["tflite", quantize]
        f = exportcheck.compare(probabilities, reference, rule, targets)
        decisive = [lead for lead in f["disagreement_leads"] if lead > exportcheck.NEAR_TIE]
        print(
            f"{quantize} | {f['images'] - f['top1_disagreements']}/{f['images']} ({f['top1_agreement']:.1%}) | "
            f"{f['decisive_disagreements']} ({max(decisive) if decisive else '-'}) | "
            f"{f['max_abs_difference']:.1e} | {f['mean_abs_difference']:.1e} | "
            f"{f['keras_accuracy']:.3f} -> {f['export_accuracy']:.3f} | {len(tflite) / 1e6:.2f} | {seconds:.0f} s | "
            f"{'pass' if f['passed'] else 'FAIL'}: {f['verdict']}"
        )


if __name__ == "__main__":
    main()

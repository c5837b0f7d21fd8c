"""Sample images for an export, and the check that the export answers what the Keras model does.

Samples come from the model's own data folder (recorded in `metadata.json` as `data.root`, or
`--data`): the validation folder when there is one, for the check; the training folder for int8
calibration. Without a data folder the check falls back to deterministic synthetic pixels (and
says so); int8 calibration cannot, since noise would calibrate the wrong activation ranges.

What an export may change is set per format and quantization (each exporter's `allowances`, gathered in
`registry.ALLOWANCES`):

- Float exports (SavedModel, TFLite `none`) run the same float32 model on other kernels: every
  probability must be within `max_difference` of the Keras model's, so any real bug shows.
- Quantized TFLite exports round weights (and for int8, activations), and on a narrow network
  such as MobileNetV2 0.35 that genuinely changes the answer on a few real photos, however the
  converter is set; a largest-difference rule is then set by the one photo nearest a tie and
  grows with the sample. They are judged on what users see: top-1 answers must agree with the
  Keras model's on at least `min_agreement` of the check images (never fewer than `min_flips`
  disagreements allowed, so a small folder is not failed by one photo), where a disagreement
  counts only when the Keras model's top class led its runner-up by more than `NEAR_TIE`; and
  the mean |p_export - p_keras| must stay under `max_mean_difference`, which catches a broken
  export (wrong input scaling, per-tensor quantization) even on synthetic pixels, where
  agreement means nothing and is not judged.

The allowances sit several times above what honest exports of the backbones measured, and far
below what broken ones do (wrong input scaling, labels in the wrong order, per-tensor
quantization flip about half the answers): the figures per backbone and quantization are in the
export documentation (the README's "Export" section), measured with `benchmarks/export_agreement.py`.
Every comparison also records the Keras model's and the export's accuracy against the check
images' folder labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._tf import tf
from ..console import Log
from ..data.images import check_image_file
from ..data.pipeline import Split, find_class_files, image_dataset, split_folders
from ..model.metadata import ModelMetadata

NEAR_TIE = 0.05  # a top-1 flip where the Keras model's own lead was at most this is a coin toss, not a disagreement


@dataclass(frozen=True)
class Allowance:
    """How far one kind of export may stray from the Keras model on the check images."""

    max_difference: float | None = None  # float exports: the largest |p_export - p_keras| accepted
    min_agreement: float | None = None  # quantized: the share of top-1 answers that must agree (near-ties aside)
    min_flips: int = 0  # quantized: disagreements allowed however few the images (a floor under the share)
    max_mean_difference: float | None = None  # quantized: the largest mean |p_export - p_keras| accepted

    def record(self) -> dict:
        """The rule as export.json states it."""
        if self.max_difference is not None:
            return {"max_abs_difference": self.max_difference}
        return {
            "min_top1_agreement": self.min_agreement,
            "min_allowed_disagreements": self.min_flips,
            "near_tie": NEAR_TIE,
            "max_mean_abs_difference": self.max_mean_difference,
        }

    def allowed_flips(self, images: int) -> int:
        # The epsilon keeps e.g. (1 - 0.95) * 40 = 1.9999999999999996 at 2.
        return max(self.min_flips, math.floor((1 - self.min_agreement) * images + 1e-9))


class ExportCheckError(Exception):
    """The export was written but does not predict like the Keras model; the message has the figures."""


@dataclass
class Samples:
    """Pixels at the model's size, the encoded files they came from (None for synthetic), their folder labels
    (None for synthetic pixels) and where they came from."""

    pixels: np.ndarray  # (N, H, W, 3) float32 0..255
    encoded: list[bytes | None]  # the file bytes of upright images (EXIF orientation 1), else None
    source: str  # e.g. "15 images from data/shapes/validation" or "16 synthetic images (...)"
    labels: list[str] | None = None  # each image's class folder name; None: synthetic pixels

    def targets(self, class_names: list[str]) -> np.ndarray | None:
        """Each image's index in `class_names` (-1 for a folder that is not one of the model's classes)."""
        if self.labels is None:
            return None
        return np.array([class_names.index(name) if name in class_names else -1 for name in self.labels])


@dataclass(frozen=True)
class ExportJob:
    """Everything one export's hooks read (an `Exporter`'s write and check): the model and its metadata, the options,
    the check images with the Keras model's answers on them, the rule they are judged by, and where to log."""

    model: Any  # the Keras model
    metadata: ModelMetadata
    options: Any  # export.ExportOptions
    samples: Samples
    reference: np.ndarray  # the Keras model's probabilities on samples.pixels
    targets: np.ndarray | None  # samples' true class indices (None: synthetic pixels)
    rule: Allowance
    train_folder: Path | None  # the training images (int8 calibrates on them); None: not on this machine
    log: Log


def pixels_input(size: tuple[int, int]) -> str:
    """export.json's description of a float pixels input at the model's size."""
    return f"float32 (N, {size[0]}, {size[1]}, 3), RGB pixels 0..255 at the model's size"


def predict_batches(predict, inputs: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """`predict(batch)` over `inputs` in batches of `batch_size`, so 200 check images need little memory."""
    return np.concatenate([np.asarray(predict(inputs[i : i + batch_size])) for i in range(0, len(inputs), batch_size)])


def data_folders(root: Path) -> tuple[Path, Path]:
    """(training folder, folder to check on: the validation folder, else the training one) of a data folder."""
    train, validation = split_folders(root)
    return train, validation or train


def sample_split(folder: Path, count: int) -> Split:
    """Up to `count` readable images spread evenly over the classes and over each class's sorted files; labels
    index the sorted class folders."""
    return _spread(find_class_files(folder), count)


def _spread(classes: dict[str, list[Path]], count: int) -> Split:
    per_class = max(1, -(-count // max(1, len(classes))))
    split = Split()
    for label, name in enumerate(sorted(classes)):
        files = classes[name]
        for index in np.unique(np.linspace(0, len(files) - 1, min(per_class, len(files))).round().astype(int)):
            orientation, problem = check_image_file(files[index])
            if problem is None:
                split.paths.append(str(files[index]))
                split.labels.append(label)
                split.orientations.append(orientation)
    return split.subset(range(min(count, len(split))))


def split_pixels(split: Split, image_size: tuple[int, int]) -> np.ndarray:
    """The split's images through the training pipeline (decode, EXIF, resize): (N, H, W, 3) float32."""
    batches = [images.numpy() for images, _ in image_dataset(split, image_size, batch_size=32)]
    return np.concatenate(batches) if batches else np.zeros((0, *image_size, 3), np.float32)


def image_samples(folder: Path | None, image_size: tuple[int, int], count: int, missing_reason: str = "") -> Samples:
    """Samples to check an export on: real images from `folder`, else deterministic synthetic ones."""
    classes = find_class_files(folder) if folder is not None else {}
    split = _spread(classes, count)
    if len(split):
        encoded = [
            Path(p).read_bytes() if o == 1 else None for p, o in zip(split.paths, split.orientations, strict=True)
        ]
        labels = [sorted(classes)[label] for label in split.labels]
        return Samples(split_pixels(split, image_size), encoded, f"{len(split)} images from {folder}", labels)
    # Integer pixels, so PNG-encoding them for the bytes signature is lossless.
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (count, *image_size, 3)).astype(np.float32)
    smooth = np.linspace(0, 255, image_size[1], dtype=np.float32)[None, None, :, None]
    pixels[: count // 2] = np.round((pixels[: count // 2] + smooth) / 2)  # half noise, half noisy gradients
    encoded = [tf.io.encode_png(p.astype(np.uint8)).numpy() for p in pixels]
    why = f"{folder}: no readable images" if folder is not None else missing_reason or "no data folder"
    return Samples(pixels, encoded, f"{count} synthetic images ({why})")


def compare(
    probabilities: np.ndarray, reference: np.ndarray, rule: Allowance, targets: np.ndarray | None = None
) -> dict:
    """Figures of one comparison with the Keras model's probabilities, and whether they pass `rule`.

    `targets` are the images' true class indices (-1: unknown), None for synthetic pixels: then top-1
    agreement is reported but not judged, and no accuracy is recorded.
    """
    probabilities, reference = np.asarray(probabilities, np.float64), np.asarray(reference, np.float64)
    # A NaN or infinite output (e.g. a broken conversion) is an infinite difference and a disagreement.
    finite = np.isfinite(probabilities).all(axis=1)
    difference = np.where(np.isfinite(probabilities), np.abs(probabilities - reference), np.inf)
    agree = (probabilities.argmax(1) == reference.argmax(1)) & finite
    ranked = np.sort(reference, axis=1)
    lead = ranked[:, -1] - ranked[:, -2] if reference.shape[1] > 1 else np.ones(len(reference))
    figures = {
        "images": int(len(reference)),
        "max_abs_difference": float(difference.max()) if difference.size else 0.0,
        "mean_abs_difference": float(difference.mean()) if difference.size else 0.0,
        "top1_agreement": float(agree.mean()) if agree.size else 1.0,
        "top1_disagreements": int(np.sum(~agree)),
        "decisive_disagreements": int(np.sum(~agree & (lead > NEAR_TIE))),
        # The Keras model's lead on each image whose answer changed, largest first: how confident it was.
        "disagreement_leads": sorted((round(float(m), 4) for m in lead[~agree]), reverse=True),
        **_accuracies(probabilities, reference, targets),
    }
    figures["passed"], figures["verdict"] = _judge(figures, rule, judge_agreement=targets is not None)
    return figures


def _accuracies(probabilities: np.ndarray, reference: np.ndarray, targets: np.ndarray | None) -> dict:
    """The Keras model's and the export's top-1 accuracy on the images whose folder is one of the model's classes."""
    known = targets >= 0 if targets is not None else np.zeros(len(reference), bool)
    if not known.any():
        return {"labelled_images": 0, "keras_accuracy": None, "export_accuracy": None}
    truth = targets[known]
    return {
        "labelled_images": int(known.sum()),
        "keras_accuracy": float(np.mean(reference[known].argmax(1) == truth)),
        "export_accuracy": float(np.mean(probabilities[known].argmax(1) == truth)),
    }


def _judge(figures: dict, rule: Allowance, judge_agreement: bool) -> tuple[bool, str]:
    """(passed, why) of one comparison under `rule`."""
    if rule.max_difference is not None:
        ok = figures["max_abs_difference"] <= rule.max_difference
        return (
            ok,
            f"max |p - p_keras| {figures['max_abs_difference']:.2e} {'<=' if ok else '>'} {rule.max_difference:.0e}",
        )
    mean_ok = figures["mean_abs_difference"] <= rule.max_mean_difference
    mean = (
        f"mean |p - p_keras| {figures['mean_abs_difference']:.2e} {'<=' if mean_ok else '>'} {rule.max_mean_difference}"
    )
    if not judge_agreement:
        return mean_ok, f"{mean}; top-1 agreement not judged on synthetic pixels"
    allowed = rule.allowed_flips(figures["images"])
    flips_ok = figures["decisive_disagreements"] <= allowed
    flips = (
        f"{figures['decisive_disagreements']} top-1 disagreements beyond near-ties "
        f"({'<=' if flips_ok else '>'} {allowed} allowed of {figures['images']})"
    )
    return mean_ok and flips_ok, f"{flips}, {mean}"


def describe(name: str, figures: dict) -> str:
    """One printable line of a comparison's figures: agreement, accuracy, then what was judged and the verdict."""
    agreeing = figures["images"] - figures["top1_disagreements"]
    accuracy = (
        f", accuracy {figures['keras_accuracy']:.3f} -> {figures['export_accuracy']:.3f} "
        f"on {figures['labelled_images']} labelled"
        if figures["labelled_images"]
        else ""
    )
    return (
        f"{name}: top-1 agreement {agreeing}/{figures['images']} ({figures['top1_agreement']:.1%}){accuracy}; "
        f"{figures['verdict']} -> {'passed' if figures['passed'] else 'FAILED'}"
    )


def check(results: dict[str, dict], source: str, rule: Allowance) -> dict:
    """Raise ExportCheckError unless every compared signature passed; else the record for export.json."""
    failed = [name for name, figures in results.items() if not figures["passed"]]
    if failed:
        lines = "; ".join(describe(name, results[name]) for name in failed)
        escape = "--tolerance" if rule.max_difference is not None else "--min-agreement"
        raise ExportCheckError(
            f"export check failed on {source}: {lines}. Nothing was written; try a less aggressive --quantize, "
            f"or pass {escape} if this difference is acceptable for your use"
        )
    return {
        "samples": source,
        "rule": rule.record(),
        "signatures": results,
        "passed": True,
    }

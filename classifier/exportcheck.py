"""Sample images for an export, and the check that the export predicts what the Keras model does.

Samples come from the model's own data folder (recorded in `metadata.json` as `data.root`, or
`--data`): the validation folder when there is one, for the check; the training folder for int8
calibration. Without a data folder the check falls back to deterministic synthetic pixels (and
says so); int8 calibration cannot, since noise would calibrate the wrong activation ranges.

An export passes when every probability is within the format's tolerance of the Keras model's and
top-1 agrees wherever the Keras model's top class beats its runner-up by more than twice the
tolerance (a closer call may legitimately flip inside the tolerance).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._tf import tf
from .data import Split, find_class_files, image_dataset, split_folders
from .images import check_image_file


class ExportCheckError(Exception):
    """The export was written but does not predict like the Keras model; the message has the figures."""


@dataclass
class Samples:
    """Pixels at the model's size, the encoded files they came from (None for synthetic), and where from."""

    pixels: np.ndarray  # (N, H, W, 3) float32 0..255
    encoded: list[bytes | None]  # the file bytes of upright images (EXIF orientation 1), else None
    source: str  # e.g. "15 images from data/shapes/validation" or "16 synthetic images (...)"


def data_folders(root: Path) -> tuple[Path, Path]:
    """(training folder, folder to check on: the validation folder, else the training one) of a data folder."""
    train, validation = split_folders(root)
    return train, validation or train


def sample_split(folder: Path, count: int) -> Split:
    """Up to `count` readable images spread evenly over the classes and over each class's sorted files."""
    classes = find_class_files(folder)
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
    split = sample_split(folder, count) if folder is not None else Split()
    if len(split):
        encoded = [
            Path(p).read_bytes() if o == 1 else None for p, o in zip(split.paths, split.orientations, strict=True)
        ]
        return Samples(split_pixels(split, image_size), encoded, f"{len(split)} images from {folder}")
    # Integer pixels, so PNG-encoding them for the bytes signature is lossless.
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (count, *image_size, 3)).astype(np.float32)
    smooth = np.linspace(0, 255, image_size[1], dtype=np.float32)[None, None, :, None]
    pixels[: count // 2] = np.round((pixels[: count // 2] + smooth) / 2)  # half noise, half noisy gradients
    encoded = [tf.io.encode_png(p.astype(np.uint8)).numpy() for p in pixels]
    why = f"{folder}: no readable images" if folder is not None else missing_reason or "no data folder"
    return Samples(pixels, encoded, f"{count} synthetic images ({why})")


def compare(probabilities: np.ndarray, reference: np.ndarray, tolerance: float) -> dict:
    """Figures of one comparison with the Keras model's probabilities, and whether they pass."""
    probabilities, reference = np.asarray(probabilities, np.float64), np.asarray(reference, np.float64)
    # A NaN or infinite output (e.g. a broken conversion) is an infinite difference and a disagreement.
    finite = np.isfinite(probabilities).all(axis=1)
    difference = np.where(np.isfinite(probabilities), np.abs(probabilities - reference), np.inf)
    agree = (probabilities.argmax(1) == reference.argmax(1)) & finite
    ranked = np.sort(reference, axis=1)
    margin = ranked[:, -1] - ranked[:, -2] if reference.shape[1] > 1 else np.ones(len(reference))
    decisive_flips = int(np.sum(~agree & (margin > 2 * tolerance)))
    max_difference = float(difference.max()) if difference.size else 0.0
    return {
        "images": int(len(reference)),
        "max_abs_difference": max_difference,
        "mean_abs_difference": float(difference.mean()) if difference.size else 0.0,
        "tolerance": tolerance,
        "top1_agreement": float(agree.mean()) if agree.size else 1.0,
        "top1_disagreements": int(np.sum(~agree)),
        "decisive_disagreements": decisive_flips,
        "passed": bool(max_difference <= tolerance and decisive_flips == 0),
    }


def describe(name: str, figures: dict) -> str:
    """One printable line of a comparison's figures."""
    agreeing = figures["images"] - figures["top1_disagreements"]
    return (
        f"{name}: max |p - p_keras| {figures['max_abs_difference']:.2e} (tolerance {figures['tolerance']:.0e}), "
        f"mean {figures['mean_abs_difference']:.2e}, top-1 agreement {agreeing}/{figures['images']} "
        f"({figures['top1_agreement']:.1%}) -> {'passed' if figures['passed'] else 'FAILED'}"
    )


def check(results: dict[str, dict], source: str) -> dict:
    """Raise ExportCheckError unless every compared signature passed; else the record for export.json."""
    failed = [name for name, figures in results.items() if not figures["passed"]]
    if failed:
        lines = "; ".join(describe(name, results[name]) for name in failed)
        raise ExportCheckError(
            f"export check failed on {source}: {lines}. Nothing was written; try a less aggressive --quantize, "
            "or pass --tolerance if this difference is acceptable for your use"
        )
    return {"samples": source, "signatures": results, "passed": True}

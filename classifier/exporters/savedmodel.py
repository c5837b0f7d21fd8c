"""The SavedModel exporter (`--format savedmodel`): a TF Serving SavedModel with a pixels and a bytes signature.

saved_model.pb, variables/, labels.txt, export.json
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._tf import keras, tf
from ..data.images import decode_bytes_rgb_tf, resize
from ..model.network import resize_antialias
from ..model.tflite import PIXELS_SIGNATURE, pixels_spec
from .check import Allowance, ExportJob, compare, pixels_input, predict_batches

BYTES_SIGNATURE = "serving_bytes"  # beside tflite.PIXELS_SIGNATURE, "serving_default"

# --quantize -> what the check allows: a SavedModel keeps the float32 model, run on TensorFlow's own kernels.
ALLOWANCES = {"none": Allowance(max_difference=1e-5)}


def write(job: ExportJob, folder: Path) -> dict:
    """The SavedModel into `folder`; no extra export.json entries."""
    write_savedmodel(job.model, job.metadata.image_size, folder)
    return {}


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


def check(job: ExportJob, folder: Path) -> dict[str, dict]:
    """Load the SavedModel as TF Serving would and compare both signatures with the Keras model."""
    samples, reference, rule, targets = job.samples, job.reference, job.rule, job.targets
    loaded = tf.saved_model.load(str(folder))
    from_pixels = loaded.signatures[PIXELS_SIGNATURE]
    pixels = predict_batches(lambda batch: from_pixels(images=tf.constant(batch))["probabilities"], samples.pixels)
    results = {PIXELS_SIGNATURE: compare(pixels, reference, rule, targets)}
    upright = [i for i, data in enumerate(samples.encoded) if data is not None]
    if upright:
        encoded = np.array([samples.encoded[i] for i in upright], dtype=object)
        from_bytes = loaded.signatures[BYTES_SIGNATURE]
        probabilities = predict_batches(
            lambda batch: from_bytes(image_bytes=tf.constant(batch))["probabilities"], encoded
        )
        results[BYTES_SIGNATURE] = compare(
            probabilities, reference[upright], rule, None if targets is None else targets[upright]
        )
    return results


def inputs(size: tuple[int, int], quantize: str) -> dict:
    """export.json's "inputs": one entry per signature."""
    return {
        PIXELS_SIGNATURE: {"images": pixels_input(size)},
        BYTES_SIGNATURE: {
            "image_bytes": "string (N,), encoded JPEG/PNG/GIF/BMP files, upright (EXIF orientation is not applied)"
        },
    }

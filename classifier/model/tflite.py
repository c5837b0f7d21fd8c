"""A model, or its frozen part, as a TFLite flatbuffer, and the LiteRT interpreter that runs one.

`classifier.export` writes the whole model this way (`--format tflite`, optionally quantized); the
`Predictor` serves the backbone this way (classifier/inference/runtime.py), where LiteRT's XNNPACK
kernels run the convolutions about twice as fast as TensorFlow's on a CPU (benchmarks/README.md).

Conversion starts after the model's Resizing layer: at the model's size it is the identity (the
export check proves it), and models saved before the resize rule changed antialias, which has no
TFLite kernel. So a flatbuffer takes float32 pixels 0..255 at the model's size.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
from typing import Iterator

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from .._tf import keras, quiet_stderr, tf
from .backbones import SCALING_LAYER

PIXELS_SIGNATURE = "serving_default"


def pixels_spec(size: tuple[int, int]):
    """Float pixels (N, H, W, 3), 0..255, at the model's size: every exported signature's image input."""
    return tf.TensorSpec([None, *size, 3], tf.float32, name="images")


def convert_tflite(
    model, size: tuple[int, int], quantize: str = "none", calibration: np.ndarray | None = None, output="probabilities"
) -> bytes:
    """`model` from pixels at its size to its output (named `output`), as a TFLite flatbuffer.

    int8 is full-integer with uint8 pixels in and uint8 outputs (for integer-only accelerators),
    calibrated on `calibration`, pixels (N, H, W, 3) of training images.
    """
    with tflite_converter(model, size, quantize, calibration, output) as converter:
        return converter.convert()


@contextlib.contextmanager
def tflite_converter(
    model, size: tuple[int, int], quantize: str, calibration: np.ndarray | None = None, output="probabilities"
) -> Iterator:
    """The TFLiteConverter `convert_tflite` uses, configured, for as long as its SavedModel exists."""
    at_size = keras.Model(model.get_layer(SCALING_LAYER).input, model.output)
    with tempfile.TemporaryDirectory(prefix="classifier-tflite-") as saved:
        # Through a SavedModel: the converter freezes its variables into constants (a concrete
        # function of a Keras 3 model would keep them as uninitialised resource variables).
        archive = keras.export.ExportArchive()
        archive.track(at_size)
        archive.add_endpoint(
            PIXELS_SIGNATURE, lambda images: {output: at_size(images, training=False)}, [pixels_spec(size)]
        )
        archive.write_out(saved, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=[PIXELS_SIGNATURE])
        _configure(converter, quantize, calibration)
        yield converter


def _configure(converter, quantize: str, calibration: np.ndarray | None) -> None:
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize == "int8":
        converter.representative_dataset = lambda: ([calibration[i : i + 1]] for i in range(len(calibration)))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8


class LiteRTModel:
    """A flatbuffer in the LiteRT interpreter: float pixels (N, H, W, 3) -> its float output, any N.

    Calls are serialised (an interpreter is not thread-safe); the tensors stay allocated for the last
    batch size, so a run of single images allocates once. Input and output are (de)quantised when the
    flatbuffer is int8."""

    def __init__(self, flatbuffer: bytes | None = None, path=None, threads: int | None = None):
        # XNNPACK (the default delegate) runs the float kernels on `threads` threads; None: LiteRT's choice.
        with quiet_stderr():  # "Created TensorFlow Lite XNNPACK delegate for CPU.", at the first allocation
            self._interpreter = Interpreter(
                model_content=flatbuffer, model_path=None if path is None else str(path), num_threads=threads
            )
            self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        self._batch = self._input["shape"][0]
        self._lock = threading.Lock()

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        with self._lock:
            if len(pixels) != self._batch:
                self._interpreter.resize_tensor_input(self._input["index"], [len(pixels), *self._input["shape"][1:]])
                self._interpreter.allocate_tensors()
                self._batch = len(pixels)
            self._interpreter.set_tensor(self._input["index"], _quantize(pixels, self._input))
            self._interpreter.invoke()
            output = self._interpreter.get_tensor(self._output["index"])
        scale, zero_point = self._output["quantization"]
        return (output.astype(np.float32) - zero_point) * scale if scale else output


def _quantize(values: np.ndarray, details: dict) -> np.ndarray:
    scale, zero_point = details["quantization"]
    if not scale:
        return values.astype(details["dtype"], copy=False)  # float pixels as they are: set_tensor copies them
    limits = np.iinfo(details["dtype"])
    return np.clip(np.round(values / scale + zero_point), limits.min, limits.max).astype(details["dtype"])

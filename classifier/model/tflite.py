"""A model, or its frozen part, as a TFLite flatbuffer, and the LiteRT interpreter that runs one.

`classifier.export` writes the whole model this way (`--format tflite`, optionally quantized); the
`Predictor` serves the backbone this way (classifier/inference/runtime.py), where LiteRT's XNNPACK
kernels run the convolutions about twice as fast as TensorFlow's on a CPU (benchmarks/README.md).

Conversion starts after the model's Resizing layer ("resize"): at the model's size it is the identity (the
export check proves it), and models saved before the resize rule changed antialias, which has no
TFLite kernel. So a flatbuffer takes float32 pixels 0..255 at the model's size; a test-time flips model's
(model/flips.py) includes the mirror and the averaging.

The converter's C++ step holds Python's GIL from its start to its end (2 s for InceptionV3 to mixed7
on 2 cores), pausing every other thread of the process; a server converts with `in_subprocess`, in a
child process (`ConverterProcess`) that runs this module's `main` on the SavedModel the parent wrote.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Iterator

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from .._tf import keras, quiet_stderr, tf
from ..errors import first_line
from .network import RESIZE_LAYER

PIXELS_SIGNATURE = "serving_default"
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding the `classifier` package
CONVERT_TIMEOUT = 900  # seconds: far beyond the slowest backbone's conversion (seconds on 2 cores)
CHILD_NICENESS = 10  # the converter child's scheduling priority (0 normal, 19 lowest)
CHILD_ERROR = "conversion failed: "  # how the child marks its error line among TensorFlow's own


def pixels_spec(size: tuple[int, int]):
    """Float pixels (N, H, W, 3), 0..255, at the model's size: every exported signature's image input."""
    return tf.TensorSpec([None, *size, 3], tf.float32, name="images")


def convert_tflite(
    model,
    size: tuple[int, int],
    quantize: str = "none",
    calibration: np.ndarray | None = None,
    output="probabilities",
    in_subprocess: bool = False,
) -> bytes:
    """`model` from pixels at its size to its output (named `output`), as a TFLite flatbuffer.

    int8 is full-integer with uint8 pixels in and uint8 outputs (for integer-only accelerators),
    calibrated on `calibration`, pixels (N, H, W, 3) of training images.

    `in_subprocess`: the converter itself runs in a child process (`ConverterProcess`), for a server: its C++ step
    holds the GIL from start to end (seconds for a big backbone), which would pause every other thread. The child
    starts first, so that its TensorFlow import runs while this process writes the SavedModel.
    """
    with contextlib.ExitStack() as stack:
        child = stack.enter_context(ConverterProcess()) if in_subprocess else None
        with _saved_model(model, size, output) as saved:
            if child is not None:
                return child.convert(saved, quantize, calibration)
            return _converter(saved, quantize, calibration).convert()


def convert_frozen(model, size: tuple[int, int], output="features", in_subprocess: bool = False) -> bytes:
    """`model` from pixels at its size to its output (named `output`) as a float TFLite flatbuffer, converted from
    its traced graph with the variables frozen into constants: what `convert_tflite` makes, without writing a
    SavedModel and reading it back (about 3-5x faster: EfficientNet-B0 at 224 px 4 s against 25 s, 2 cores). For
    a model's frozen part in LiteRT (model/litert.py); the flatbuffer has no named signature (`LiteRTModel` reads
    its one input and output), so exported files keep `convert_tflite`'s. `in_subprocess`: the frozen GraphDef
    goes to a `ConverterProcess`, which converts it (its C++ step holds the GIL: never a server's)."""
    with contextlib.ExitStack() as stack:
        child = stack.enter_context(ConverterProcess()) if in_subprocess else None  # imports TF while we trace
        frozen = _frozen(model, size, output)
        if child is None:
            return tf.lite.TFLiteConverter.from_concrete_functions([frozen]).convert()
        graph = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="classifier-tflite-"))) / "graph.pb"
        graph.write_bytes(frozen.graph.as_graph_def().SerializeToString())
        request = {"graph": str(graph), "input": frozen.inputs[0].name, "output": frozen.outputs[0].name}
        return child.send(request, graph.parent)


def _frozen(model, size: tuple[int, int], output: str):
    """`model` at its size as a concrete function whose variables are constants."""
    # TensorFlow's own freezing (tf.lite uses it too): Keras 3 variables are resource variables a concrete function
    # only captures, which the converter would otherwise keep as uninitialised inputs.
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    at_size = _at_size(model)
    function = tf.function(lambda images: {output: at_size(images, training=False)})
    return convert_variables_to_constants_v2(function.get_concrete_function(pixels_spec(size)))


def _graph_converter(request: dict):
    """The converter of a frozen GraphDef file (`convert_frozen`'s, in the child): its input and output by name."""
    graph_def = tf.compat.v1.GraphDef.FromString(Path(request["graph"]).read_bytes())
    imported = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
    element = imported.graph.as_graph_element
    function = imported.prune(feeds=[element(request["input"])], fetches=[element(request["output"])])
    return tf.lite.TFLiteConverter.from_concrete_functions([function])


def _at_size(model):
    """`model` from pixels at its size: after its Resizing layer ("resize") where it has one (a combined model's part
    takes them as its input)."""
    resize = next((layer for layer in model.layers if layer.name == RESIZE_LAYER), None)
    return keras.Model(model.input if resize is None else resize.output, model.output)


@contextlib.contextmanager
def tflite_converter(
    model, size: tuple[int, int], quantize: str, calibration: np.ndarray | None = None, output="probabilities"
) -> Iterator:
    """The TFLiteConverter `convert_tflite` uses, configured, for as long as its SavedModel exists."""
    with _saved_model(model, size, output) as saved:
        yield _converter(saved, quantize, calibration)


@contextlib.contextmanager
def _saved_model(model, size: tuple[int, int], output: str) -> Iterator[Path]:
    """A temporary SavedModel of `model` from pixels at its size (`_at_size`) to `output`."""
    at_size = _at_size(model)
    with tempfile.TemporaryDirectory(prefix="classifier-tflite-") as work:
        saved = Path(work) / "saved"
        # Through a SavedModel: the converter freezes its variables into constants (a concrete
        # function of a Keras 3 model would keep them as uninitialised resource variables).
        archive = keras.export.ExportArchive()
        archive.track(at_size)
        archive.add_endpoint(
            PIXELS_SIGNATURE, lambda images: {output: at_size(images, training=False)}, [pixels_spec(size)]
        )
        archive.write_out(str(saved), verbose=False)
        yield saved


def _converter(saved: Path, quantize: str, calibration: np.ndarray | None):
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved), signature_keys=[PIXELS_SIGNATURE])
    _configure(converter, quantize, calibration)
    return converter


class ConverterProcess:
    """A child process (`python -m classifier.model.tflite`, this module's `main`) that imports TensorFlow as soon
    as it starts, then converts the one SavedModel `convert` sends it; killed on leaving the `with` block."""

    def __init__(self):
        # The child imports this very package, wherever it was imported from (an editable install, a checkout).
        path = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))
        self._process = subprocess.Popen(
            [sys.executable, "-m", __name__],
            env={**os.environ, "PYTHONPATH": path},
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        if hasattr(os, "setpriority"):  # background work: the CPU goes to the parent's requests first
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, self._process.pid, CHILD_NICENESS)

    def __enter__(self) -> "ConverterProcess":
        return self

    def __exit__(self, *exc) -> None:
        if self._process.poll() is None:  # not sent anything (the SavedModel failed), or stopped by a timeout
            self._process.kill()
        self._process.communicate()  # reaps it and closes its pipes

    def convert(self, saved: Path, quantize: str = "none", calibration: np.ndarray | None = None) -> bytes:
        """The SavedModel `saved` as a flatbuffer; a RuntimeError with the child's error line when it fails, or when
        it runs past `CONVERT_TIMEOUT`."""
        request = {"saved": str(saved), "quantize": quantize}
        if calibration is not None:
            request["calibration"] = str(saved.parent / "calibration.npy")
            np.save(request["calibration"], calibration)
        return self.send(request, saved.parent)

    def send(self, request: dict, work: Path) -> bytes:
        """The flatbuffer the child makes of `request` (a SavedModel's, or a frozen graph's: `main`), written in the
        folder `work`; a RuntimeError as `convert` says."""
        request = {**request, "out": str(work / "converted.tflite")}
        try:
            _, errors = self._process.communicate(json.dumps(request) + "\n", timeout=CONVERT_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"the converter ran longer than {CONVERT_TIMEOUT} s and was stopped") from None
        out = Path(request["out"])
        if self._process.returncode != 0 or not out.is_file():
            said = [line for line in errors.splitlines() if line.startswith(CHILD_ERROR)]
            code = self._process.returncode
            raise RuntimeError(said[-1][len(CHILD_ERROR) :] if said else f"the converter exited with {code}")
        return out.read_bytes()


def main() -> int:
    """The child of a `ConverterProcess`: TensorFlow is imported (with this module); then one JSON request on stdin
    (saved, out, quantize, calibration: a .npy file or absent; or graph, input, output, out: a frozen graph's), none
    at all when the parent gave up. Its one error line goes to stderr, marked with CHILD_ERROR, with exit status 1."""
    line = sys.stdin.readline()
    if not line:
        return 0
    request = json.loads(line)
    try:
        if "graph" in request:
            converter = _graph_converter(request)
        else:
            pixels = np.load(request["calibration"]) if "calibration" in request else None
            converter = _converter(Path(request["saved"]), request["quantize"], pixels)
        flatbuffer = converter.convert()
        Path(request["out"]).write_bytes(flatbuffer)
    except Exception as error:  # noqa: BLE001 - the converter raises many kinds; the parent says which
        print(f"{CHILD_ERROR}{first_line(error)}", file=sys.stderr)
        return 1
    return 0


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


if __name__ == "__main__":
    sys.exit(main())

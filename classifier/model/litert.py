"""A model's frozen part in LiteRT: converted once per distinct frozen part, checked, cached. Serving
(classifier/inference/runtime.py) and training's backbone pass (classifier/training/engine.py) both use it.

The frozen part (`network.feature_extractor`: the backbone's scaling, the backbone, the pooling: pixels at the
model's size -> feature vector) is most of a prediction's and of a feature pass's time, and LiteRT's XNNPACK kernels
run it faster than TensorFlow's on a CPU, with the same features to float rounding (`FEATURE_TOLERANCE`; figures:
benchmarks/README.md).

Converting takes seconds (InceptionV3 to mixed7 at 150 px: 5 s here, 13 s in a child process that imports
TensorFlow first; 2 cores: benchmarks/README.md), so it is done once per
distinct frozen part and kept in ~/.cache/classifier/litert/ (under $XDG_CACHE_HOME when set). The
key hashes the part's architecture and weights and the TensorFlow and LiteRT versions: a retrain on
the same frozen backbone (only the head changes) finds the conversion, a fine-tuned backbone gets its own.

Nothing is read from a model folder: the flatbuffer is made here from the network Keras built or loaded, and
checked against TensorFlow on a probe batch before it is used or cached; the cache file is written
atomically. The cache is trusted no more than that: an entry is checked on the probe batch at every
load too (an entry planted with other weights, or made for another size, is never used: it is
converted again and replaced, and the `log` says so). Where conversion or the check fails, the caller
runs TensorFlow and the `log` says why.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from .._tf import keras, tf
from ..atomic import write_atomic
from ..config import user_cache_dir
from ..console import Log, say
from ..errors import first_line
from .tflite import LiteRTModel, convert_frozen

CACHE_FORMAT = 1  # bump when what a cache entry holds changes, so older entries are not used
FEATURE_TOLERANCE = 1e-4  # largest accepted |LiteRT - TensorFlow| on the probe, relative to its largest feature
PROBE_IMAGES = 2
# The modules of the layers Keras ships (Conv2D, BatchNormalization, Rescaling...; ConvNeXt's LayerScale lives with its
# application): Keras' own code, so their settings, weights and the Keras version in the key say what they compute.
BUILT_IN = ("keras.src.layers.", "keras.src.applications.")
SERVING = "predicting with TensorFlow"  # what runs instead, as `litert_features`' notes say by default


def litert_features(
    extractor,
    size: tuple[int, int],
    log: Log = say,
    convert: bool = True,
    in_subprocess: bool = False,
    instead: str = SERVING,
) -> LiteRTModel | None:
    """`extractor` (a model's frozen part) in LiteRT: from the cache, else (when `convert`) converted, checked and
    cached now; None where it is not cached and not to be converted, or (saying why through `log`, in a note that
    starts with `instead`: what runs then) cannot run in LiteRT.

    A cache entry is checked against TensorFlow on the probe batch at every load, like a fresh conversion: one
    that does not load, does not take the model's input (another size) or computes other features (other weights)
    is not used; it is converted again and replaced, with one line through `log`. `in_subprocess`: the converter
    runs in a child process (tflite.ConverterProcess), so that it never holds this process's GIL (a server)."""
    unidentified = _unidentified(extractor)
    if unidentified:
        log(f"note: {instead}: LiteRT's cache cannot identify the backbone's {', '.join(unidentified)}")
        return None
    path = cache_dir() / f"{cache_key(extractor, size)}.tflite"
    if path.is_file():
        try:
            features = LiteRTModel(path=path, threads=cpu_count())
            check(features, extractor, size)
            return features
        except Exception as error:  # noqa: BLE001 - damaged, planted or for another size: LiteRT raises many kinds
            then = "converting again" if convert else instead
            log(f"note: {path}: the cached conversion cannot be used ({first_line(error)}); {then}")
    if not convert:
        return None
    log("converting the model's backbone for LiteRT, once on this machine (seconds on 2 cores)")
    started = time.monotonic()
    try:
        flatbuffer = convert_frozen(extractor, size, output="features", in_subprocess=in_subprocess)
        features = LiteRTModel(flatbuffer, threads=cpu_count())
        check(features, extractor, size)
    except Exception as error:  # noqa: BLE001 - the converter raises many kinds; TensorFlow still serves
        log(f"note: {instead}: the backbone does not run in LiteRT ({first_line(error)})")
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, flatbuffer)  # replaces an entry that failed its check in one step
        log(f"converted in {time.monotonic() - started:.0f} s; cached as {path}")
    except OSError as error:  # a read-only home: serve the conversion all the same
        log(f"note: the conversion is not cached ({first_line(error)}); the next start converts again")
    return features


def check(features: LiteRTModel, extractor, size: tuple[int, int]) -> None:
    """Raise ValueError unless `features` computes what `extractor` does on a probe batch, to float rounding (a
    flatbuffer made for another input size raises LiteRT's own error on the probe)."""
    probe = np.random.default_rng(0).uniform(0, 255, (PROBE_IMAGES, *size, 3)).astype(np.float32)
    expected = extractor(probe, training=False).numpy()
    got = features(probe)
    if got.shape != expected.shape:  # checked first: numpy would broadcast a (N, 1) output against (N, D)
        raise ValueError(f"LiteRT's features have the shape {got.shape}, TensorFlow's {expected.shape}")
    difference = float(np.max(np.abs(got - expected)))
    allowed = FEATURE_TOLERANCE * max(float(np.max(np.abs(expected))), 1e-3)
    if not difference <= allowed:
        raise ValueError(f"LiteRT's features differ from TensorFlow's by {difference:.2e} (at most {allowed:.2e})")


def cache_dir() -> Path:
    return user_cache_dir("litert")


def cache_key(extractor, size: tuple[int, int]) -> str:
    """A hash of what the conversion depends on: the part's layers and weights, the size and the versions. Layer
    and weight names are left out: Keras numbers unnamed layers per process (InceptionV3's conv2d_95 in a process
    that built one before), and the same network must find its conversion whatever its names."""
    digest = hashlib.sha256()
    described = {
        "format": CACHE_FORMAT,
        "size": list(size),
        "layers": _layers(extractor),
        "tensorflow": tf.__version__,
        "litert": importlib.metadata.version("ai-edge-litert"),
    }
    digest.update(json.dumps(described, sort_keys=True, default=str).encode())
    for weight in extractor.weights:
        values = np.ascontiguousarray(weight.numpy())
        digest.update(f"{values.dtype} {values.shape}".encode())
        digest.update(values.data)
    return digest.hexdigest()[:32]


def _layers(model) -> list:
    """Every layer in order, nested models' layers in their place: its class, its settings but its name, and
    its output shape."""
    rows = []
    for layer in _flat_layers(model):
        settings = {key: value for key, value in layer.get_config().items() if key != "name"}
        rows.append([type(layer).__name__, settings, str(layer.output.shape)])
    return rows


def _flat_layers(model) -> Iterator:
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _flat_layers(layer)
        else:
            yield layer


def depthwise_layers(model) -> int:
    """How many depthwise convolutions `model` runs: where XNNPACK outruns TensorFlow's CPU kernels most (the
    MobileNet and EfficientNet families; figures: benchmarks/README.md, "The feature pass in LiteRT")."""
    return sum(isinstance(layer, keras.layers.DepthwiseConv2D) for layer in _flat_layers(model))


def _unidentified(model) -> list[str]:
    """Layers whose settings may not say what they compute: any but Keras' built-in layers (a hub: backbone's
    SavedModel, Keras' own TFSMLayer). Two such networks with the same weights could differ, so `cache_key`
    could not tell their conversions apart."""
    return sorted(
        {type(layer).__name__ for layer in _flat_layers(model) if not type(layer).__module__.startswith(BUILT_IN)}
    )


def cpu_count() -> int:
    """The cores this process may run on (os.cpu_count() counts the machine's): XNNPACK's thread count."""
    return len(os.sched_getaffinity(0))

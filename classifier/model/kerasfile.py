"""A Keras model file (`.keras`) as a backbone: checked, loaded in safe mode and rebuilt at the model's input size.

`--backbone keras:FILE.keras` (and the efficientnet_lite2 entry, whose network only comes as such a file) builds on
`network(path, input_shape, weights)`. The file must hold Keras' built-in layers only: before anything of it is
deserialised, `check_file` reads its `config.json` (a `.keras` file is a zip of config.json, metadata.json and
model.weights.h5) and refuses, in one line naming the file and the class, any object that is not Keras' own (a custom
layer, a custom function) and any Lambda or TFSMLayer (code or a TensorFlow graph inside the file). It then loads with
`keras.models.load_model(FILE, compile=False, safe_mode=True)`, and the loaded layers are checked again by class.

The network keeps its own input scaling inside (so its model-side preprocessing is an identity layer) and is rebuilt
at the chosen input size by `keras.models.clone_model` on a fixed-size input, which also says (one line) when the
network cannot take that size. `weights`: "imagenet" keeps the file's own weights, None a fresh random init of its
architecture (--weights none), a path loads a weights file into it.

The loaded file is kept per process for its path, size and modification time (resolve() reads its input size, the
build reads the network), so a file is read once however many models are built on it.
"""

from __future__ import annotations

import functools
import json
import os
import warnings
import zipfile
from pathlib import Path
from typing import Iterator

from .._tf import keras
from ..errors import UsageError, first_line
from ..files import open_regular, read_bounded
from .metadata import KERAS_PREFIX

CONFIG_MEMBER = "config.json"  # the architecture inside a .keras zip
MAX_CONFIG_BYTES = 64 << 20  # a config.json larger than this is no model we would load (a zip bomb's, say)
DEFAULT_SIZE = 224  # --image-size for a keras: backbone that takes any size (the usual ImageNet size)
MIN_SIZE = 1  # the smallest size resolve() lets through; the build says when a network cannot take a size
# Built-in classes that run code or a TensorFlow graph from the file: refused like a custom layer.
CODE_CLASSES = {
    "Lambda": "a Lambda layer (Python code)",
    "__lambda__": "a Python lambda",
    "TFSMLayer": "a TFSMLayer (a TensorFlow SavedModel's graph)",
}
# Serialisation markers Keras writes for values (tensors, tuples, arrays): not objects of any module.
MARKERS = {"__keras_tensor__", "__tensor__", "__numpy__", "__bytes__", "__tuple__", "__typespec__", "__ellipsis__"}


def what(path: str | Path) -> str:
    """How messages name a keras: backbone: the option as the user wrote it."""
    return f"--backbone {KERAS_PREFIX}{path}"


def check_file(path: Path, label: str) -> None:
    """UsageError in one line, starting with `label`, unless `path` is a readable .keras file of Keras' built-in
    layers only."""
    try:
        with open_regular(path) as file, zipfile.ZipFile(file) as archive:
            info = archive.getinfo(CONFIG_MEMBER)
            if info.file_size > MAX_CONFIG_BYTES:
                raise ValueError(f"its {CONFIG_MEMBER} is larger than {MAX_CONFIG_BYTES >> 20} MB")
            with archive.open(info) as member:
                config = json.loads(read_bounded(member, path, MAX_CONFIG_BYTES))
    except (OSError, zipfile.BadZipFile, KeyError, ValueError) as error:
        raise UsageError(
            f"{label}: not a Keras model file ({first_line(error)}); give a .keras file model.save wrote"
        ) from None
    offending = next(_foreign_objects(config), None)
    if offending is not None:
        raise UsageError(
            f"{label}: refused, it holds {offending}; a keras: backbone may hold Keras' built-in layers only "
            "(no custom layer, no Lambda), since loading it would run code from the file"
        )


def _foreign_objects(config) -> Iterator[str]:
    """Each object in a .keras config that is not one of Keras' own, in words ("the custom layer MyLayer")."""
    if isinstance(config, list):
        for item in config:
            yield from _foreign_objects(item)
        return
    if not isinstance(config, dict):
        return
    name = config.get("class_name")
    if isinstance(name, str) and "config" in config:  # a serialised object: {"module", "class_name", "config", ...}
        module = str(config.get("module") or "")
        registered = config.get("registered_name")
        if name in CODE_CLASSES:
            yield CODE_CLASSES[name]
        elif name not in MARKERS and (module.split(".")[0] != "keras" or registered not in (None, name)):
            yield f"the custom class {registered or name}" + (f" (from {module})" if module else "")
    for value in config.values():
        yield from _foreign_objects(value)


def load(path: str | Path, label: str | None = None):
    """The Keras model in `path`, checked (`check_file`), loaded in safe mode and checked again; read once per
    process while the file's size and modification time stay the same. Errors start with `label` (default: the
    --backbone keras: option)."""
    label = label or what(path)
    path = Path(os.path.abspath(path))
    try:
        stat = os.stat(path)
    except OSError:
        raise UsageError(f"{label}: no such file (give the path of a .keras file that model.save wrote)") from None
    return _load(path, stat.st_size, stat.st_mtime_ns, label)


@functools.lru_cache(maxsize=2)
def _load(path: Path, size: int, mtime_ns: int, label: str):
    check_file(path, label)
    try:
        model = keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # noqa: BLE001 - Keras raises many kinds for a damaged or foreign file
        raise UsageError(f"{label}: Keras cannot load it ({first_line(error)})") from None
    if not isinstance(model, keras.Model):
        raise UsageError(f"{label}: holds a {type(model).__name__}, not a Keras model")
    for layer in _layers(model):
        module, name = type(layer).__module__, type(layer).__name__
        if not module.startswith("keras.") or name in CODE_CLASSES:
            raise UsageError(f"{label}: refused, it holds the layer class {name}; built-in layers only")
    if len(model.inputs) != 1 or len(model.outputs) != 1 or model.inputs[0].shape[-1] not in (3, None):
        raise UsageError(f"{label}: not an image network (one input of RGB images, one output)")
    return model


def _layers(layer) -> Iterator:
    """Every layer of a model, nested models' too."""
    for inner in getattr(layer, "layers", []):
        yield inner
        yield from _layers(inner)


def fixed_size(path: str | Path, label: str | None = None) -> int | None:
    """The square input size the file's network was saved with, or None when it takes any size."""
    height, width = load(path, label).inputs[0].shape[1:3]
    return height if height is not None and height == width else None


def network(path: str | Path, input_shape: tuple[int, int, int], weights: str | None, label: str | None = None):
    """The file's network rebuilt for a fixed `input_shape`: with its own weights ("imagenet"), a fresh random init
    (None) or the weights file `weights`; UsageError starting with `label` when it cannot take that size or
    weights."""
    label = label or what(path)
    model = load(path, label)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Keras' notes on unbuilt or renamed layers: nothing for the user
            rebuilt = keras.models.clone_model(model, input_tensors=keras.Input(input_shape))
        if weights == "imagenet":
            rebuilt.set_weights(model.get_weights())  # a Dense after Flatten takes its own size only
    except Exception as error:  # noqa: BLE001 - a layer refusing the size raises whatever it raises
        raise UsageError(
            f"{label}: does not take {input_shape[0]}x{input_shape[1]} images ({first_line(error)}); "
            "choose another --image-size"
        ) from None
    if weights not in ("imagenet", None):
        try:
            rebuilt.load_weights(weights)
        except Exception as error:  # noqa: BLE001 - Keras raises many kinds for a file of another network
            raise UsageError(f"--weights {weights}: cannot load into {label} ({first_line(error)})") from None
    return rebuilt

"""`--backbone hub:HANDLE`: a TF-Hub image feature-vector model as a Keras 3 layer, carried inside the model folder.

`hub.KerasLayer` belongs to tf_keras and cannot sit in a Keras 3 model, so `HubFeatures` wraps a
SavedModel in a small layer of our own. At training, HANDLE is a local SavedModel folder or a URL
that tensorflow_hub downloads (and caches under TFHUB_CACHE_DIR). `artifacts.save_model_dir` copies
that SavedModel into the model folder as `hub/`, and the layer's saved config names `hub`, a path
relative to the folder: a model folder needs nothing outside itself, and serving needs no tensorflow_hub.

Loading a SavedModel runs its TensorFlow graph (file reads and writes are ops too), which is why
Keras' safe mode refuses `TFSMLayer`. So this layer loads only inside `loading_from(model_dir)`,
the context `artifacts.load_model` sets around `keras.models.load_model`, and there only a handle
that stays inside that folder: a URL, an absolute path, `..`, or a symlink leading out is refused
with a UsageError naming the folder, before anything is fetched or opened, unless the caller trusts
the folder (`trust_hub_handle=True`, `--trust-hub-handle` on the commands), which loads the handle
as written. Deserialising the layer anywhere else (plain `keras.models.load_model`) is refused.

The `hub/` a folder carries is a graph its author chose, and loading or calling it runs that graph:
so it loads only if it uses no side-effecting op (files, Python, printing, tf.data, other processes:
the denylist and the walk through its functions are in hubcheck.py), checked before anything is
loaded. A hub handle used for training is held to the same rule, so training never writes a model
folder that serving would refuse. `--trust-hub-handle` skips both checks.

The hub model stays frozen: its variables are not Keras variables, and TF-Hub feature vectors take
images scaled to [0, 1], which the Rescaling layer in front of it provides.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Iterator

from .._tf import keras, tf
from ..errors import UsageError, first_line
from .hubcheck import check_ops

HUB_MIN_SIZE = 32  # TF-Hub image models accept any size; below ~32 px their pooling stacks run out of pixels
HUB_DEFAULT_SIZE = 224  # the size nearly every TF-Hub image feature vector was trained at
BUNDLE_DIR = "hub"  # the SavedModel's place inside a model folder; what the saved layer config names
TF1_HUB_FILE = "tfhub_module.pb"  # marks the legacy TF1 Hub format, which loads with tags=[] (as hub.load does)
TRUST_ADVICE = "pass --trust-hub-handle only if you trust this folder"
TRAINING_ADVICE = "predict and the app would refuse a model folder carrying it; use a feature vector that only computes"


@dataclass(frozen=True)
class _Loading:
    folder: Path  # the model folder being loaded
    trust: bool  # load the handle wherever it points


_loading: contextvars.ContextVar[_Loading | None] = contextvars.ContextVar("classifier_hub_loading", default=None)


@contextlib.contextmanager
def loading_from(model_dir: str | Path, trust: bool = False) -> Iterator[None]:
    """Within this block, hub layers being deserialised belong to `model_dir` (see the module docstring)."""
    token = _loading.set(_Loading(Path(model_dir), trust))
    try:
        yield
    finally:
        _loading.reset(token)


def resolve_handle(handle: str) -> Path:
    """The local SavedModel folder for a training handle: a folder as it is, a URL downloaded and cached."""
    if Path(handle).is_dir():
        return Path(handle)
    import tensorflow_hub as hub  # imported here: slow to import (it loads tf_keras), and only URLs need it

    try:
        return Path(hub.resolve(handle))
    except Exception as error:  # network, missing folder, unknown handle: hub raises many kinds
        raise UsageError(f"--backbone hub:{handle}: cannot get it as a TF-Hub model ({first_line(error)})") from None


def load_saved_model(folder: Path, what: str):
    """Load the SavedModel in `folder` (TF2, or TF1 Hub format as hub.load would); UsageError naming `what`."""
    tags = [] if (folder / TF1_HUB_FILE).is_file() else None
    try:
        module = tf.saved_model.load(str(folder), tags=tags)
    except Exception as error:  # not a SavedModel, corrupt, missing: TensorFlow raises many kinds
        raise UsageError(f"{what}: cannot load it as a TF-Hub model ({first_line(error)})") from None
    if not callable(module):
        raise UsageError(f"{what}: not a TF2 image feature-vector model (the loaded SavedModel is not callable)")
    return module


def locate(loading: _Loading, handle: str) -> Path:
    """The SavedModel folder a saved handle names, checked against the folder being loaded (module docstring)."""
    if loading.trust:
        if ":" in handle:  # a URL (or a Windows drive): tensorflow_hub resolves it, downloading if need be
            return resolve_handle(handle)
        return loading.folder / handle  # relative to the model folder; an absolute path stays as it is
    root = Path(os.path.realpath(loading.folder))
    path = root / handle
    relative = ":" not in handle and not PurePath(handle).is_absolute() and ".." not in PurePath(handle).parts
    if not (relative and _stays_within(root, path)):
        raise UsageError(
            f"{loading.folder}: its model.keras loads a hub backbone from {handle!r}, outside the model folder; "
            f"refused, since loading a SavedModel runs its TensorFlow ops ({TRUST_ADVICE})"
        )
    if not path.is_dir():
        raise UsageError(
            f"{loading.folder}: its hub backbone folder {handle!r} is missing; copy the whole model folder, not only "
            "model.keras"
        )
    return path


def _stays_within(root: Path, path: Path) -> bool:
    """Whether `path` and everything under it, symlinks followed, are inside `root` (already resolved)."""
    entries = [path, *(Path(folder) / name for folder, dirs, files in os.walk(path) for name in dirs + files)]
    return all(root in Path(os.path.realpath(entry)).parents for entry in entries)


@keras.saving.register_keras_serializable(package="classifier")
class HubFeatures(keras.layers.Layer):
    """A frozen TF-Hub image feature vector: (N, H, W, 3) in [0, 1] -> (N, features).

    `handle` is what the user gave at training; `source` the local SavedModel folder it resolved to
    (default: resolve `handle` now, downloading a URL). Saved, the layer names `hub`, where
    `bundle_hub_models` copies `source`.
    """

    def __init__(self, handle: str, source: str | Path | None = None, **kwargs):
        kwargs["trainable"] = False
        super().__init__(**kwargs)
        self.handle = handle
        if source is None:  # training: the user's handle, held to the rule its model folder will be (hubcheck)
            self.source = resolve_handle(handle)
            check_ops(self.source, f"--backbone hub:{handle}", TRAINING_ADVICE)
        else:  # loading: from_config has checked it
            self.source = Path(source)
        self._module = load_saved_model(self.source, f"--backbone hub:{handle}" if source is None else str(source))

    def call(self, images):
        # tf.data leaves the channel count unknown; a hub signature insists on 3.
        return self._module(tf.ensure_shape(tf.cast(images, tf.float32), [None, None, None, 3]))

    def get_config(self):
        return {**super().get_config(), "handle": BUNDLE_DIR}

    @classmethod
    def from_config(cls, config):
        loading = _loading.get()
        if loading is None:
            raise UsageError(
                "a model with a hub: backbone loads only through classifier.model.artifacts.load_model(MODEL_DIR), "
                "which checks where its SavedModel comes from"
            )
        config = dict(config)
        source = locate(loading, config["handle"])
        if not loading.trust:  # before anything of the SavedModel runs: loading it runs its initialisers
            check_ops(source, str(loading.folder), TRUST_ADVICE)
        return cls(source=source, **config)


def bundle_hub_models(model, folder: Path) -> None:
    """Copy the SavedModel of `model`'s hub layer, if it has one, into `folder`/hub, where its saved config points."""
    layers = list(_hub_layers(model))
    if len(layers) > 1:
        raise ValueError(f"{len(layers)} hub layers in one model; a model folder carries one ({BUNDLE_DIR}/)")
    for layer in layers:
        shutil.copytree(layer.source, folder / BUNDLE_DIR)  # symlinks followed: the copy stands alone


def _hub_layers(layer) -> Iterator[HubFeatures]:
    if isinstance(layer, HubFeatures):
        yield layer
    for inner in getattr(layer, "layers", []):  # nested models (the backbone) hold the hub layer
        yield from _hub_layers(inner)

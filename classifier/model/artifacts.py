"""The model folder: `model.keras`, `metadata.json`, `labels.txt` (and `hub/` for a hub: backbone, `backbone.keras` for
a keras: one), written atomically.

`save_model_dir` writes one, `read_metadata` reads its `metadata.json` as a `ModelMetadata`
(classifier/model/metadata.py says what it holds), `load_model` loads its network.

A model folder is written like every folder we write (classifier/atomic.py): built beside its target
and put in place only when complete, so it is never seen half-written; every load and save of a
target first `recover`s what a killed writer left.

`--overwrite` replaces only a folder of the kind being written (or an empty one): `--out models`
holding other models is refused, never deleted.

Nothing here imports TensorFlow until a model is loaded or saved, so a save of files can be driven
(and killed) cheaply.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
from pathlib import Path
from typing import Callable

from ..atomic import recover, staged_dir, write_json
from ..config import ENGINES
from ..errors import UsageError
from ..files import sha256_of
from .metadata import KERAS_PREFIX, ModelMetadata, backbone_parts

MODEL_FILE = "model.keras"
METADATA_FILE = "metadata.json"
LABELS_FILE = "labels.txt"
# ENGINES (config.py): what runs a served model's backbone (inference/runtime.py): LiteRT, converting it on first use;
# LiteRT only where that conversion is cached, else TensorFlow; TensorFlow.
DEFAULT_ENGINE = "litert"  # Predictor's, the app's and every library default; the predict command's is auto
TRUST_HUB_HELP = (
    "load a hub: backbone from wherever the model's model.keras says (a URL, another folder), not only from the "
    "model folder's own hub/, and whatever ops its SavedModel runs (files, Python...: see "
    "classifier/model/hubcheck.py); only for model folders you trust"
)


def is_model_dir(path: str | Path) -> bool:
    """Whether `path` is a model folder (after moving back one an interrupted replace left aside)."""
    path = Path(path)
    recover(path)
    return _holds_model(path)


def _holds_model(path: Path) -> bool:
    return (path / METADATA_FILE).is_file() and (path / MODEL_FILE).is_file()


def model_dir_around(path: str | Path) -> Path | None:
    """The model folder that `path` is or lies inside (links resolved: itself or its nearest ancestor that holds a
    model), or None; for refusing to write anything among a model's files. Only looks (no `recover`)."""
    resolved = Path(path).resolve()
    return next((folder for folder in (resolved, *resolved.parents) if _holds_model(folder)), None)


def check_output_dir(
    out: str | Path, overwrite: bool, is_kind: Callable[[Path], bool] = is_model_dir, kind: str = "model folder"
) -> Path:
    """Refuse an existing `out` up front (before any training) unless `overwrite`, and even then anything but an
    empty folder or a `kind` folder (`is_kind`), whose replacing would delete someone's other files."""
    out = Path(out)
    recover(out)
    if out.exists() and not overwrite:
        raise UsageError(
            f"--out {out}: already exists; pass --overwrite to replace it (the old {kind} stays until the new one is "
            "complete)"
        )
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not is_kind(out):
        raise UsageError(
            f"--out {out}: not a {kind}, and --overwrite replaces only a {kind} (this would delete everything in "
            f"it); choose a new --out, e.g. {out / 'NAME'}"
        )
    return out


def save_model_dir(out: str | Path, model, metadata: ModelMetadata, extra=None) -> Path:
    """Write the model, its metadata and labels (in prediction order) atomically to `out`; a hub: backbone's
    SavedModel is copied in as `hub/`, and a keras: backbone's file as `backbone.keras` (recorded in
    `metadata.backbone_files`, for a retrain), so the folder needs nothing outside itself.

    `extra(folder)` may add more files (plots, metrics) before the folder is moved into place.
    """
    from .hub import bundle_hub_models

    with staged_dir(out) as folder:
        model.save(folder / MODEL_FILE)
        bundle_hub_models(model, folder)
        metadata.backbone_files = carry_files(metadata.backbone, folder)
        write_json(folder / METADATA_FILE, metadata.to_dict())
        write_labels(folder, metadata.class_names)
        if extra is not None:
            extra(folder)
    return Path(out)


COPY_NAME = "backbone{}.keras"  # a model folder's copy of its keras: file(s): backbone.keras, backbone-2.keras...


def carry_files(backbone: str, folder: Path) -> list[dict]:
    """Copy the file of each keras: part of `backbone` (a resolved config's: absolute paths, parts joined by +)
    into the model folder being written; what metadata.json's `backbone_files` records of them (a part by its name,
    without a combined backbone's @SIZE)."""
    carried = []
    for part in (name for name, _ in backbone_parts(backbone) if name.startswith(KERAS_PREFIX)):
        name = COPY_NAME.format(f"-{len(carried) + 1}" if carried else "")
        shutil.copyfile(part[len(KERAS_PREFIX) :], folder / name)
        carried.append({"backbone": part, "file": name, "sha256": sha256_of(folder / name)})
    return carried


def carried_copy(part: str, out: str | Path | None) -> Path | None:
    """The copy of keras: backbone `part` that the model folder `out` carries (its metadata.json records it and the
    copy's content is what it recorded), as an absolute path; None without one."""
    if out is None or not is_model_dir(out):
        return None
    folder = Path(os.path.abspath(out))
    entries = read_metadata(out).backbone_files  # a folder's own word, checked: a list of objects naming a file here
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or entry.get("backbone") != part:
            continue
        copy = folder / str(entry.get("file", ""))
        if copy.parent == folder and copy.is_file() and sha256_of(copy) == entry.get("sha256"):
            return copy
    return None


def write_labels(folder: Path, class_names: list[str]) -> None:
    """labels.txt: one class name a line, in the model's output order (model folders and exports alike)."""
    (folder / LABELS_FILE).write_text("".join(f"{name}\n" for name in class_names))


def read_metadata(model_dir: str | Path) -> ModelMetadata:
    """The model folder's metadata.json (read without loading the network); UsageError naming the folder or file."""
    recover(model_dir)
    path = Path(model_dir) / METADATA_FILE
    if not path.is_file():
        raise UsageError(
            f"{model_dir}: not a model folder (no {METADATA_FILE}); train one with python -m classifier.train"
        )
    try:
        values = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UsageError(f"{path}: not valid JSON ({error})") from None
    return ModelMetadata.from_dict(values, str(path))


def load_model(model_dir: str | Path, trust_hub_handle: bool = False):
    """The Keras model of a model folder, loaded in Keras' safe mode (no Lambda code, no TFSMLayer). A hub:
    backbone loads only from the folder's own hub/ unless `trust_hub_handle` (see classifier.model.hub)."""
    from .._tf import keras
    from .hub import loading_from

    recover(model_dir)
    path = Path(model_dir) / MODEL_FILE
    if not path.is_file():
        raise UsageError(f"{model_dir}: no {MODEL_FILE} in it; train a model with python -m classifier.train")
    with loading_from(model_dir, trust_hub_handle):
        return keras.models.load_model(path, compile=False)


def add_trust_flag(parser) -> None:
    """--trust-hub-handle, the same on every command that loads a model folder."""
    parser.add_argument("--trust-hub-handle", action="store_true", help=TRUST_HUB_HELP)


def add_engine_flag(parser, default: str = DEFAULT_ENGINE, env: str | None = None) -> None:
    """--engine, the same on every command that serves a model folder; `env`: an environment variable that sets
    it too, the flag winning."""
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default=os.environ.get(env, default) if env else default,
        help=(
            "what runs the backbone: litert (about twice as fast on a CPU; converted on first use, in seconds, then "
            "cached in ~/.cache/classifier/litert), auto (litert where that conversion is cached, else tensorflow) "
            f"or tensorflow ({f'env {env}; ' if env else ''}default: {default})"
        ),
    )


def versions() -> dict[str, str]:
    from .. import __version__
    from .._tf import keras, tf

    return {
        "classifier": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
    }

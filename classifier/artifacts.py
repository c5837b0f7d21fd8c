"""The model folder: `model.keras`, `metadata.json`, `labels.txt`, written atomically.

The folder is built under a temporary name beside the target and renamed into place only when
complete, so a crash or Ctrl-C never leaves a half-written model and never destroys the previous
one (it is moved aside first and deleted only after the new folder is in place).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from ._tf import keras, tf
from .errors import UsageError

MODEL_FILE = "model.keras"
METADATA_FILE = "metadata.json"
LABELS_FILE = "labels.txt"


def check_output_dir(out: str | Path, overwrite: bool) -> Path:
    """Refuse an existing model folder up front (before any training) unless `overwrite`."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise UsageError(
            f"--out {out}: already exists; pass --overwrite to replace it (the old model stays until the new one is "
            "complete)"
        )
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder")
    return out


@contextlib.contextmanager
def staged_dir(out: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside `out`; on success move it to `out`, replacing what was there."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        yield staging
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / out.name)
        os.replace(staging, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def save_model_dir(out: str | Path, model, metadata: dict, extra=None) -> Path:
    """Write the model, its metadata and labels (in prediction order) atomically to `out`.

    `extra(folder)` may add more files (plots, metrics) before the folder is moved into place.
    """
    with staged_dir(out) as folder:
        model.save(folder / MODEL_FILE)
        write_json(folder / METADATA_FILE, metadata)
        (folder / LABELS_FILE).write_text("".join(f"{name}\n" for name in metadata["class_names"]))
        if extra is not None:
            extra(folder)
    return Path(out)


def read_metadata(model_dir: str | Path) -> dict:
    path = Path(model_dir) / METADATA_FILE
    if not path.is_file():
        raise UsageError(
            f"{model_dir}: not a model folder (no {METADATA_FILE}); train one with python -m classifier.train"
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise UsageError(f"{path}: not valid JSON ({error})") from None


def load_model(model_dir: str | Path):
    """The Keras model of a model folder."""
    from . import hub  # noqa: F401  registers HubFeatures, the layer of hub: backbones

    path = Path(model_dir) / MODEL_FILE
    if not path.is_file():
        raise UsageError(f"{model_dir}: no {MODEL_FILE} in it; train a model with python -m classifier.train")
    return keras.models.load_model(path, compile=False)


def write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def versions() -> dict[str, str]:
    from . import __version__

    return {
        "classifier": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
    }

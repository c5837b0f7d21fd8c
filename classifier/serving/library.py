"""The models the app offers: every model folder found once, each model loaded at most once and shared.

`find_models` lists the model folders under the app's `--models-dir`; `ModelLibrary` loads each on its first
request as a `BatchedPredictor` (inference/batched.py), which every request for that model then shares, and
reloads it when a retrain replaces its folder.
"""

from __future__ import annotations

import threading
from pathlib import Path

from ..console import Log, say
from ..errors import quoted
from ..inference.batched import BatchedPredictor
from ..inference.predictor import Predictor
from ..model.artifacts import DEFAULT_ENGINE, is_model_dir


def find_models(models_dir: str | Path) -> dict[str, Path]:
    """Model folders directly under `models_dir` (or `models_dir` itself), by folder name, sorted."""
    root = Path(models_dir)
    if is_model_dir(root):
        return {root.name: root}
    if not root.is_dir():
        return {}
    return {
        path.name: path
        for path in sorted(root.iterdir())
        if path.is_dir() and not path.name.startswith(".") and is_model_dir(path)
    }


class ModelLibrary:
    """The models the app offers, by name; each is loaded on first use and then shared."""

    def __init__(
        self,
        models: dict[str, Path],
        trust_hub_handle: bool = False,
        min_confidence: float | None = None,
        engine: str = DEFAULT_ENGINE,
    ):
        self.paths = dict(models)
        self.engine = engine  # what runs each model's backbone (inference/runtime.py)
        self.trust_hub_handle = trust_hub_handle  # see classifier.model.hub: load hub backbones from outside the folder
        self.min_confidence = min_confidence  # the "not sure" threshold for every model; None: each model's own
        self._loaded: dict[str, BatchedPredictor] = {}
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        return list(self.paths)

    def get(self, name: str | None, log: Log = say) -> BatchedPredictor:
        """The shared predictor for `name` (the first model when None); loads it once, saying through `log` what
        loading has to say (a backbone's first LiteRT conversion on this machine)."""
        name = name or self.names[0]
        if name not in self.paths:
            raise KeyError(f"unknown model {quoted(name)}; this app serves: {', '.join(self.names)}")
        with self._lock:  # two first requests must not load the same model twice
            if name not in self._loaded:
                self._loaded[name] = BatchedPredictor(
                    Predictor(
                        self.paths[name],
                        trust_hub_handle=self.trust_hub_handle,
                        min_confidence=self.min_confidence,
                        engine=self.engine,
                        log=log,
                    )
                )
            return self._loaded[name]

    def add(self, name: str, path: Path) -> None:
        """Offer the model folder `path` as `name`, or reload it after it was replaced (a retrain): the next
        request loads the new folder; the replaced predictor answers the requests it holds, then lets go of its
        model."""
        with self._lock:
            self.paths[name] = Path(path)
            replaced = self._loaded.pop(name, None)
        if replaced is not None:
            replaced.close()  # its worker answers what is queued, then ends

"""The models the app offers: every model folder found once, each model loaded at most once and shared.

`find_models` lists the model folders under the app's `--models-dir`; `ModelLibrary` loads each on its first
request as a `BatchedPredictor` (inference/batched.py), which every request for that model then shares, and
reloads it when a retrain replaces its folder.

The models folder is the truth, not the library's start: given `models_dir`, the library rescans it (`refresh`: a
directory listing, no model loaded) when a page loads and when a request names a model it does not know (or one
whose folder is gone), so a model trained on the page, from the command line or copied in is offered without a
restart, and a removed one is dropped (its loaded predictor closed). A model given at start from outside the folder
(`--model`) is pinned: a rescan never drops it and no folder of the same name replaces it. Folders being written
(`.NAME.partial-*`: dotted names are skipped) and training folders (`NAME.data`, whatever they hold) are never
offered.

Loading never stalls the answers of another model: each model has its own lock, held across its
load alone, and a first LiteRT conversion runs in a child process, so it holds no lock of this one
(not even the GIL). A reload (`ModelLibrary.add`, after a retrain) loads the new folder while the
old predictor goes on answering, then swaps them.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

from ..console import Log, say
from ..data.trainset import DATA_SUFFIX
from ..errors import quoted
from ..inference.batched import BatchedPredictor
from ..inference.predictor import Predictor
from ..model.artifacts import DEFAULT_ENGINE, is_model_dir


def find_models(models_dir: str | Path) -> dict[str, Path]:
    """Model folders directly under `models_dir` (or `models_dir` itself), by folder name, sorted: a directory listing
    and two file checks each, nothing loaded."""
    root = Path(models_dir)
    if is_model_dir(root):
        return {root.name: root}
    if not root.is_dir():
        return {}
    return {
        path.name: path
        for path in sorted(root.iterdir())
        # Not a folder being written (.NAME.partial-*) nor a page's training folder (NAME.data), whatever it holds.
        if path.is_dir()
        and not path.name.startswith(".")
        and not path.name.endswith(DATA_SUFFIX)
        and is_model_dir(path)
    }


class ModelLoading(RuntimeError):
    """A request's model is not loaded, and as many requests as may wait for loads already do: it is refused at
    once, to be sent again (`ModelLibrary.get`'s `wait=False`)."""


class ModelLibrary:
    """The models the app offers, by name; each is loaded on first use and then shared.

    Each model has its own lock, held across its load alone (a first LiteRT conversion included, which runs in a
    child process: inference/runtime.py): a first request for a model waits for that model's load, and nobody else
    waits for it. The library's own lock guards its tables and is never held across a load. At most
    `waiting_requests` of the page's requests wait for loads at once (`get`'s `wait`; the page sets its
    --concurrency less one, so a queue worker is always left for the models already loaded)."""

    def __init__(
        self,
        models: dict[str, Path],
        trust_hub_handle: bool = False,
        min_confidence: float | None = None,
        engine: str = DEFAULT_ENGINE,
        models_dir: str | Path | None = None,
    ):
        self.paths = dict(models)
        self.models_dir = None if models_dir is None else Path(models_dir)  # rescanned by `refresh`; None: never
        found = find_models(self.models_dir) if self.models_dir is not None else {}
        # Models given from elsewhere (--model): kept whatever the folder holds.
        self.pinned = {name: path for name, path in self.paths.items() if found.get(name) != path}
        self.on_change: Callable[[dict[str, Path], list[str]], None] | None = None  # (added, removed) after refresh
        self.engine = engine  # what runs each model's backbone (inference/runtime.py)
        self.trust_hub_handle = trust_hub_handle  # see classifier.model.hub: load hub backbones from outside the folder
        self.min_confidence = min_confidence  # the "not sure" threshold for every model; None: each model's own
        self._loaded: dict[str, BatchedPredictor] = {}
        self._loading: dict[str, threading.Lock] = {}  # per model, held while it loads: it is loaded once
        self._lock = threading.Lock()  # guards paths, _loaded and _loading, for a lookup or a swap only
        self._scanning = threading.Lock()  # held across a rescan of models_dir (`refresh`)
        self.wait_for_loads(1)

    def wait_for_loads(self, requests: int) -> None:
        """Let at most `requests` (at least one) of the page's requests wait for loads at once (`get`'s `wait`)."""
        self._request_load = threading.BoundedSemaphore(max(1, requests))  # a slot per request waiting for a load

    @property
    def names(self) -> list[str]:
        return list(self.paths)

    def name(self, name: str | None) -> str:
        """`name` (the first model's when None) once its folder is known to be there: when it is not (added to the
        models folder, or removed from it, since the last look), after a rescan; KeyError naming it when it is not
        offered."""
        with self._lock:
            known = self.paths.get(name or next(iter(self.paths), ""))
        if known is None or not known.is_dir():
            self.refresh()
        with self._lock:
            name = name or next(iter(self.paths), "")
            if name not in self.paths:
                raise KeyError(f"unknown model {quoted(name)}; this app serves: {', '.join(self.paths)}")
            return name

    def get(self, name: str | None, log: Log = say, wait: bool = True) -> BatchedPredictor:
        """The shared predictor for `name` (the first model when None); loads it once, saying through `log` what
        loading has to say (a backbone's first LiteRT conversion on this machine).

        `wait=False`, for the page's requests: a request waits for its model's load (or starts it) only while fewer
        than `wait_for_loads`' number of requests wait for loads, and raises `ModelLoading` at once otherwise. A
        request waiting for a load holds one of the queue's workers, so loads never hold them all: a stranger asking
        for unloaded models many times over cannot take every worker from the visitors of loaded models."""
        name = self.name(name)
        with self._lock:
            if name in self._loaded:
                return self._loaded[name]
            loading = self._loading.setdefault(name, threading.Lock())
        if wait:
            return self._load_once(name, loading, log)
        if not self._request_load.acquire(blocking=False):
            which = f"model {quoted(name)} is being loaded" if loading.locked() else "another model is being loaded"
            raise ModelLoading(f"{which} for another request; send yours again in a few seconds")
        try:
            return self._load_once(name, loading, log)
        finally:
            self._request_load.release()

    def refresh(self) -> list[str]:
        """Rescan `models_dir` (a directory listing; nothing is loaded): new model folders are offered, removed ones
        dropped, their loaded predictors closed; the pinned models stay first. Returns the names now offered."""
        if self.models_dir is None:
            return self.names
        with self._scanning:  # one rescan at a time: each change is reported once
            return self._rescan(self.models_dir)

    def _rescan(self, models_dir: Path) -> list[str]:
        found = find_models(models_dir)
        with self._lock:
            before = dict(self.paths)
            self.paths = {**self.pinned, **{name: path for name, path in found.items() if name not in self.pinned}}
            added = {name: path for name, path in self.paths.items() if before.get(name) != path}
            removed = [name for name in before if name not in self.paths]
            closed = [self._loaded.pop(name) for name in removed if name in self._loaded]
            for name in removed:
                self._loading.pop(name, None)
        for predictor in closed:
            predictor.close()  # answers what it holds, then its worker ends
        if (added or removed) and self.on_change is not None:
            self.on_change(added, removed)
        return self.names

    def _load_once(self, name: str, loading: threading.Lock, log: Log) -> BatchedPredictor:
        with loading:  # two first requests for a model must not load it twice: the second waits for the first
            with self._lock:
                if name in self._loaded:  # loaded (or reloaded by add) while this request waited
                    return self._loaded[name]
                path = self.paths[name]
            predictor = self._load(path, log)
            with self._lock:
                if self.paths.get(name) == path:  # not removed from the folder while it loaded
                    self._loaded[name] = predictor
            return predictor

    def add(self, name: str, path: Path, log: Log = say) -> None:
        """Offer the model folder `path` as `name`, or reload it after it was replaced (a retrain), loading it here,
        in the caller's thread: until it is loaded, requests for `name` go on being answered by the predictor it
        replaces (if one was loaded), which then answers the requests it holds and lets go of its model. When the
        new folder does not load, the replaced predictor goes all the same (it no longer matches the folder) and
        the error is raised; the next request for `name` tries again and says why."""
        path = Path(path)
        with self._lock:
            loading = self._loading.setdefault(name, threading.Lock())
        with loading:  # one load of `name` at a time; other models' requests never wait for it
            try:
                predictor = self._load(path, log)
            except BaseException:
                self._swap(name, path, None)
                raise
            self._swap(name, path, predictor)

    def _swap(self, name: str, path: Path, predictor: BatchedPredictor | None) -> None:
        """`name` is the folder `path` from now on, answered by `predictor` (None: loaded at the next request)."""
        with self._lock:
            self.paths[name] = path
            replaced = self._loaded.pop(name, None)
            if predictor is not None:
                self._loaded[name] = predictor
        if replaced is not None:
            replaced.close()  # its worker answers what is queued, then ends

    def _load(self, path: Path, log: Log) -> BatchedPredictor:
        return BatchedPredictor(
            Predictor(
                path,
                trust_hub_handle=self.trust_hub_handle,
                min_confidence=self.min_confidence,
                engine=self.engine,
                log=log,
                convert_in_subprocess=True,  # the converter holds the GIL: every thread of this one would stop
            )
        )

"""Many threads, one model: concurrent requests' model calls merged into batches (the app's).

`BatchedPredictor` puts one worker thread in front of a `Predictor`'s model call:
requests decode their own uploads in parallel (`Predictor.pixels`, the one preprocessing path),
then hand the pixels over. The worker runs whatever is waiting as one batch, so a lone request
runs at once (no waiting window) and requests that pile up behind a busy model share its next
call. A bad upload fails only its own request, which Gradio's `batch=True` cannot promise.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future

import numpy as np

from ..data.images import ImageSource
from .predictor import Predictor

MAX_BATCH = 16  # images per model call; bounds the latency one big request adds to the others


class BatchedPredictor:
    """A `Predictor` whose model calls from many threads are merged into batches."""

    def __init__(self, predictor: Predictor, max_batch: int = MAX_BATCH):
        self.predictor = predictor
        self.max_batch = max_batch
        self.calls = 0  # model calls made; with `images` it shows how much batching happened
        self.images = 0
        self._pending: queue.SimpleQueue[tuple[np.ndarray, Future] | None] = queue.SimpleQueue()  # None: close()
        self._closing = threading.Lock()
        self._closed = False
        threading.Thread(target=self._serve, name=f"batcher-{predictor.model_dir.name}", daemon=True).start()

    def __getattr__(self, name):  # class_names, metadata, pixels, top_k, answer, model_dir ...
        return getattr(self.predictor, name)

    def predict_proba(self, images: list[ImageSource]) -> np.ndarray:
        """Like `Predictor.predict_proba`: decoding happens here, in the caller's thread."""
        if not images:
            return np.zeros((0, len(self.predictor.class_names)), np.float32)
        return self.probabilities_of_pixels(np.stack([self.predictor.pixels(image) for image in images]))

    def probabilities_of_pixels(self, batch: np.ndarray) -> np.ndarray:
        """Queue (N, H, W, 3) pixels for the worker and wait for their (N, classes) probabilities."""
        future: Future = Future()
        with self._closing:  # never queued behind close()'s marker, where no worker would answer it
            if self._closed:
                raise RuntimeError(f"the model {self.predictor.model_dir.name} was replaced; send the request again")
            self._pending.put((batch, future))
        return future.result()

    def close(self) -> None:
        """End the worker thread once the requests queued before this call are answered, so a replaced model's
        memory is freed; a request made later is refused (RuntimeError)."""
        with self._closing:
            self._closed = True
            self._pending.put(None)

    def _serve(self) -> None:
        while True:
            first = self._pending.get()
            if first is None:  # close(): nothing can be queued behind it; the model goes with the last reference
                return
            jobs = [first]
            size = len(jobs[0][0])
            while size < self.max_batch:
                try:
                    job = self._pending.get_nowait()
                except queue.Empty:
                    break
                if job is None:  # close() arrived behind these jobs: answer them first, then stop
                    self._pending.put(None)
                    break
                jobs.append(job)
                size += len(job[0])
            try:
                # Big requests (the batch tab) are cut into max_batch slices; small ones are merged.
                stacked = np.concatenate([pixels for pixels, _ in jobs])
                chunks = [
                    self.predictor.probabilities_of_pixels(stacked[i : i + self.max_batch])
                    for i in range(0, len(stacked), self.max_batch)
                ]
                probabilities = np.concatenate(chunks)
                self.calls += len(chunks)
                self.images += len(stacked)
            except Exception as error:  # a failed model call fails the requests that were in it, not the worker
                for _, future in jobs:
                    future.set_exception(error)
                continue
            start = 0
            for pixels, future in jobs:
                future.set_result(probabilities[start : start + len(pixels)])
                start += len(pixels)

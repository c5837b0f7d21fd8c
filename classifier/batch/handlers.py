"""Beam's side of the batch commands: the classes Beam runs on its workers, loaded only where Beam is installed.

`PredictorHandler` is `batch_predict`'s RunInference model handler (a `Predictor` per worker);
`ComputeFeatures` is `batch_features`' step (the frozen backbone per worker). Both load their
model once per worker process, in Beam's `load_model` / `setup`, never in the launching process.
"""

from __future__ import annotations

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import ModelHandler

from ..data.images import ImageError
from ..errors import UsageError, first_line
from ..inference.predictor import Predictor
from .rows import error_row, result_row
from .runner import local_model_dir


class PredictorHandler(ModelHandler):
    """RunInference's model: a `Predictor` loaded once per worker; a batch of (path, bytes) -> CSV fields per file."""

    def __init__(
        self, model_dir: str, top_k: int, min_confidence: float | None, batch_size: int, trust_hub_handle: bool
    ):
        super().__init__(min_batch_size=1, max_batch_size=batch_size)
        self.model_dir, self.top_k, self.min_confidence = model_dir, top_k, min_confidence
        self.trust_hub_handle = trust_hub_handle

    def load_model(self):
        local = local_model_dir(self.model_dir)
        try:
            return Predictor(local, min_confidence=self.min_confidence, trust_hub_handle=self.trust_hub_handle)
        except UsageError:
            raise
        except Exception as error:  # noqa: BLE001 (a model.keras Keras cannot read: one line, not a worker trace)
            raise UsageError(f"{self.model_dir}: the model does not load ({first_line(error)})") from None

    def run_inference(self, batch, model, inference_args=None):
        pixels, problems = [], []
        for _, data in batch:
            try:
                pixels.append(model.pixels(data))
                problems.append(None)
            except ImageError as error:
                problems.append(error.reason)  # the message without "image bytes": the row names the file
        probabilities = iter(model.probabilities_of_pixels(np.stack(pixels)) if pixels else [])
        rows = []
        for (path, _), problem in zip(batch, problems, strict=True):
            if problem:
                rows.append(error_row(path, problem, self.top_k))
            else:
                row = next(probabilities)
                rows.append(result_row(path, model.top_k(row, self.top_k), model.answer(row)))
        return rows

    def get_num_bytes(self, batch) -> int:
        return sum(len(data) for _, data in batch)

    def get_metrics_namespace(self) -> str:
        return "classifier"


class ComputeFeatures(beam.DoFn):
    """`batch_features`' step: a chunk of images -> their backbone features (a combined model's `part`'s), written
    into the cache. The frozen backbone is built once per worker (`setup`) as `train` builds it; the computation is
    `features.backbone_batches`, on images at the model's size."""

    def __init__(self, config, classes: int, cache, part: int = 0):
        self.config, self.classes, self.cache, self.part = config, classes, cache, part
        self.written = beam.metrics.Metrics.counter("classifier", "features_written")

    def setup(self):
        from ..model.network import build_model, part_extractors
        from ..training.features import FeatureCache, traced

        model = build_model(self.config, self.classes)  # the head is not used: only the frozen part runs
        self.extract = traced(part_extractors(model)[self.part], self.config.image_shape)
        # This worker's own writer: a cache object unpickled on several workers would share its shard names.
        self.store = FeatureCache(self.cache.root, self.cache.augmentation)

    def process(self, chunk):
        from ..training.features import backbone_batches

        wanted = np.zeros((len(chunk.paths), chunk.copy + 1), bool)
        wanted[:, chunk.copy] = True  # every image of the chunk, as its one copy: the vectors come in its order
        batches = backbone_batches(self.extract, chunk.split(), self.config, wanted)
        vectors = [batch for batch, _, _ in batches]
        rows = np.concatenate(vectors) if vectors else np.zeros((0,), np.float32)
        if len(rows):  # the chunk as one shard (write cuts more than featurecache.SHARD_ROWS into several)
            self.store.write([(sha, self.store.variant(chunk.copy)) for sha in chunk.hashes], rows)
        self.written.inc(len(rows))
        yield len(rows)

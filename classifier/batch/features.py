"""Fill the training feature cache on Apache Beam, so that `classifier.train` then trains the head without a
backbone pass: the library of `python -m classifier.batch_features`.

`fill` takes a `TrainConfig` (the command: the same options as `classifier.train`, those that do not shape
features ignored) and fills the cache that a `classifier.train` run with those options reads (`features.FeatureCache`):
every training image (copy 0) and its `--augment-copies` augmented copies, and every validation
image. This process lists and splits the data exactly as `train` does (`training.pipeline.scan_data`), skips
the entries already cached, and cuts the rest into chunks of `--chunk-size` images, one work item
each; Beam spreads the chunks over its workers, and each worker builds the frozen backbone once
and runs `features.backbone_batches` on its chunks, the same computation as `train`'s own pass.

With `--flip-average` the fill is the same: the features of the images as they are. The validation images' mirror
images, which training scores the averaging with, are left to `train` (one pass over the validation images, cached
like the rest).

Augmented copies: an image's copy k is drawn from `--seed`, k and the image's content alone
(`features.backbone_batches`), so a fill makes the very copies `train`'s own pass makes, whatever the
chunks and workers.

Every worker must reach the data folder and the cache folder at the same paths (a shared
filesystem), as with `--strategy multi-worker`. Entries are content-addressed and written to a
temporary name and renamed, so workers that overlap or retry write the same bytes harmlessly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..config import TrainConfig
from ..console import Log
from ..data.datasets import resolve_data
from ..data.pipeline import ImageData, Split
from ..errors import UsageError
from ..model.backbones import resolve
from ..training.features import FeatureCache, feature_cache_applies, feature_passes
from ..training.pipeline import scan_data
from .runner import beam, counter, make_pipeline, run_pipeline


@dataclass
class Chunk:
    """One work item: images of one split to pass through the backbone as one copy."""

    copy: int  # 0: the images as they are; k >= 1: augmented copy k
    paths: list[str]
    orientations: list[int]
    hashes: list[str]

    def split(self) -> Split:
        return Split(self.paths, [0] * len(self.paths), self.orientations, self.hashes)  # labels: not in a feature


def plan(data: ImageData, config: TrainConfig, cache: FeatureCache, chunk_size: int) -> tuple[list[Chunk], int]:
    """(chunks of the entries still missing, how many entries the run reads in all), in `train`'s order."""
    chunks, total = [], 0
    for split, hashes, copy in feature_passes(data, config):
        total += len(hashes)
        absent = set(cache.missing([(sha, cache.variant(copy)) for sha in hashes]))
        todo = [i for i, sha in enumerate(hashes) if (sha, cache.variant(copy)) in absent]
        for start in range(0, len(todo), chunk_size):
            part = todo[start : start + chunk_size]
            chunks.append(
                Chunk(
                    copy=copy,
                    paths=[split.paths[i] for i in part],
                    orientations=[split.orientations[i] for i in part],
                    hashes=[hashes[i] for i in part],
                )
            )
    return chunks, total


def build(pipeline, chunks: list[Chunk], config: TrainConfig, classes: int, cache: FeatureCache) -> None:
    """The chunks, spread over the workers, through the backbone into the cache."""
    import apache_beam as beam

    from .handlers import ComputeFeatures

    _ = (
        pipeline
        | "Chunks" >> beam.Create(chunks, reshuffle=False)
        | "Spread" >> beam.Reshuffle()  # one chunk per worker at a time, not every chunk on the first
        | "Features" >> beam.ParDo(ComputeFeatures(config, classes, cache))
    )


def fill(config: TrainConfig, chunk_size: int, runner: str, beam_args: Sequence[str], log: Log = print) -> int:
    """Compute every missing cache entry of `config`'s training run on Beam; how many were computed."""
    beam()
    if chunk_size < 1:
        raise UsageError(f"--chunk-size {chunk_size}: must be at least 1")
    config = resolve(config, log)
    if not feature_cache_applies(config):
        raise UsageError(
            "the feature cache is off for these options (--weights none trains the backbone, or --no-feature-cache): "
            "there are no fixed features to compute"
        )
    pipeline = make_pipeline(runner, beam_args)
    data = scan_data(config, resolve_data(config.data, csv_dir=config.csv_dir, log=log))
    cache = FeatureCache.for_config(config)
    chunks, total = plan(data, config, cache, chunk_size)
    entries = sum(len(chunk.paths) for chunk in chunks)
    log(f"feature cache: {entries} of {total} entries to compute, in {len(chunks)} chunk(s), into {cache.root}")
    if not chunks:
        return 0
    build(pipeline, chunks, config, len(data.class_names), cache)
    result = run_pipeline(pipeline)
    computed = counter(result, "classifier", "features_written")
    log(f"feature cache: computed {computed} entries")
    return computed

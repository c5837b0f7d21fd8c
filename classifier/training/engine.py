"""What runs training's backbone pass (features.compute): LiteRT wherever serving would, else TensorFlow.

`backbone_pass(extractor, size, config, log)` is the hook: the frozen extractor's batch call (float32 pixels
(n, H, W, 3) at the model's size -> float32 features (n, D); its `shape` is one image's vector shape, as `traced`
gives), whose engine is chosen when the pass starts (`BackbonePass.start`, told how many images it will compute)
and said in one line: "backbone pass in LiteRT ..." or "backbone pass in TensorFlow: why". A combined backbone
calls it once per part. The conversion is model/litert.py's, the very one serving makes, checks and caches.

- Which engine (`--feature-engine`): tensorflow; litert (converting when the cache lacks the conversion, falling
  back to TensorFlow with the reason where it cannot convert or fails its check); auto, the default: LiteRT for a
  backbone with depthwise convolutions (MobileNet, EfficientNet), where XNNPACK takes about half TensorFlow's CPU
  time an image and the pass runs about twice as fast: with its conversion when cached (free, and serving loads it
  anyway), else converting only for a pass of at least CONVERT_FROM_IMAGES images, where the conversion's cost on
  a cold machine (Lite2: 5 s, 11 s in the page's child process; 2 cores) is won back within the pass, and never for
  a run that fine-tunes (the model will serve another backbone). TensorFlow for plain convolutions (InceptionV3): on
  batches of 32 it runs them at the CPU cost an image XNNPACK does, and its pass measured no slower (LiteRT's 2x
  there is for single images, serving's case). Always TensorFlow under a distribution strategy or mixed precision,
  whose replicas and float16 computation the extractor in LiteRT would not follow. No feature cache
  (--no-feature-cache, --weights none): no pass at all.
- What the feature cache holds: LiteRT's features equal TensorFlow's to float rounding (litert.check's tolerance,
  1e-4 of the largest feature on the probe batch, at every load), far inside what the head can tell apart. So the
  cache key does not name the engine: an entry computed by either serves both, and a run mixes them freely.
- Threads: XNNPACK runs on every core this process may use (litert.cpu_count()) while tf.data decodes and augments
  the next batches on TensorFlow's own threads; measured, they do not fight (benchmarks/README.md, "The feature
  pass in LiteRT"): the interpreter's call releases the GIL and the pass stays bound by the backbone.
- In a server (the Train tab), `in_subprocess` converts in a child process (tflite.ConverterProcess), so the
  converter never holds the server's GIL.
"""

from __future__ import annotations

import numpy as np

from .._tf import tf
from ..config import TrainConfig
from ..console import Log, say
from ..model.litert import cache_dir, cpu_count, depthwise_layers, litert_features

CONVERT_FROM_IMAGES = 250  # auto converts for a pass of at least this many images (the crossover: benchmarks/)
INSTEAD = "backbone pass in TensorFlow"  # what runs where LiteRT does not, as the one line says


# The last extractor traced and its trace: a retrain in the same process gets the same extractor back from
# network.feature_extractor (the backbone is shared) and reuses its trace instead of tracing the network again.
_last_traced: list[tuple[object, tuple, object]] = []


# Likewise the last extractor's checked LiteRT call, with its size and the LiteRT cache it came from: a retrain in
# the same process (the Train tab) neither loads nor checks its conversion again. The extractor is frozen: its
# weights, hence its conversion, never change.
_last_litert: list[tuple[object, tuple, object, object]] = []


def traced(extractor, size: tuple[int, int]):
    """`extractor` as one traced graph for every batch of images at `size` (no per-call Python or retracing),
    traced at its first call; its `shape` attribute is one image's feature vector shape, known without tracing."""
    if _last_traced and _last_traced[0][0] is extractor and _last_traced[0][1] == tuple(size):
        return _last_traced[0][2]
    extract = tf.function(
        lambda batch: extractor(batch, training=False), input_signature=[tf.TensorSpec([None, *size, 3], tf.float32)]
    )
    extract.shape = tuple(extractor.output.shape[1:])
    _last_traced[:] = [(extractor, tuple(size), extract)]
    return extract


def backbone_pass(
    extractor, size: tuple[int, int], config: TrainConfig, log: Log = say, in_subprocess: bool = False
) -> "BackbonePass":
    """The hook: `extractor`'s batch call for the feature pass of a run of `config`, its engine chosen at `start`."""
    return BackbonePass(extractor, tuple(size), config, log, in_subprocess)


class BackbonePass:
    """A frozen extractor's batch call: float32 pixels (n, H, W, 3) at `size` -> its features, in the engine `start`
    chose (a call before `start` chooses as for a pass of no images: LiteRT only where its conversion is cached)."""

    def __init__(self, extractor, size: tuple[int, int], config: TrainConfig, log: Log, in_subprocess: bool):
        self.shape = tuple(extractor.output.shape[1:])
        self.engine: str | None = None  # "litert" or "tensorflow", once chosen
        self._extractor, self._size = extractor, size
        self._config, self._log, self._in_subprocess = config, log, in_subprocess
        self._call = None  # the chosen engine's batch call

    def start(self, images: int) -> str:
        """Choose the engine for a pass over `images` images, once (later calls keep it), saying which in one line."""
        if self._call is None:
            self.engine, self._call = self._choose(images)
        return self.engine

    def __call__(self, batch) -> np.ndarray:
        if self._call is None:
            self.start(0)
        return self._call(batch)

    def _choose(self, images: int):
        config, log = self._config, self._log
        if config.feature_engine == "tensorflow":
            log("backbone pass in TensorFlow (--feature-engine tensorflow)")
            return "tensorflow", traced(self._extractor, self._size)
        why = tensorflow_only(config)
        if why:
            log(f"note: {INSTEAD}: {why}")
            return "tensorflow", traced(self._extractor, self._size)
        if config.feature_engine == "auto" and not depthwise_layers(self._extractor):
            log(
                f"{INSTEAD}: it runs this backbone's plain convolutions on batches as fast as LiteRT (--feature-engine "
                "litert uses LiteRT all the same)"
            )
            return "tensorflow", traced(self._extractor, self._size)
        unconverted = not_worth_converting(config, images)
        notes: list[str] = []
        memo = (self._extractor, self._size, cache_dir())
        if _last_litert and _last_litert[0][0] is self._extractor and _last_litert[0][1:3] == memo[1:]:
            features = _last_litert[0][3]  # a retrain in the same process: loaded and checked already
        else:
            features = litert_features(
                self._extractor,
                self._size,
                lambda line: (notes.append(line), log(line)),
                convert=unconverted is None,
                in_subprocess=self._in_subprocess,
                instead=INSTEAD,
            )
        if features is None:
            if not any(INSTEAD in line for line in notes):  # litert_features said nothing of what runs instead
                log(f"{INSTEAD}: its LiteRT conversion is not cached, and {unconverted}")
            return "tensorflow", traced(self._extractor, self._size)
        _last_litert[:] = [(*memo, features)]
        log(f"backbone pass in LiteRT (XNNPACK on {cpu_count()} threads)")
        return "litert", lambda batch: features(np.asarray(batch, np.float32))


def tensorflow_only(config: TrainConfig) -> str | None:
    """Why a run of `config` computes its features in TensorFlow whatever --feature-engine says, or None."""
    if config.strategy != "default":
        return f"--strategy {config.strategy} computes them in its replicas"
    if config.mixed_precision:
        return "--mixed-precision computes them in float16"
    return None


def not_worth_converting(config: TrainConfig, images: int) -> str | None:
    """Why --feature-engine auto does not convert a depthwise backbone for a pass of `images` images, or None where it
    does (litert always converts)."""
    if config.feature_engine == "litert":
        return None
    if config.fine_tune_epochs:
        why = "--fine-tune-epochs changes the backbone the model will serve"
    elif images < CONVERT_FROM_IMAGES:
        why = f"converting pays from about {CONVERT_FROM_IMAGES} images, not {images}"
    else:
        return None
    return f"{why} (--feature-engine litert converts anyway)"

"""Every patch of a dependency's internals in the package, in one file: delete each when upstream fixes it.

Patches 1 and 2 were checked on Keras 3.12.0 and 3.15.1 (TensorFlow backend; TensorFlow 2.21 needs
keras>=3.12), whose code for every step named below is identical; requirements.txt pins 3.15.1.
Patch 3 was checked on mediapipe 1.2.3 (the `tflite-metadata` extra). Each patch says what it
replaces and how to tell that it can go.

1. `multi_worker_fit`: Keras 3 cannot run `fit` under MultiWorkerMirroredStrategy
   (keras-team/keras#20585, tensorflow/tensorflow#72388). It replaces, during a fit under that
   strategy only (fine-tuning, or training on images, across workers: train.keras_workaround
   imports it on that path alone; the default multi-worker path trains the head on one worker and
   never builds the strategy) and on the Keras releases in KERAS_CHECKED only, two functions of
   keras/src/backend/tensorflow/trainer.py:
   - `TensorFlowTrainer._maybe_symbolic_build`, which turns the first distributed batch into a
     plain one with `strategy.reduce("MEAN", batch, axis=None)` only to read its shapes and dtypes;
     this strategy cannot reduce a nested (images, labels) batch ("Attempt to convert a value
     (PerReplica ...) to a Tensor"). The replacement hands Keras' build this worker's first
     replica's share instead: the same shapes and dtypes, and no cross-worker step.
   - `reduce_per_replica`, which averages each step's metrics over the workers with
     `strategy.reduce("MEAN", value, axis=0)` and rejects the scalar loss and accuracy ("Invalid
     reduction dimension 0 for input with 0 dimensions"). The replacement uses `axis=None`: the
     mean over replicas, what Keras computes on one worker.
   It can go when keras-team/keras#20585 is closed by a release: make `multi_worker_fit` a plain
   `yield` and run tests/test_distribute.py -k multi_worker_strategy; if it passes on that
   release, delete the patch.

2. `forget_restored_epoch(model)`: Keras' `BackupAndRestore`, resuming, sets the private
   `model._initial_epoch` to the epoch it restored, and `fit` starts at `self._initial_epoch or
   initial_epoch` (trainers/trainer.py, backend/tensorflow/trainer.py), but nothing resets it, so
   a later `fit` of the same model (fine-tuning after a resumed head stage, without the feature
   cache) would start at the restored epoch instead of its own `initial_epoch`. It sets the
   attribute back to None, as `Trainer.__init__` does. It can go when `fit` resets
   `_initial_epoch` itself (or stops reading it): grep keras/src for `_initial_epoch`.

3. `mediapipe_metadata()`: MediaPipe's TFLite metadata writer cannot be imported from its wheels
   (0.10.30 to at least 1.2.3; no upstream issue found): `mediapipe/tasks/python/metadata/metadata.py`
   imports the pybind module `mediapipe.tasks.cc.metadata.python._pywrap_metadata_version`, which
   those wheels no longer ship (their native code moved to `libmediapipe.so`, whose C API has no
   such function), so the import fails with "No module named 'mediapipe.tasks.cc'". Its only use
   is `GetMinimumMetadataParserVersion(metadata_flatbuffer)`, the oldest metadata parser that reads
   the buffer; `_minimum_parser_version` below is a port of it (mediapipe/tasks/cc/metadata/
   metadata_version.cc), registered under the missing module's name. When a mediapipe release
   ships the module again, the real one is imported and the port is not registered; once the
   `tflite-metadata` extra requires such a release, delete the port and keep the two imports
   (tests/test_export.py -k mediapipe must still pass). The same function drops a traceback that
   importing mediapipe leaves behind (see its comment).
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import types
from typing import Iterator

from .._tf import keras, tf
from ..errors import UsageError

# The Keras releases (major, minor; both ends included) whose patched steps were read and found identical.
# Re-read them before raising it.
KERAS_CHECKED = ((3, 12), (3, 15))


def keras_version() -> tuple[int, int]:
    return tuple(int(part) for part in keras.version().split(".")[:2])


@contextlib.contextmanager
def multi_worker_fit(strategy) -> Iterator[None]:
    """Let Keras' fit (and its validation) run under MultiWorkerMirroredStrategy (patch 1 above); a no-op for
    any other strategy. Outside KERAS_CHECKED nothing is patched, and the known failure is one `error:` line."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        yield
        return
    if not KERAS_CHECKED[0] <= keras_version() <= KERAS_CHECKED[1]:
        try:
            yield
        except ValueError as error:
            if "PerReplica" not in str(error) and "Invalid reduction dimension" not in str(error):
                raise
            (major, low), (_, high) = KERAS_CHECKED
            raise UsageError(
                f"--strategy multi-worker: Keras {keras.version()} fails in fit under MultiWorkerMirroredStrategy "
                "(keras-team/keras#20585), "
                f"and this project's workaround is checked on Keras {major}.{low} to {major}.{high} only; pip "
                f"install 'keras>={major}.{low},<{major}.{high + 1}'"
            ) from None
        return
    from keras.src.backend.tensorflow import trainer  # the private module whose two functions are replaced

    keras_build, keras_reduce = trainer.TensorFlowTrainer._maybe_symbolic_build, trainer.reduce_per_replica

    def build_from_local_batch(model, iterator=None, data_batch=None):
        if iterator is not None:
            local = model.distribute_strategy.experimental_local_results
            for _, _, batches in iterator:  # as Keras reads the first batch
                data_batch = keras.tree.map_structure(
                    lambda value: None if value is None else local(value)[0], next(batches)
                )
                break
        return keras_build(model, data_batch=data_batch)

    def mean_over_replicas(values, strategy, reduction):
        if reduction in ("auto", "mean") and isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return keras.tree.map_structure(lambda value: strategy.reduce("MEAN", value, axis=None), values)
        return keras_reduce(values, strategy, reduction)

    trainer.TensorFlowTrainer._maybe_symbolic_build, trainer.reduce_per_replica = (
        build_from_local_batch,
        mean_over_replicas,
    )
    try:
        yield
    finally:
        trainer.TensorFlowTrainer._maybe_symbolic_build, trainer.reduce_per_replica = keras_build, keras_reduce


def forget_restored_epoch(model) -> None:
    """Before a `fit`: drop the epoch an earlier fit's BackupAndRestore left on `model` (patch 2 above)."""
    model._initial_epoch = None


MEDIAPIPE_VERSION_MODULE = "mediapipe.tasks.cc.metadata.python._pywrap_metadata_version"


def mediapipe_metadata():
    """MediaPipe's (metadata, metadata_writer) modules, importable whatever the wheel lacks (patch 3 above).

    Raises ImportError, naming what is missing, when mediapipe (or one of its dependencies) is not installed.
    """
    try:
        importlib.import_module(MEDIAPIPE_VERSION_MODULE)
    except ModuleNotFoundError as error:
        if not (error.name or "").startswith("mediapipe.tasks.cc"):
            raise  # mediapipe itself, or something it imports, is missing
        parent = None
        for name in ("mediapipe.tasks.cc", "mediapipe.tasks.cc.metadata", "mediapipe.tasks.cc.metadata.python"):
            parent = sys.modules.setdefault(name, types.ModuleType(name))
        port = types.ModuleType(MEDIAPIPE_VERSION_MODULE)
        port.GetMinimumMetadataParserVersion = _minimum_parser_version
        sys.modules[MEDIAPIPE_VERSION_MODULE] = parent._pywrap_metadata_version = port
    from mediapipe.tasks.python.metadata import metadata
    from mediapipe.tasks.python.metadata.metadata_writers import metadata_writer

    # Importing mediapipe imports sounddevice, and where the PortAudio library is missing mediapipe keeps the
    # error in `audio_record.sd_error`, its traceback holding every frame that was importing (ours and our
    # callers', with their models and images) for good. Drop the traceback; the error itself stays.
    error = getattr(sys.modules.get("mediapipe.tasks.python.audio.core.audio_record"), "sd_error", None)
    while error is not None:
        error.__traceback__, error = None, error.__context__
    return metadata, metadata_writer


def _minimum_parser_version(buffer: bytes) -> str:
    """The oldest metadata parser version that reads every schema member `buffer` uses: a port of
    metadata_version.cc, whose table gives each member added after 1.0.0 the version that added it."""
    from mediapipe.tasks.metadata import metadata_schema_py_generated as schema

    file_type, options = schema.AssociatedFileType, schema.ProcessUnitOptions
    needed = {(1, 0, 0)}

    def need(version: tuple[int, int, int], used: bool) -> None:
        if used:
            needed.add(version)

    def files(items) -> None:  # AssociatedFile tables (entries and lists may be absent: None)
        for item in filter(None, items or []):
            need((1, 0, 1), item.type == file_type.VOCABULARY)
            need((1, 4, 0), item.type == file_type.SCANN_INDEX_FILE)
            need((1, 4, 1), item.version is not None)

    def units(items) -> None:  # ProcessUnit tables
        for item in filter(None, items or []):
            need((1, 1, 0), item.optionsType in (options.BertTokenizerOptions, options.SentencePieceTokenizerOptions))
            need((1, 2, 1), item.optionsType == options.RegexTokenizerOptions)

    model = schema.ModelMetadataT.InitFromObj(schema.ModelMetadata.GetRootAsModelMetadata(bytes(buffer), 0))
    for graph in filter(None, model.subgraphMetadata or []):
        for tensor in filter(None, (graph.inputTensorMetadata or []) + (graph.outputTensorMetadata or [])):
            files(tensor.associatedFiles)
            units(tensor.processUnits)
            content = tensor.content
            need(
                (1, 3, 0),
                content is not None and content.contentPropertiesType == schema.ContentProperties.AudioProperties,
            )
        files(graph.associatedFiles)
        for process_units in (graph.inputProcessUnits, graph.outputProcessUnits):
            need((1, 1, 0), process_units is not None)
            units(process_units)
        need((1, 2, 0), graph.inputTensorGroups is not None or graph.outputTensorGroups is not None)
        need((1, 5, 0), graph.customMetadata is not None)
    files(model.associatedFiles)
    return ".".join(map(str, max(needed)))

"""TensorFlow and Keras, imported once and quietly; modules that need them import them from here.

TensorFlow's C++ start-up notes (oneDNN, CUDA stubs) go to file descriptor 2 before any log level
applies and would bury the one line our commands print for a bad option, so fd 2 is silenced for
the import alone. Python errors still propagate. CLASSIFIER_TF_VERBOSE=1 shows the notes.
"""

import contextlib
import os
import sys
from typing import Iterator

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """File descriptor 2 silenced for the block (the C++ notes TensorFlow and LiteRT print), unless
    CLASSIFIER_TF_VERBOSE is set. Python errors still propagate."""
    if os.environ.get("CLASSIFIER_TF_VERBOSE"):
        yield
        return
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _import_quietly() -> None:
    if "tensorflow" in sys.modules:
        return
    with quiet_stderr():
        import tensorflow  # noqa: F401


_import_quietly()

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

__all__ = ["keras", "quiet_stderr", "tf"]

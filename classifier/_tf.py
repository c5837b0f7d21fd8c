"""TensorFlow and Keras, imported once and quietly; modules that need them import them from here.

TensorFlow's C++ start-up notes (oneDNN, CUDA stubs) go to file descriptor 2 before any log level
applies and would bury the one line our commands print for a bad option, so fd 2 is silenced for
the import alone. Python errors still propagate. CLASSIFIER_TF_VERBOSE=1 shows the notes.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _import_quietly() -> None:
    if "tensorflow" in sys.modules or os.environ.get("CLASSIFIER_TF_VERBOSE"):
        return
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


_import_quietly()

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

__all__ = ["keras", "tf"]

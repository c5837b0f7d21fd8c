"""What one stranger can cost the server: the app's limits, shared by app.py's flags and the page.

Training from the page (the Train tab, corrections, downloads) is off unless `training` is set:
app.py turns it on when the app runs locally, or on a public deployment with `--allow-training`
(`training_allowed`). Its limits are flags too, and each message names its flag (`limit_hit`): what one
training job may bring is `data.limits.TrainsetLimits`, which `Limits` extends with the app's own. The models
folder training writes into is never a model folder or inside one (`check_models_dir`).

Nothing heavy imported (no Gradio, no TensorFlow), so `python app.py --help` answers at once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ..data.formats import MAX_UPLOAD_BYTES
from ..data.limits import MAX_TEXT, TrainsetLimits, limit_hit
from ..errors import UsageError

__all__ = [
    "DEFAULT_LIMITS",
    "LIMIT_FLAGS",
    "LOOPBACK_HOSTS",
    "MAX_JSON_VALUES",
    "MAX_TEXT",
    "MAX_UPLOAD_BYTES",
    "Limits",
    "TrainsetLimits",
    "check_models_dir",
    "is_public",
    "limit_hit",
    "training_allowed",
]

# Values (counted by their commas) in one call's JSON body, checked before it is parsed: the Train tab's six class
# slots of --max-class-images uploads (a dozen values each) need 72,000 at the defaults.
MAX_JSON_VALUES = 1_000_000
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class Limits(TrainsetLimits):
    """What strangers can ask of the server at once; app.py's flags set the first three. The training limits
    (max_classes, max_class_images, max_train_mb, max_model_data_mb) are `TrainsetLimits`'."""

    concurrency: int = 4  # events running at once (each holds a CPU thread while it decodes and predicts)
    max_queue: int = 64  # events waiting; the next one is turned away ("queue is full")
    # Files per /predict_batch call: a folder of photos, yet seconds of CPU (benchmarks/README.md), so one
    # call holds a concurrency slot only briefly; its uploads take at most max_batch x max_upload of disk.
    max_batch: int = 32
    max_upload: int = MAX_UPLOAD_BYTES
    # Gradio's delete_cache (every, older than), seconds: an upload outlives its prediction and a visit
    # to the page (the picture is shown, and classified again, from that file), then goes within 70 min.
    delete_cache: tuple[int, int] = (600, 3600)
    # Training from the page, and what the app lets training jobs do besides what each brings (TrainsetLimits).
    training: bool = False  # the Train tab, corrections and model downloads exist at all
    local: bool = False  # the app runs on the user's own machine: the Train tab may read a folder on it
    max_train_queue: int = 2  # training jobs waiting behind the running one; the next is turned away
    # Models trained from the page that the models folder may hold (each with its training folder): with
    # max_model_data_mb, what visitors can make the server keep is at most max_page_models x max_model_data_mb,
    # plus the models themselves.
    max_page_models: int = 20
    # Drafts (serving/drafts.py): the Train tab's unsaved work, one per browser, kept on the server so a reload loses
    # nothing. Each holds at most max_train_mb of photos (max_class_images a class), the least recently used goes
    # first, and one untouched for a week goes too: what visitors' drafts can take is at most max_drafts x
    # max_train_mb (20 x 500 MB by default). 0 turns drafts off.
    max_drafts: int = 20

    # The flag that sets each training limit, for the message that says it was hit.
    FLAGS: ClassVar[dict[str, str]] = {
        **TrainsetLimits.FLAGS,
        "max_train_queue": "--max-train-queue",
        "max_page_models": "--max-page-models",
        "max_drafts": "--max-drafts",
    }

    @property
    def max_inline(self) -> int:
        """Characters of base64 that encode `max_upload` bytes."""
        return 4 * -(-self.max_upload // 3)

    @property
    def max_body(self) -> int:
        """Bytes of any request body but an upload: one inline image plus its JSON envelope."""
        return self.max_inline + 64 * 1024


DEFAULT_LIMITS = Limits()


LIMIT_FLAGS = Limits.FLAGS  # the flag that sets each training limit, for the message that says it was hit


def check_models_dir(models_dir: str | Path) -> Path:
    """Refuse a models folder that is a model folder or inside one: training from the page writes visitors' models
    and photos into the models folder, which would put them inside a served model (and its downloads)."""
    from ..model.artifacts import model_dir_around  # (numpy, not at app.py --help)

    root = Path(models_dir).resolve()
    model = model_dir_around(root)
    if model is not None:
        where = "is a model folder" if model == root else f"is inside the model folder {model}"
        raise UsageError(
            f"--models-dir {models_dir}: {where}; training from the page would write visitors' models and photos "
            "into it. Point --models-dir at a folder that holds model folders (serve one model with --model), or "
            "turn training off with --no-allow-training"
        )
    return root


def is_public(host: str, share: bool) -> bool:
    """Whether strangers can reach the app: on a Hugging Face Space (SPACE_ID set), with --share, or listening
    on anything but the loopback interface."""
    return bool(os.environ.get("SPACE_ID")) or share or host not in LOOPBACK_HOSTS


def training_allowed(flag: bool | None, host: str, share: bool) -> bool:
    """--allow-training / --no-allow-training when given, else on locally and off on a public deployment."""
    return flag if flag is not None else not is_public(host, share)

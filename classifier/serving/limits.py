"""What one stranger can cost the server: the app's limits, shared by app.py's flags and the page.

Training from the page (the Train tab, corrections, downloads) is off unless `training` is set:
app.py turns it on when the app runs locally, or on a public deployment with `--allow-training`
(`training_allowed`). Its limits are flags too, and each message names its flag (`limit_hit`).

Nothing imported, so `python app.py --help` answers without loading Gradio or TensorFlow.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # per file, uploaded or inline: far above any photo
# Characters of any text a request carries (a model, class or file name, a download kind, a job id, a folder):
# checked before anything else reads it (app_guard). Only an inline image's data: URL may be longer (max_inline).
MAX_TEXT = 500
# Values (counted by their commas) in one call's JSON body, checked before it is parsed: the Train tab's six class
# slots of --max-class-images uploads (a dozen values each) need 72,000 at the defaults.
MAX_JSON_VALUES = 1_000_000
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class Limits:
    """What strangers can ask of the server at once; app.py's flags set the first three."""

    concurrency: int = 4  # events running at once (each holds a CPU thread while it decodes and predicts)
    max_queue: int = 64  # events waiting; the next one is turned away ("queue is full")
    # Files per /predict_batch call: a folder of photos, yet seconds of CPU (benchmarks/README.md), so one
    # call holds a concurrency slot only briefly; its uploads take at most max_batch x max_upload of disk.
    max_batch: int = 32
    max_upload: int = MAX_UPLOAD_BYTES
    # Gradio's delete_cache (every, older than), seconds: an upload outlives its prediction and a visit
    # to the page (the picture is shown, and classified again, from that file), then goes within 70 min.
    delete_cache: tuple[int, int] = (600, 3600)
    # Training from the page, and what one training job may bring (app.py's --allow-training and --max-* flags).
    training: bool = False  # the Train tab, corrections and model downloads exist at all
    local: bool = False  # the app runs on the user's own machine: the Train tab may read a folder on it
    max_classes: int = 20
    max_class_images: int = 1000  # images in one class of a model's training folder
    max_train_mb: int = 500  # bytes of images (or of a zip, unpacked) one training job may upload
    max_train_queue: int = 2  # training jobs waiting behind the running one; the next is turned away
    # Bytes one model's training folder may hold: Train fills it (within max_train_mb), corrections add to it
    # until this cap (a correction beyond it is refused); room for a few hundred photos above a full upload.
    max_model_data_mb: int = 600
    # Models trained from the page that the models folder may hold (each with its training folder): with the two
    # caps above, what visitors can make the server keep is at most max_page_models x max_model_data_mb, plus
    # the models themselves.
    max_page_models: int = 20

    @property
    def max_inline(self) -> int:
        """Characters of base64 that encode `max_upload` bytes."""
        return 4 * -(-self.max_upload // 3)

    @property
    def max_zip_entries(self) -> int:
        """Entries a training zip may hold: files and folders of max_classes classes in train/ and validation/."""
        return self.max_classes * (self.max_class_images + 1) * 2

    @property
    def max_body(self) -> int:
        """Bytes of any request body but an upload: one inline image plus its JSON envelope."""
        return self.max_inline + 64 * 1024


DEFAULT_LIMITS = Limits()


# The flag that sets each training limit, for the message that says it was hit.
LIMIT_FLAGS = {
    "max_classes": "--max-classes",
    "max_class_images": "--max-class-images",
    "max_train_mb": "--max-train-mb",
    "max_train_queue": "--max-train-queue",
    "max_zip_entries": "--max-classes x --max-class-images",
    "max_model_data_mb": "--max-model-data-mb",
    "max_page_models": "--max-page-models",
}


def limit_hit(limits: Limits, name: str, what: str) -> str:
    """One message for a training limit hit: `what` happened, the limit, and the flag that sets it."""
    return f"{what}: above this app's limit of {getattr(limits, name):,} ({LIMIT_FLAGS[name]} sets it)"


def is_public(host: str, share: bool) -> bool:
    """Whether strangers can reach the app: on a Hugging Face Space (SPACE_ID set), with --share, or listening
    on anything but the loopback interface."""
    return bool(os.environ.get("SPACE_ID")) or share or host not in LOOPBACK_HOSTS


def training_allowed(flag: bool | None, host: str, share: bool) -> bool:
    """--allow-training / --no-allow-training when given, else on locally and off on a public deployment."""
    return flag if flag is not None else not is_public(host, share)

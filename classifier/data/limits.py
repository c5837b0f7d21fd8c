"""What one training job may bring: the limits of a model's training folder, and the message when one is hit.

`data/trainset.py` checks a job's images, a zip and a folder against a `TrainsetLimits`; the web app's
`serving.limits.Limits` is one (it adds what only the app limits: its queue, the number of page models...),
so app.py's `--max-*` flags set these too. Each message names the flag that sets the limit (`limit_hit`,
from the class's `FLAGS`).

Nothing imported, so `python app.py --help` answers without loading Gradio or TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

# Characters of any text a request carries (a model, class or file name, a download kind, a job id, a folder):
# checked before anything else reads it (app_guard). Only an inline image's data: URL may be longer (max_inline).
MAX_TEXT = 500


@dataclass(frozen=True)
class TrainsetLimits:
    """What one training job may bring into a model's training folder; app.py's --max-* flags set them."""

    max_classes: int = 20
    max_class_images: int = 1000  # images in one class of a model's training folder
    max_train_mb: int = 500  # bytes of images (or of a zip, unpacked) one training job may upload
    # Bytes one model's training folder may hold: Train fills it (within max_train_mb), corrections add to it
    # until this cap (a correction beyond it is refused); room for a few hundred photos above a full upload.
    max_model_data_mb: int = 600

    # The flag that sets each limit, for the message that says it was hit (a subclass adds its own).
    FLAGS: ClassVar[dict[str, str]] = {
        "max_classes": "--max-classes",
        "max_class_images": "--max-class-images",
        "max_train_mb": "--max-train-mb",
        "max_zip_entries": "--max-classes x --max-class-images",
        "max_model_data_mb": "--max-model-data-mb",
    }

    @property
    def max_zip_entries(self) -> int:
        """Entries a training zip may hold: files and folders of max_classes classes in train/ and validation/."""
        return self.max_classes * (self.max_class_images + 1) * 2


def limit_hit(limits: TrainsetLimits, name: str, what: str) -> str:
    """One message for a training limit hit: `what` happened, the limit, and the flag that sets it."""
    return f"{what}: above this app's limit of {getattr(limits, name):,} ({type(limits).FLAGS[name]} sets it)"

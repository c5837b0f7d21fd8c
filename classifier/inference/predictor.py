"""Load a model folder once and classify images: the `Predictor` the CLI, the app and the batch commands share.

Images go through `images.model_pixels` (allowed formats, EXIF, any mode -> RGB, memory limits,
then the resize the training pipeline and the model's own Resizing layer run), then one model call:
the backbone in LiteRT, converted once per machine and cached, the head in TensorFlow (runtime.py), or all of it
in TensorFlow (`engine`). A file that cannot be used raises `images.ImageError` naming it.
`Predictor.answer` applies the "not sure" rule (confidence.py) at the threshold in effect: the one
given, else the model's own from its metadata.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..console import Log, say
from ..data.images import MAX_PIXELS, ImageSource, model_pixels
from ..model.artifacts import DEFAULT_ENGINE, load_model, read_metadata
from ..model.confidence import Answer, answer, check_min_confidence, in_effect
from ..model.network import resize_antialias
from .runtime import probabilities_function


class Predictor:
    """A trained model folder, loaded once, turned into probabilities per class name."""

    def __init__(
        self,
        model_dir: str | Path,
        max_pixels: int = MAX_PIXELS,
        trust_hub_handle: bool = False,
        min_confidence: float | None = None,
        engine: str = DEFAULT_ENGINE,
        log: Log = say,
        convert_in_subprocess: bool = False,
    ):
        """`convert_in_subprocess`: a first LiteRT conversion runs in a child process and holds no lock of this one
        (a server's choice: runtime.py)."""
        self.model_dir = Path(model_dir)
        self.metadata = read_metadata(self.model_dir)
        self.class_names: list[str] = self.metadata.class_names
        # The "not sure" threshold `answer` applies: `min_confidence` when given, else the model's own (None: never).
        self.min_confidence = in_effect(check_min_confidence(min_confidence), self.metadata.min_confidence)
        self.image_size: tuple[int, int] = self.metadata.image_size
        self.max_pixels = max_pixels
        self.model = load_model(self.model_dir, trust_hub_handle)
        self.antialias = resize_antialias(self.model)
        # The backbone in LiteRT (or TensorFlow, see runtime.py), traced once here for every batch.
        self.engine, self._probabilities = probabilities_function(
            self.model, self.image_size, engine, log, convert_in_subprocess
        )

    def pixels(self, image: ImageSource) -> np.ndarray:
        """One image (path, bytes, Pillow image or array) -> float32 (H, W, 3) at the model's size."""
        return model_pixels(image, self.image_size, self.antialias, self.max_pixels)

    def predict_proba(self, images: Sequence[ImageSource]) -> np.ndarray:
        """Probabilities (N, classes) for N images, in `class_names` order; raises ImageError on a bad one."""
        if not images:
            return np.zeros((0, len(self.class_names)), np.float32)
        batch = np.stack([self.pixels(image) for image in images])
        return self.probabilities_of_pixels(batch)

    def probabilities_of_pixels(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities for a batch already at the model's size (N, H, W, 3), floats 0..255."""
        return self._probabilities(batch)

    def predict(self, image: ImageSource, top_k: int | None = None) -> list[tuple[str, float]]:
        """(class name, probability) pairs for one image, most probable first."""
        return self.top_k(self.predict_proba([image])[0], top_k)

    def top_k(self, probabilities: np.ndarray, k: int | None = None) -> list[tuple[str, float]]:
        order = np.argsort(-probabilities, kind="stable")[: k or len(self.class_names)]
        return [(self.class_names[i], float(probabilities[i])) for i in order]

    def answer(self, probabilities: np.ndarray) -> Answer:
        """One image's probabilities -> its top class, or "not sure" with the top guess, at `min_confidence`."""
        return answer(probabilities, self.class_names, self.min_confidence)

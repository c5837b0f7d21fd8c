"""What one stranger can cost the server: the app's limits, shared by app.py's flags and the page.

Nothing imported, so `python app.py --help` answers without loading Gradio or TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # per file, uploaded or inline: far above any photo


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

    @property
    def max_inline(self) -> int:
        """Characters of base64 that encode `max_upload` bytes."""
        return 4 * -(-self.max_upload // 3)

    @property
    def max_body(self) -> int:
        """Bytes of any request body but an upload: one inline image plus its JSON envelope."""
        return self.max_inline + 64 * 1024


DEFAULT_LIMITS = Limits()

"""Tiny image folders painted with numpy for tests whose right answer is known in advance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def solid(rgb):
    """A painter: the colour `rgb` plus a little noise."""
    return lambda rng, size: np.clip(np.array(rgb, float) + rng.normal(0, 8, (size, size, 3)), 0, 255)


def stripes(axis: int):
    """A painter: two random colours in stripes across `axis` (0: horizontal, 1: vertical), random period and phase."""

    def paint(rng, size):
        period, phase = rng.integers(4, 9), rng.integers(0, 8)
        band = ((np.arange(size) + phase) // (period // 2)) % 2
        mask = band[:, None] if axis == 0 else band[None, :]
        mask = np.broadcast_to(mask, (size, size))[..., None]
        a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        return np.where(mask, a, b) + rng.normal(0, 6, (size, size, 3))

    return paint


def paint(folder: Path, painters: dict, per_class: int, size: int = 24, seed: int = 0) -> Path:
    """folder/<class>/<i>.png for each class name -> painter."""
    rng = np.random.default_rng(seed)
    for name, painter in painters.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(np.clip(painter(rng, size), 0, 255).astype(np.uint8)).save(folder / name / f"{i:03d}.png")
    return folder

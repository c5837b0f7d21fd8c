"""A small, learnable image dataset drawn on the spot: the offline demo and the tests' data.

`python -m classifier.shapes` is the command over `make_shapes_dataset`.

Each class is one shape (circle, square, triangle, ...) in a random colour, size and place on a
random plain background, so a model has to learn shape, not colour or position.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "cross")


def draw_shape(shape: str, size: int, rng: np.random.Generator) -> Image.Image:
    background = tuple(int(v) for v in rng.integers(0, 256, 3))
    color = tuple(int(255 - v) for v in background)  # always contrasting
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    radius = rng.uniform(0.22, 0.38) * size
    cx, cy = rng.uniform(radius, size - radius, 2)
    if shape == "circle":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=color)
    elif shape == "square":
        draw.rectangle([cx - radius, cy - radius, cx + radius, cy + radius], fill=color)
    elif shape == "triangle":
        draw.polygon([(cx, cy - radius), (cx - radius, cy + radius), (cx + radius, cy + radius)], fill=color)
    elif shape == "cross":
        bar = radius / 3
        draw.rectangle([cx - radius, cy - bar, cx + radius, cy + bar], fill=color)
        draw.rectangle([cx - bar, cy - radius, cx + bar, cy + radius], fill=color)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return image


def make_shapes_dataset(
    out_dir: str | Path,
    per_class: int = 60,
    classes: Sequence[str] = SHAPES[:3],
    size: int = 96,
    seed: int = 0,
    validation_per_class: int = 0,
) -> Path:
    """Write `out_dir/<class>/*.png` (or train/ and validation/ when `validation_per_class`)."""
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    splits = [("train", per_class), ("validation", validation_per_class)] if validation_per_class else [("", per_class)]
    for split, count in splits:
        for shape in classes:
            folder = out / split / shape
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                draw_shape(shape, size, rng).save(folder / f"{shape}_{i:03d}.png")
    return out

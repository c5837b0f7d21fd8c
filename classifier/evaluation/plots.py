"""PNG plots of a trained model: learning curves, confusion matrix, the most confidently wrong images.

matplotlib is imported inside `_pyplot()` with the Agg backend (files only, no display), or inside
`curves_figure` (a Figure outside pyplot, which the web page draws too), so importing this module is free and
training pays for matplotlib only when it draws.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

DPI = 100


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: dict[str, list[float]], path: Path, fine_tune_start: int | None = None) -> Path:
    """curves.png: `curves_figure` of the history."""
    fig = curves_figure(history, fine_tune_start)
    fig.savefig(path)
    return Path(path)


def curves_figure(history: dict[str, list[float]], fine_tune_start: int | None = None, size=(10, 4)):
    """Training vs validation accuracy and loss per epoch, each on its own axes (accuracy in %, from 0 to 100),
    whole epochs on the x axis; a dashed line where fine-tuning began. The same figure is curves.png and the Train
    tab's live curve. A `matplotlib.figure.Figure` outside pyplot's registry: freed when dropped."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    fig = Figure(figsize=size, dpi=DPI)
    axes = fig.subplots(1, 2)
    for ax, metric in zip(axes, ("accuracy", "loss"), strict=True):
        scale = 100 if metric == "accuracy" else 1
        for key, label, style in ((metric, "training", "o-"), (f"val_{metric}", "validation", "s-")):
            values = history.get(key, [])
            ax.plot(range(1, len(values) + 1), [v * scale for v in values], style, markersize=3, label=label)
        if fine_tune_start is not None:
            ax.axvline(fine_tune_start + 0.5, color="grey", linestyle="--", label="fine-tuning starts")
        if scale == 100:
            ax.set_ylim(0, 101)
            ax.yaxis.set_major_formatter(PercentFormatter(100, decimals=0))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs 1, 2, 3: never 1.5
        ax.set_title(metric)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def plot_confusion_matrix(
    matrix: Sequence[Sequence[int]], class_names: Sequence[str], path: Path, split: str | None = None
) -> Path:
    """Counts per (true, predicted) class, coloured by the share of each true class (its recall row); the title
    names the `split` the images come from."""
    plt = _pyplot()
    counts = np.asarray(matrix)
    n = len(class_names)
    side = min(max(4.0, 0.45 * n + 2.5), 16.0)
    fig, ax = plt.subplots(figsize=(side, side), dpi=DPI)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), class_names, rotation=90 if n > 6 else 0)
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{split + ' ' if split else ''}confusion matrix ({int(counts.sum())} images)")
    if n <= 30:
        for (row, col), count in np.ndenumerate(counts):
            ax.text(
                col,
                row,
                str(count),
                ha="center",
                va="center",
                fontsize=8 if n > 12 else 10,
                color="white" if shares[row, col] > 0.5 else "black",
            )
    fig.tight_layout()
    return _save(fig, path)


def plot_images(images: Sequence[np.ndarray], titles: Sequence[str], path: Path, columns: int = 4) -> Path:
    """A grid of RGB images (0..255) with a title each, e.g. the most confidently wrong predictions."""
    plt = _pyplot()
    rows = max(1, -(-len(images) // columns))
    # No ticks: the axes are off, so none is drawn, but matplotlib would still lay every tick out (half the cost).
    no_ticks = {"xticks": [], "yticks": []}
    fig, axes = plt.subplots(
        rows, columns, figsize=(3 * columns, 3.2 * rows), dpi=DPI, squeeze=False, subplot_kw=no_ticks
    )
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, title in zip(axes.flat, images, titles, strict=False):
        ax.imshow(np.clip(image, 0, 255).astype(np.uint8))
        ax.set_title(title, fontsize=9)
    if not images:
        axes[0, 0].text(0.5, 0.5, "no wrong predictions", ha="center", va="center", transform=axes[0, 0].transAxes)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    fig.savefig(path)
    _pyplot().close(fig)
    return Path(path)

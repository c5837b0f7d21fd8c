"""Input pipeline throughput: our tf.data pipeline against the course's ImageDataGenerator, same folder.

    python benchmarks/input_pipeline.py ../shared/data/cats_dogs [--epochs 2]

Both decode, resize to 150x150 and apply the course's augmentation (rotation 40, shifts, shear and
zoom 0.2, horizontal flip) to every training image; no model runs, so this is the input side alone.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _common import machine

from classifier.config import TrainConfig
from classifier.console import silent
from classifier.data.augment import make_augmenter
from classifier.data.pipeline import image_dataset, load_image_data


def ours(data_dir: Path, epochs: int) -> tuple[int, float]:
    data = load_image_data(data_dir, log=silent)
    augmenter = make_augmenter(TrainConfig(data=str(data_dir)))  # the defaults are the course's knobs
    pipeline = image_dataset(data.train, (150, 150), batch_size=20, shuffle=True, augmenter=augmenter)
    count, started = 0, time.time()
    for _ in range(epochs):
        for images, _ in pipeline:
            count += int(images.shape[0])
    return count, time.time() - started


def course(data_dir: Path, epochs: int) -> tuple[int, float]:
    import course_recipe

    train, _ = course_recipe.generators(data_dir)
    count, started = 0, time.time()
    for _ in range(epochs):
        for step in range(len(train)):
            images, _ = train[step]
            count += len(images)
        train.on_epoch_end()
    return count, time.time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="folder with train/ class folders")
    parser.add_argument("--epochs", type=int, default=2, help="passes over the training images for each (default 2)")
    args = parser.parse_args()
    print(f"machine: {machine()}\ndata: {args.data}")
    results = {
        "tf.data (this project)": ours(args.data, args.epochs),
        "ImageDataGenerator (course)": course(args.data, args.epochs),
    }
    for name, (count, seconds) in results.items():
        print(f"{name:30} {count:6d} images in {seconds:6.1f} s: {count / seconds:7.1f} images/s")
    (a, ta), (b, tb) = results.values()
    print(f"speed-up: {(a / ta) / (b / tb):.1f}x")


if __name__ == "__main__":
    main()

"""Augmentation does what ImageDataGenerator (the course's) does with the same random draws."""

from __future__ import annotations

import numpy as np
import pytest

from classifier._tf import keras
from classifier.data.augment import affine_transforms

KNOBS = dict(
    rotation_range=40,
    width_shift_range=0.2,
    height_shift_range=0.2,
    shear_range=30,
    zoom_range=0.2,
    horizontal_flip=True,
    vertical_flip=True,
)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # tf_keras calls scipy.ndimage.interpolation
def test_same_draws_give_imagedatagenerators_output():
    """For ImageDataGenerator's own draws (a large shear, so that its angle and axis show), our one
    resampling gives its pixels; shifts by name (see augment.py: tf_keras swaps tx and ty)."""
    pytest.importorskip("scipy")
    image_module = pytest.importorskip("tf_keras.src.preprocessing.image")
    generator = image_module.ImageDataGenerator(**KNOBS)
    size = 40
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    image = np.stack([x * 6, y * 6, (x * y) % 255], axis=-1)  # every pixel different, no symmetry to hide a mistake
    draws = [generator.get_random_transform(image.shape, seed=seed) for seed in range(12)]
    expected = np.stack([generator.apply_transform(image, draw) for draw in draws])

    def column(key, flip=False):
        values = np.array([float(draw[key]) for draw in draws], np.float32)
        return np.where(values > 0, -1.0, 1.0).astype(np.float32) if flip else values

    transforms = affine_transforms(
        theta=column("theta"),
        shift_x=column("tx"),  # tf_keras' tx moves the image along x (columns)
        shift_y=column("ty"),
        shear=column("shear"),
        zoom_x=column("zx"),
        zoom_y=column("zy"),
        flip_x=column("flip_horizontal", flip=True),
        flip_y=column("flip_vertical", flip=True),
        height=float(size),
        width=float(size),
    )
    ours = keras.ops.image.affine_transform(
        np.repeat(image[None], len(draws), axis=0), transforms, interpolation="bilinear", fill_mode="nearest"
    )
    np.testing.assert_allclose(np.asarray(ours), expected, atol=1e-2)


def test_augment_image_draws_from_its_seed_alone_with_the_layers_meaning():
    """The feature pass's per-image copies: the same seed gives the same copy; flips mirror the image whole,
    brightness adds one value in U(-b, b) of the pixel range to every pixel, clipped to it."""
    import tensorflow as tf

    from classifier.config import TrainConfig
    from classifier.data.augment import augment_image

    size = 12
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    image = np.stack([x * 20, y * 20, (x + y) * 10], axis=-1)

    def copy(seed, **knobs):
        off = dict(rotation=0.0, width_shift=0.0, height_shift=0.0, shear=0.0, zoom=0.0, horizontal_flip=False)
        config = TrainConfig(data="unused", **{**off, **knobs})
        return np.asarray(augment_image(tf.constant(image), config, tf.constant([seed, 7], tf.int64)))

    course_knobs = dict(rotation=40.0, width_shift=0.2, height_shift=0.2, shear=0.2, zoom=0.2, horizontal_flip=True)
    course = [copy(seed, **course_knobs) for seed in (1, 1, 2)]
    np.testing.assert_array_equal(course[0], course[1])
    assert not np.allclose(course[0], course[2])
    flips = [copy(seed, horizontal_flip=True) for seed in range(16)]
    mirrored = [np.allclose(flip, image[:, ::-1], atol=1e-3) for flip in flips]
    assert all(m or np.allclose(flip, image, atol=1e-3) for m, flip in zip(mirrored, flips, strict=True))
    assert 0 < sum(mirrored) < 16
    brighter = [copy(seed, brightness=0.2) - image for seed in range(8)]
    for delta, pixels in ((d, image + d) for d in brighter):
        inside = (pixels > 0) & (pixels < 255)  # not clipped
        assert np.ptp(delta[inside]) < 1e-3 and abs(delta[inside][0]) <= 0.2 * 255
    assert all(0 <= copy(seed, brightness=0.9).min() and copy(seed, brightness=0.9).max() <= 255 for seed in range(4))

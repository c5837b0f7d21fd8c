"""On-the-fly augmentation of training images (never of validation or served images).

The knobs are ImageDataGenerator's (tf_keras, Keras 2), the ones the course sets, with its meaning
and its random draws per image:

    --rotation R        angle theta in U(-R, R) degrees                     (rotation_range)
    --width-shift W     horizontal shift in U(-W, W) times the width         (width_shift_range)
    --height-shift H    vertical shift in U(-H, H) times the height          (height_shift_range)
    --shear S           shear ANGLE in U(-S, S) degrees, along x only        (shear_range)
    --zoom Z            zoom_x and zoom_y drawn independently in U(1-Z, 1+Z) (zoom_range; above 1 zooms out)
    --horizontal-flip, --vertical-flip: each with probability 1/2, after the rest

composed as ImageDataGenerator composes them (`apply_affine_transform`): output pixel p, in (x, y)
= (column, row) coordinates about the centre c = ((width - 1) / 2, (height - 1) / 2), samples
the input at

    c + R(theta) . (Shear(s) . Zoom(zoom_x, zoom_y) . Flip . (p - c) + shift)

with R = [[cos, -sin], [sin, cos]] and Shear = [[1, -sin s], [0, cos s]]. So the course's
`shear_range=0.2` is 0.2 degrees (a shift of under half a pixel at 150 px), not a shear factor.
`tests/test_augment.py` checks the output against ImageDataGenerator's for the same draws.

One deliberate difference: tf_keras's code draws the horizontal shift from height_shift_range and
the vertical one from width_shift_range (its `tx` is `height_shift_range * rows`, applied along
the columns); here each shift goes the way its name and ImageDataGenerator's documentation say.
With the course's equal values (0.2 and 0.2) on square images the two are the same distribution.
`--brightness` is not ImageDataGenerator's `brightness_range` (a factor) but Keras'
RandomBrightness (an added fraction of the pixel range); the course does not use either.

Everything geometric is ONE transform per image, applied with a single bilinear resampling
(`keras.ops.image.affine_transform`, edges filled with the nearest pixel, as ImageDataGenerator's
defaults). Keras' separate RandomRotation/Translation/Shear/Zoom layers resample the image four
times: four times the work and four rounds of interpolation blur.
"""

from __future__ import annotations

import math

from .._tf import keras, tf

ops = keras.ops

# The config fields that shape augmented images: the feature cache keys augmented copies on them.
GEOMETRY_FIELDS = ("rotation", "width_shift", "height_shift", "shear", "zoom", "horizontal_flip", "vertical_flip")
AUGMENTATION_FIELDS = (*GEOMETRY_FIELDS, "brightness")


def affine_transforms(theta, shift_x, shift_y, shear, zoom_x, zoom_y, flip_x, flip_y, height, width):
    """Keras' projective transforms (N, 8) for per-image parameters (N,): the formula in the module docstring.

    Angles in degrees, shifts in pixels, flips as -1 (mirrored) or 1. A row [a0, a1, a2, b0, b1, b2, 0, 0]
    maps output pixel (x, y) to input point (a0 x + a1 y + a2, b0 x + b1 y + b2).
    """
    theta, shear = theta * (math.pi / 180), shear * (math.pi / 180)
    # R(theta) . Shear(s) = [[cos theta, -sin(theta + s)], [sin theta, cos(theta + s)]]; Zoom . Flip scale its columns.
    a00, a10 = ops.cos(theta) * zoom_x * flip_x, ops.sin(theta) * zoom_x * flip_x
    a01, a11 = -ops.sin(theta + shear) * zoom_y * flip_y, ops.cos(theta + shear) * zoom_y * flip_y
    cx, cy = (width - 1) / 2, (height - 1) / 2
    # The shift is rotated too: ImageDataGenerator multiplies R . Shift . Shear . Zoom.
    tx = ops.cos(theta) * shift_x - ops.sin(theta) * shift_y
    ty = ops.sin(theta) * shift_x + ops.cos(theta) * shift_y
    zeros = ops.zeros_like(a00)
    return ops.stack(
        [a00, a01, cx - a00 * cx - a01 * cy + tx, a10, a11, cy - a10 * cx - a11 * cy + ty, zeros, zeros], axis=1
    )


def random_transforms(geometry: dict, uniform, n, height, width):
    """The transforms (n, 8) of `geometry`'s knobs (GEOMETRY_FIELDS: the module docstring's draws), each
    parameter drawn by `uniform(limit)`: (n,) values in U(-limit, limit)."""

    def flip(enabled):  # -1 (mirrored) with probability 1/2
        return ops.where(uniform(1.0) < 0, -1.0, 1.0) if enabled else ops.ones((n,))

    return affine_transforms(
        theta=uniform(geometry["rotation"]),
        shift_x=uniform(geometry["width_shift"]) * width,
        shift_y=uniform(geometry["height_shift"]) * height,
        shear=uniform(geometry["shear"]),
        zoom_x=1.0 + uniform(geometry["zoom"]),
        zoom_y=1.0 + uniform(geometry["zoom"]),
        flip_x=flip(geometry["horizontal_flip"]),
        flip_y=flip(geometry["vertical_flip"]),
        height=height,
        width=width,
    )


class RandomAffine(keras.layers.Layer):
    """ImageDataGenerator's random rotation, shifts, shear, zoom and flips (module docstring), one resampling."""

    def __init__(
        self,
        rotation=0.0,
        width_shift=0.0,
        height_shift=0.0,
        shear=0.0,
        zoom=0.0,
        horizontal_flip=False,
        vertical_flip=False,
        fill_mode="nearest",
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.rotation, self.width_shift, self.height_shift = rotation, width_shift, height_shift
        self.shear, self.zoom, self.fill_mode = shear, zoom, fill_mode
        self.horizontal_flip, self.vertical_flip, self.seed = horizontal_flip, vertical_flip, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=True):
        if not training:
            return images
        shape = ops.shape(images)
        n, height, width = shape[0], ops.cast(shape[1], "float32"), ops.cast(shape[2], "float32")

        def uniform(limit):
            return keras.random.uniform((n,), -limit, limit, seed=self.seed_generator)

        geometry = {name: getattr(self, name) for name in GEOMETRY_FIELDS}
        transforms = random_transforms(geometry, uniform, n, height, width)
        return ops.image.affine_transform(images, transforms, interpolation="bilinear", fill_mode=self.fill_mode)

    def get_config(self):
        return {
            **super().get_config(),
            **{name: getattr(self, name) for name in (*GEOMETRY_FIELDS, "fill_mode", "seed")},
        }


def make_augmenter(config, seed: int = 0):
    """The augmentation for `config`'s knobs as a Keras model, or None when nothing is on."""
    if not config.augment:
        return None
    layers = []
    geometry = {name: getattr(config, name) for name in GEOMETRY_FIELDS}
    if any(geometry.values()):
        layers.append(RandomAffine(**geometry, seed=seed))
    if config.brightness:
        layers.append(keras.layers.RandomBrightness(config.brightness, value_range=(0, 255), seed=seed))
    return keras.Sequential(layers, name="augmentation") if layers else None


def augment_image(image, config, seed):
    """One augmented copy of one image (H, W, 3), float pixels 0..255: `make_augmenter(config)`'s
    augmentation (the same draws' distribution, one resampling, then the brightness change), its draws
    made from `seed` alone (a [2] integer tensor: a stateless draw, the same copy for the same seed
    whatever runs before it or beside it)."""
    draws = iter(tf.unstack(tf.random.stateless_uniform([8], seed, -1.0, 1.0)))  # 7 geometric at most, brightness

    def uniform(limit):  # the next draw in U(-limit, limit), as a (1,) tensor
        return next(draws)[None] * limit

    geometry = {name: getattr(config, name) for name in GEOMETRY_FIELDS}
    if any(geometry.values()):
        height, width = (tf.cast(side, tf.float32) for side in tf.unstack(tf.shape(image)[:2]))
        transforms = random_transforms(geometry, uniform, 1, height, width)
        image = ops.image.affine_transform(image[None], transforms, interpolation="bilinear", fill_mode="nearest")[0]
    if config.brightness:  # Keras' RandomBrightness: U(-b, b) of the pixel range added, then clipped to it
        image = tf.clip_by_value(image + uniform(config.brightness) * 255.0, 0.0, 255.0)
    return image

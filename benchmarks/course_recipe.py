"""The course's transfer-learning recipe, run the way the course runs it: the baseline we compare to.

tf_keras (Keras 2) ImageDataGenerator.flow_from_directory, rescale 1/255, rotation 40, width and
height shift, shear and zoom 0.2, horizontal flip, 150x150, batch 20; InceptionV3 up to mixed7 ->
Flatten -> Dense 1024 relu -> Dropout 0.2 -> Dense 1 sigmoid; RMSprop 1e-4; binary cross-entropy.
(The course rescales to [0, 1] while InceptionV3 was trained on [-1, 1]; we keep that as is, since
reproducing the recipe is the point.)
"""

from __future__ import annotations

import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

IMAGE_SIZE = (150, 150)
BATCH_SIZE = 20


def generators(data_dir: str | Path, augment: bool = True):
    """(train, validation) iterators exactly as the course builds them."""
    from tf_keras.preprocessing.image import ImageDataGenerator

    data_dir = Path(data_dir)
    train_gen = ImageDataGenerator(
        rescale=1.0 / 255,
        **(
            dict(
                rotation_range=40,
                width_shift_range=0.2,
                height_shift_range=0.2,
                shear_range=0.2,
                zoom_range=0.2,
                horizontal_flip=True,
            )
            if augment
            else {}
        ),
    )
    val_gen = ImageDataGenerator(rescale=1.0 / 255)
    train = train_gen.flow_from_directory(
        data_dir / "train", batch_size=BATCH_SIZE, class_mode="binary", target_size=IMAGE_SIZE
    )
    validation = val_gen.flow_from_directory(
        data_dir / "validation", batch_size=BATCH_SIZE, class_mode="binary", target_size=IMAGE_SIZE
    )
    return train, validation


def model(weights: str, cut_layer: str = "mixed7", backbone: str = "inception_v3", alpha: float = 1.0):
    """The course model on `weights` (a Keras weights file), backbone frozen."""
    import tf_keras

    shape = (*IMAGE_SIZE, 3)
    if backbone == "inception_v3":
        base = tf_keras.applications.InceptionV3(include_top=False, weights=None, input_shape=shape)
        base.load_weights(weights)
        features = base.get_layer(cut_layer).output
    elif backbone == "mobilenet_v2":
        base = tf_keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=shape, alpha=alpha)
        base.load_weights(weights)
        features = base.output
    else:
        raise ValueError(f"course recipe: no backbone {backbone}")
    for layer in base.layers:
        layer.trainable = False
    x = tf_keras.layers.Flatten()(features)
    x = tf_keras.layers.Dense(1024, activation="relu")(x)
    x = tf_keras.layers.Dropout(0.2)(x)
    outputs = tf_keras.layers.Dense(1, activation="sigmoid")(x)
    net = tf_keras.Model(base.input, outputs)
    net.compile(
        optimizer=tf_keras.optimizers.RMSprop(learning_rate=1e-4), loss="binary_crossentropy", metrics=["accuracy"]
    )
    return net


def run(
    data_dir, weights: str, epochs: int = 20, backbone: str = "inception_v3", alpha: float = 1.0, log=print
) -> dict:
    """Train the course recipe; returns wall time, per-epoch seconds and validation accuracy."""
    import tf_keras

    started = time.time()
    train, validation = generators(data_dir)
    net = model(weights, backbone=backbone, alpha=alpha)
    epoch_seconds = []

    class Timer(tf_keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.time()

        def on_epoch_end(self, epoch, logs=None):
            epoch_seconds.append(time.time() - self.t)
            log(
                f"  course epoch {epoch + 1}/{epochs}: val_accuracy {logs['val_accuracy']:.4f} "
                f"({epoch_seconds[-1]:.0f} s; load average {os.getloadavg()[0]:.2f})"
            )

    history = net.fit(train, validation_data=validation, epochs=epochs, verbose=0, callbacks=[Timer()])
    return {
        "seconds": time.time() - started,
        "epoch_seconds": epoch_seconds,
        "val_accuracy": history.history["val_accuracy"],
    }

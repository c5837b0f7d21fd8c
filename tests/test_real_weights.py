"""Real transfer learning on real photos, with the real ImageNet InceptionV3 from ../shared.

Skipped on a user's clone, where ../shared (weights and the course's photos) is absent.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SHARED, tiny_config

from classifier.data.pipeline import load_image_data
from classifier.model.network import head
from classifier.predict import Predictor
from classifier.train import train
from classifier.training.features import FeatureCache, content_hashes

WEIGHTS = SHARED / "weights" / "inception_v3_no_top_to_mixed8.h5"
PHOTOS = SHARED / "data" / "cats_dogs"

pytestmark = pytest.mark.skipif(
    not (WEIGHTS.is_file() and PHOTOS.is_dir()),
    reason="needs ../shared/weights and ../shared/data/cats_dogs beside the repo",
)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """60 training photos per class and 40 held-out ones, linked from ../shared (nothing copied)."""
    root = tmp_path_factory.mktemp("cats_dogs")
    for split, count in (("train", 60), ("validation", 40)):
        for name in ("cats", "dogs"):
            folder = root / split / name
            folder.mkdir(parents=True)
            for photo in sorted((PHOTOS / split / name).iterdir())[:count]:
                (folder / photo.name).symlink_to(photo)
    return root


@pytest.fixture(scope="module")
def real_model(photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("real") / "cats_dogs"
    config = tiny_config(
        photos,
        out,
        weights=str(WEIGHTS),
        cut_layer=None,
        image_size=150,
        dense_units=1024,
        learning_rate=1e-4,
        epochs=2,
        feature_batch_size=16,  # 8 steps an epoch: a larger batch leaves the head's start to decide
        augment_copies=0,
        cache_dir=str(tmp_path_factory.mktemp("cache")),
    )
    return train(config, log=lambda *_: None)


@pytest.fixture(scope="module")
def served(real_model, photos):
    """(the held-out split, the saved model served on it: its Predictor and probabilities), computed once."""
    held_out = load_image_data(photos).validation
    predictor = Predictor(real_model.model_dir)
    return held_out, predictor, predictor.predict_proba(held_out.paths)


def test_real_weights_classify_held_out_photos_well_above_chance(served):
    held_out, predictor, probabilities = served
    accuracy = float(np.mean(probabilities.argmax(axis=1) == np.asarray(held_out.labels)))
    assert accuracy >= 0.85, accuracy
    assert predictor.class_names == ["cats", "dogs"]


def test_model_trained_from_cache_predicts_real_photos_exactly_like_end_to_end(real_model, served):
    """Training read the photos with tf.data, serving with Pillow: the pixels and so the outputs agree."""
    from classifier.config import TrainConfig

    held_out, _, end_to_end = served
    cache = FeatureCache.for_config(TrainConfig.from_dict(real_model.metadata.config))
    cached = np.stack(cache.read([(sha, cache.variant(0)) for sha in content_hashes(held_out.paths)]))
    from_cache = head(real_model.model)(cached, training=False).numpy()
    np.testing.assert_allclose(end_to_end, from_cache, atol=1e-5)

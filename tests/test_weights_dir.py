"""`--weights-dir DIR` (or $CLASSIFIER_WEIGHTS_DIR): --weights imagenet finds each backbone's file by its documented
names, worked out once in resolve(); `--preset NAME` fills the fields still at their defaults. Lookups only: empty
files named right stand for the weights (nothing here loads them), except where ../shared/weights is used."""

from __future__ import annotations

import dataclasses

import pytest
from conftest import SHARED

from classifier.config import TrainConfig
from classifier.errors import UsageError
from classifier.model.backbones import BACKBONES, WEIGHTS_DIR_ENV, resolve
from classifier.model.presets import PRESETS, apply_preset
from classifier.train import build_parser

SHARED_WEIGHTS = SHARED / "weights"
INCEPTION_FILES = ("inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5", "inception_v3_no_top_to_mixed8.h5")


@pytest.fixture(autouse=True)
def no_weights_dir_in_the_environment(monkeypatch):
    monkeypatch.delenv(WEIGHTS_DIR_ENV, raising=False)


def folder_of(path, *names):
    """A weights folder holding empty files of these names."""
    path.mkdir()
    for name in names:
        (path / name).touch()
    return path


def parts(config: TrainConfig) -> list[TrainConfig]:
    """Each backbone of a combined config, its preset applied, as a config of its own (the `+` of issue 24's combined
    backbones): without the preset, which would set the backbone again where a part is the default's."""
    return [dataclasses.replace(config, backbone=part, preset=None) for part in config.backbone.split("+")]


@pytest.mark.skipif(not SHARED_WEIGHTS.is_dir(), reason="needs ../shared/weights beside the repo")
def test_the_accurate_preset_finds_every_part_s_file_in_the_shared_weights_folder_as_named_today():
    config = apply_preset(TrainConfig(data="unused", preset="accurate", weights_dir=str(SHARED_WEIGHTS)))
    assert config.backbone == PRESETS["accurate"]["backbone"]
    files = {part.backbone: resolve(part).weights for part in parts(config)}
    assert files == {
        "inception_v3": str(SHARED_WEIGHTS / "inception_v3_no_top_to_mixed8.h5"),
        "efficientnet_lite2": str(SHARED_WEIGHTS / "efficientnet_lite2_imagenet_notop.keras"),
    }
    for alpha in (0.35, 1.0):  # and both MobileNetV2 files, by the names they have there
        mobilenet = resolve(
            TrainConfig(data="unused", backbone="mobilenet_v2", alpha=alpha, weights_dir=str(SHARED_WEIGHTS))
        )
        assert mobilenet.weights == str(SHARED_WEIGHTS / f"mobilenet_v2_{alpha}_224_no_top.h5")


def test_a_weights_dir_missing_a_part_s_file_names_the_backbone_and_the_file_in_one_line(tmp_path):
    folder = folder_of(tmp_path / "weights", INCEPTION_FILES[1])
    config = apply_preset(TrainConfig(data="unused", preset="accurate", weights_dir=str(folder)))
    inception, lite2 = parts(config)
    assert resolve(inception).weights == str(folder / INCEPTION_FILES[1])
    with pytest.raises(UsageError) as error:
        resolve(lite2)
    message = str(error.value)
    assert "\n" not in message and message.startswith("--backbone efficientnet_lite2: its ImageNet network comes only")
    assert f"{folder} has no efficientnet_lite2_imagenet_notop.keras" in message
    with pytest.raises(UsageError, match=r"no weights folder was given.*pass --weights-dir DIR"):
        resolve(TrainConfig(data="unused", backbone="efficientnet_lite2"))  # and without any folder
    with pytest.raises(UsageError) as error:
        resolve(TrainConfig(data="unused", backbone="resnet50", weights_dir=str(folder)))
    assert str(error.value) == (
        f"--weights-dir {folder}: no ImageNet weights file for resnet50 in it (expected "
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5); add it, or leave --weights-dir out to use Keras' "
        "download"
    )
    with pytest.raises(UsageError, match="not a folder"):
        resolve(TrainConfig(data="unused", weights_dir=str(tmp_path / "nowhere")))


def test_keras_download_names_come_first_and_every_registry_backbone_documents_its_names(tmp_path):
    folder = folder_of(tmp_path / "weights", *INCEPTION_FILES, "mobilenet_v2_1.0_224_no_top.h5")
    assert resolve(TrainConfig(data="unused", weights_dir=str(folder))).weights == str(folder / INCEPTION_FILES[0])
    # MobileNetV2: Keras' file for the size it would pick, else its 224 px one, else ../shared's name.
    (folder / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_160_no_top.h5").touch()
    chosen = {
        size: resolve(TrainConfig(data="unused", backbone="mobilenet_v2", weights_dir=str(folder), image_size=size))
        for size in (160, 200)
    }
    assert chosen[160].weights.endswith("_1.0_160_no_top.h5") and chosen[200].weights.endswith("1.0_224_no_top.h5")
    for name, backbone in BACKBONES.items():
        assert bool(backbone.weights_files(1.0, 224)) == backbone.pretrained, name  # the table in docs/training.md


def test_the_environment_s_folder_falls_back_quietly_and_the_bundled_file_needs_no_folder(tmp_path, monkeypatch):
    folder = folder_of(tmp_path / "weights", INCEPTION_FILES[1])
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(folder))
    config = resolve(TrainConfig(data="unused"))
    assert config.weights == str(folder / INCEPTION_FILES[1]) and config.weights_dir is None
    assert resolve(config) == config  # resolving again changes nothing
    assert resolve(TrainConfig(data="unused", backbone="resnet50")).weights == "imagenet"  # Keras' download
    # MobileNetV2 0.35 ships in the package: a folder without it is no error, even given on the command line.
    fast = resolve(TrainConfig(data="unused", preset="fast", weights_dir=str(folder)))
    assert fast.weights == "imagenet" and fast.weights_dir == str(folder)
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(UsageError, match=f"^{WEIGHTS_DIR_ENV} .*nowhere: not a folder"):
        resolve(TrainConfig(data="unused"))


def test_a_preset_fills_only_the_fields_left_at_their_defaults_and_the_flags_exist():
    args = build_parser().parse_args(["--data", "x", "--preset", "fast", "--image-size", "160", "--weights-dir", "w"])
    given = TrainConfig.from_args(args)
    assert (given.preset, given.weights_dir) == ("fast", "w")
    preset = apply_preset(given)
    assert (preset.backbone, preset.alpha, preset.image_size) == ("mobilenet_v2", 0.35, 160)
    mine = apply_preset(TrainConfig(data="x", preset="fast", backbone="mobilenet_v2", alpha=0.5))
    assert (mine.backbone, mine.alpha) == ("mobilenet_v2", 0.5)  # a value given other than the default wins
    assert apply_preset(TrainConfig(data="x", preset="default")) == TrainConfig(data="x", preset="default")
    fields = {field.name for field in dataclasses.fields(TrainConfig)}
    accurate = apply_preset(TrainConfig(data="x", preset="accurate"))
    assert all(getattr(accurate, name) == value for name, value in PRESETS["accurate"].items() if name in fields)
    with pytest.raises(UsageError, match=r"^--preset best: unknown preset \(choose from default, fast, accurate\)$"):
        resolve(TrainConfig(data="x", preset="best"))

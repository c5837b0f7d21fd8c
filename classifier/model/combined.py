"""Combined backbones: `--backbone a+b`, several frozen pretrained backbones in one model, their features joined.

Each part may carry its own size, `inception_v3@150+mobilenet_v2@224`; a part without one takes `--image-size`
when given, else its own default size. Every part is resolved as an ordinary single-backbone TrainConfig
(`parts`): its cut layer, weights (its bundled or downloaded ImageNet weights, `keras:FILE`'s own) and alpha
(mobilenet_v2 parts take `--alpha`, the others keep 1.0) are what that backbone alone would train with, so its
feature-cache entries are that backbone's own (training/features.py adds the model's size to the key of a part
fed resized pixels). The model's input size S is the largest part's: network.build_model resizes the image to S
once and each smaller part resizes S to its own size inside the model, so serving, LiteRT and exports feed one
size as for any model.

A resolved combined config names every part's size (`backbone` "inception_v3@150+mobilenet_v2@224", `image_size`
S, `cut_layer` the parts' cuts joined by "+", "mixed7+top"), so resolving it again changes nothing and
metadata.json records what was combined. `augment_copies`, when not given, is the largest of the parts' defaults:
an augmented copy k is one draw on the S-sized image, the same for every part.

Refused, one line each: `--weights FILE` (one file cannot hold several networks: each part finds its own),
`--weights none` or a part without pretrained weights (parts are frozen features), `--cut-layer` (each part cuts
at its own default), fine-tuning, `--alpha` when no part is a mobilenet_v2, a `hub:` part, a repeated part, an
empty part, and `--image-size` when every part names a smaller or larger size of its own.
"""

from __future__ import annotations

import dataclasses

from ..config import TrainConfig
from ..console import Log, say
from ..errors import UsageError
from .backbones import get_backbone, resolve
from .metadata import HUB_PREFIX, PART_SEPARATOR, SIZE_MARK, backbone_parts


def is_combined(backbone: str) -> bool:
    """Whether `--backbone` names several parts (or one part with an @SIZE): `resolve_combined`'s to resolve."""
    return PART_SEPARATOR in str(backbone) or backbone_parts(backbone)[0][1] is not None


def resolve_combined(config: TrainConfig, log: Log = say) -> TrainConfig:
    """A combined `config` checked and resolved (see the module docstring); a single `NAME@SIZE` becomes NAME at
    --image-size SIZE and is resolved as any single backbone."""
    items = backbone_parts(config.validate().backbone)
    if len(items) == 1:
        (name, size), given = items[0], config.image_size
        if given not in (None, size):
            raise UsageError(f"--image-size {given}: --backbone {config.backbone} names its size; give one of them")
        return resolve(dataclasses.replace(config, backbone=name, image_size=size), log)
    _refuse_options(config)
    resolved = parts(config)
    size = max(part.image_size for part in resolved)
    if config.image_size not in (None, size) and all(given for _, given in items):
        raise UsageError(
            f"--image-size {config.image_size}: every part of --backbone {config.backbone} names its size, so the "
            f"model takes the largest, {size} px; leave --image-size out"
        )
    copies = max(part.augment_copies for part in resolved) if config.augment_copies is None else config.augment_copies
    return dataclasses.replace(
        config,
        backbone=PART_SEPARATOR.join(f"{part.backbone}{SIZE_MARK}{part.image_size}" for part in resolved),
        image_size=size,
        cut_layer=PART_SEPARATOR.join(part.cut_layer for part in resolved),
        augment_copies=copies,
        fine_tune_from=None,
    )


def parts(config: TrainConfig) -> list[TrainConfig]:
    """Each part of a combined `config` as the resolved config that backbone alone would train with (its own size,
    cut, weights and alpha; every other option the combined one's); [config] itself for a single backbone."""
    items = backbone_parts(config.backbone)
    if len(items) == 1 and items[0][1] is None:
        return [config]
    names = [name for name, _ in items]
    for name in names:
        _check_part(config.backbone, name, names)
    return [
        resolve(
            dataclasses.replace(
                config,
                backbone=name,
                image_size=size or config.image_size,
                cut_layer=None,
                fine_tune_from=None,
                alpha=config.alpha if get_backbone(name).takes_alpha else 1.0,
                augment_copies=config.augment_copies,
            ),
            log=lambda *_: None,  # nothing to say: a part with something to say (no pretrained weights) is refused
        )
        for name, size in items
    ]


def _check_part(backbone: str, name: str, names: list[str]) -> None:
    """Refuse a part that cannot be one: empty, hub:, repeated, or without pretrained weights."""
    if not name:
        raise UsageError(f"--backbone {backbone}: an empty part; join backbone names with {PART_SEPARATOR}")
    if name.startswith(HUB_PREFIX):
        raise UsageError(f"--backbone {backbone}: a hub: backbone cannot be part of a combined backbone")
    if names.count(name) > 1:
        raise UsageError(f"--backbone {backbone}: {name} is named twice; name each part once")
    if not get_backbone(name).pretrained:
        raise UsageError(
            f"--backbone {backbone}: {name} has no pretrained weights; the parts of a combined backbone are frozen "
            "pretrained networks"
        )


def _refuse_options(config: TrainConfig) -> None:
    """The options a combined backbone cannot take, each refused naming itself (a resolved config passes)."""
    what = f"a combined backbone ({config.backbone})"
    if config.weights == "none":
        raise UsageError(f"--weights none: {what} joins frozen pretrained features; train one backbone from scratch")
    if config.weights != "imagenet":
        raise UsageError(
            f"--weights {config.weights}: one file cannot hold the weights of {what}; put each part's file in a "
            "folder under its documented name and pass --weights-dir DIR"
        )
    if config.fine_tune_epochs:
        raise UsageError(f"--fine-tune-epochs {config.fine_tune_epochs}: {what} cannot be fine-tuned; leave it at 0")
    if config.fine_tune_from:
        raise UsageError(f"--fine-tune-from {config.fine_tune_from}: {what} cannot be fine-tuned")
    if config.alpha != 1.0 and not any(get_backbone(name).takes_alpha for name, _ in backbone_parts(config.backbone)):
        raise UsageError(f"--alpha {config.alpha}: only mobilenet_v2 has a width multiplier, and {what} has none")
    if config.cut_layer is not None:
        own = PART_SEPARATOR.join(part.cut_layer for part in parts(dataclasses.replace(config, cut_layer=None)))
        if config.cut_layer != own:
            raise UsageError(
                f"--cut-layer {config.cut_layer}: {what} cuts each part at its own default layer; leave --cut-layer "
                "out, or train that backbone alone to choose its cut"
            )

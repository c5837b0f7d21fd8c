"""Named recipes: `--preset NAME` sets the TrainConfig fields its entry names, in one table.

The rule, applied once by `resolve()` (backbones.py) before anything else is worked out: a field the preset names
takes the preset's value only while it still holds its dataclass default, so an option given with another value
wins over the preset. (An option given on the command line with its default value cannot be told from one not
given: `--preset fast --backbone inception_v3` still trains the preset's backbone; say `--backbone inception_v3`
without a preset instead.) A resolved config keeps `preset`, so `metadata.json` says which recipe made a model.
"""

from __future__ import annotations

import dataclasses

from ..config import TrainConfig
from ..errors import UsageError

# name -> the TrainConfig fields it sets. The lead fixes "accurate" from the measurements (benchmarks/accuracy.py).
PRESETS: dict[str, dict] = {
    # The course's recipe: InceptionV3 cut at mixed7, 150 px (every field at its default).
    "default": {"backbone": "inception_v3"},
    # The fastest: MobileNetV2 0.35, whose ImageNet weights ship in the package (no download, no weights dir).
    "fast": {"backbone": "mobilenet_v2", "alpha": 0.35},
    # The best test accuracy measured (issue 24; benchmarks/accuracy.py, figures in the README): InceptionV3 mixed7
    # (150 px) and EfficientNet-Lite2 (260 px) features together, the mirror image averaged, the head refit on
    # train + validation. No augmented copies: Lite2's default 2 would cost each part two more passes per photo,
    # over the 5x budget, for +0.7 pp at best in the probe with mirrored copies.
    "accurate": {
        "backbone": "inception_v3+efficientnet_lite2",
        "augment_copies": 0,
        "flip_average": True,
        "refit": True,
    },
}


def apply_preset(config: TrainConfig) -> TrainConfig:
    """`config` with its preset's fields filled where they still hold their defaults (see the module docstring);
    fields a preset names that this version's TrainConfig lacks are left out. A config derived from the result
    with another backbone (a part of a combined one) drops `preset`, or this would set its backbone again."""
    if config.preset is None:
        return config
    if config.preset not in PRESETS:
        raise UsageError(f"--preset {config.preset}: unknown preset (choose from {', '.join(PRESETS)})")
    defaults = {field.name: field.default for field in dataclasses.fields(TrainConfig)}
    chosen = {
        name: value
        for name, value in PRESETS[config.preset].items()
        if name in defaults and getattr(config, name) == defaults[name]
    }
    return dataclasses.replace(config, **chosen)

"""Fine-tuning: once the head has trained, unfreeze the top of the backbone and train on, gently.

The layers from `--fine-tune-from` (default: the backbone's own choice, see backbones.py) to the
cut become trainable; everything below stays frozen. BatchNormalization layers stay frozen too:
the backbone is called with training=False, so they normalise with their ImageNet statistics, and
trainable=False keeps their gamma and beta fixed, as the Keras transfer-learning guide advises;
otherwise a few small batches would wreck what the network learnt. The small learning rate
(`--fine-tune-learning-rate`, 1e-5) keeps the pretrained weights close to where they were.
"""

from __future__ import annotations

from .._tf import keras
from ..config import TrainConfig
from ..errors import UsageError
from .backbones import HUB_PREFIX

BACKBONE_LAYER = "backbone"  # the name build_feature_extractor gives the backbone inside the model


def fine_tune_layer(model, config: TrainConfig) -> str | None:
    """Check a resolved config's fine-tuning options against the built model (before any training); the first
    layer to unfreeze, or None when the run does not fine-tune."""
    if not config.fine_tune_epochs:
        return None
    if not config.transfer:
        raise UsageError(
            f"--fine-tune-epochs {config.fine_tune_epochs}: with --weights none the whole network already trains; "
            "there is nothing to unfreeze"
        )
    if config.backbone.startswith(HUB_PREFIX):
        raise UsageError(
            f"--fine-tune-epochs {config.fine_tune_epochs}: a hub: backbone is one frozen layer and cannot be "
            "fine-tuned"
        )
    names = [layer.name for layer in model.get_layer(BACKBONE_LAYER).layers]
    if config.fine_tune_from not in names:
        raise UsageError(
            f"--fine-tune-from {config.fine_tune_from}: {config.backbone} cut at {config.cut_layer} has no layer of "
            "that name; pick one from its summary()"
        )
    return config.fine_tune_from


def unfreeze_from(model, layer_name: str) -> int:
    """Make the backbone trainable from `layer_name` on, BatchNorm excepted; returns how many layers now train."""
    features = model.get_layer(BACKBONE_LAYER)
    names = [layer.name for layer in features.layers]
    first = names.index(layer_name)
    features.trainable = True  # sets every sublayer; then freeze the ones below the start and every BatchNorm
    for index, layer in enumerate(features.layers):
        layer.trainable = index >= first and not isinstance(layer, keras.layers.BatchNormalization)
    return sum(1 for layer in features.layers if layer.trainable and layer.weights)

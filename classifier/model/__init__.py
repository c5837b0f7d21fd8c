"""The model: a pretrained backbone and a small head in one Keras model, and the folder that carries it.

Training builds it, evaluation and serving read it: the backbones (the bundled ImageNet weights in weights/, hub:
handles and their check), fine-tuning's layer choice, the folder's format (metadata.json, atomic writes, safe
loading), and the patches of Keras internals.
"""

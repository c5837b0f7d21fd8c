"""Transfer-learning image classifier: folder of images -> frozen pretrained backbone + small head.

The package reads as the pipeline: data -> model -> train -> evaluate -> export -> predict.
"""
import os

# TensorFlow's C++ start-up chatter (CPU feature notes, oneDNN) hides our own output; keep errors.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

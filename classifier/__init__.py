"""Transfer-learning image classifier: folder of images -> frozen pretrained backbone + small head.

The package reads as the pipeline: data -> model -> train -> evaluate -> export -> predict.
"""

__version__ = "0.1.0"

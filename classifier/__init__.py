"""Transfer-learning image classifier: folder of images -> frozen pretrained backbone + small head.

The package reads as the pipeline, one subpackage per stage: data/ (image folders -> tf.data pipelines),
model/ (backbones, the Keras network, the model folder), training/ (the feature cache, control, distribution),
evaluation/ (metrics, the "not sure" rule, plots), serving/ (the app, the batch engine). The commands users run
(`python -m classifier.train`, `predict`, `evaluate`, `export`, `deploy`, `datasets`, `shapes`, `batch_predict`,
`batch_features`), TrainConfig (config.py) and the plumbing every stage uses (errors, console, _tf) stay at the top.
"""

__version__ = "0.1.0"

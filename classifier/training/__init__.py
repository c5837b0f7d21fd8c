"""What `classifier.train` runs besides the model: the feature cache, control, distribution.

The feature cache (and its storage) that lets the head train on stored backbone outputs, early stopping and
checkpoints to resume from, and the tf.distribute strategy and precision a run uses.
"""

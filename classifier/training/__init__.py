"""What `classifier.train` runs: `train()` and its steps (pipeline.py), the feature cache, control, distribution.

The run itself, the feature cache (and its storage) that lets the head train on stored backbone outputs, early
stopping and checkpoints to resume from, and the tf.distribute strategy and precision a run uses.
"""

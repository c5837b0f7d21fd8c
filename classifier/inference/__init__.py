"""A trained model answering: `Predictor` (predictor.py), `BatchedPredictor` (batched.py), the runtime (runtime.py).

`Predictor` loads a model folder once and turns images into probabilities per class; runtime.py runs its backbone in
LiteRT (converted once per machine and cached) or TensorFlow, the head in TensorFlow; `BatchedPredictor` merges the
model calls of many threads into batches (the app's).
"""

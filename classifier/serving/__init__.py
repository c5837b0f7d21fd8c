"""A trained model at work: the app and the engine behind the batch commands.

The Gradio page (its Train tab, training jobs, guards and limits), models shared across requests, the Apache
Beam engine and handlers of `classifier.batch_predict` / `classifier.batch_features`, and export's agreement check.
"""

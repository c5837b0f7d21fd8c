"""A trained model at work: the web app.

The Gradio page (its Train tab, training jobs, guards and limits), the models it offers, loaded once and shared
across requests (library.py), and export's agreement check. What answers is inference/ (Predictor); the batch
commands run on Beam in batch/.
"""

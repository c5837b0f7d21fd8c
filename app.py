"""Gradio app (placeholder until the app issue lands): use `python -m classifier.predict` meanwhile."""
import sys

if __name__ == "__main__":
    sys.exit("The web app is not built yet; use: python -m classifier.predict MODEL_DIR IMAGE")

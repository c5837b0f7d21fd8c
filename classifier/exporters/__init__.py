"""Exports of a model folder for serving elsewhere: `export_model` / `ExportOptions` (export.py), one module per
format (savedmodel.py, tflite.py) behind the registry (registry.py), and the check every export passes (check.py)."""

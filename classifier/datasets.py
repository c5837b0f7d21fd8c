"""`python -m classifier.datasets`: the command; the library is classifier/data/datasets.py."""

import sys

from .data.datasets import known_names, load_registry, main, prepare, resolve_data

__all__ = ["known_names", "load_registry", "main", "prepare", "resolve_data"]

if __name__ == "__main__":
    sys.exit(main())

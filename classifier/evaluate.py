"""`python -m classifier.evaluate`: the command; the library is classifier/evaluation/report.py."""

import sys

from .evaluation.report import build_parser, evaluate, main, write_report

__all__ = ["build_parser", "evaluate", "main", "write_report"]

if __name__ == "__main__":
    sys.exit(main())

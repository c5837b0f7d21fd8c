"""Stage a Hugging Face Space: `python -m classifier.deploy` (the library: classifier/serving/space.py)."""

import sys

from .serving.space import NOT_SERVED, build_parser, gradio_pin, main, read_front_matter, stage_space

__all__ = ["NOT_SERVED", "build_parser", "gradio_pin", "main", "read_front_matter", "stage_space"]

if __name__ == "__main__":
    sys.exit(main())

"""Stage a Hugging Face Space: one folder that runs the app with `python app.py` and nothing else.

    python -m classifier.deploy MODEL_DIR --out DIR [--title TITLE] [--overwrite]

The folder holds app.py, the classifier package, requirements.txt, a README whose front matter
makes it a Gradio Space (sdk_version = the gradio pinned in requirements.txt), .gitattributes
sending big files through Git LFS, and the model under models/NAME. Push it with git or
`huggingface-cli upload`. Written atomically, like a model folder.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path
from typing import Sequence

from .artifacts import check_output_dir, read_metadata, staged_dir
from .errors import ArgumentParser, UsageError, cli
from .serving import is_model_dir

PACKAGE = Path(__file__).resolve().parent
ROOT = PACKAGE.parent  # the source checkout: app.py and requirements.txt live here
SPACE_FILES = ("app.py", "requirements.txt")
LFS_PATTERNS = ("*.keras", "*.h5", "*.png", "*.jpg", "*.jpeg", "*.gif", "*.bmp")
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")


def gradio_pin(requirements: str) -> str:
    """The exact gradio version a requirements.txt pins (Spaces install that same one as the SDK)."""
    match = re.search(r"^gradio==([\w.]+)\s*$", requirements, re.MULTILINE)
    if not match:
        raise UsageError("requirements.txt: no exact gradio==VERSION pin, which the Space's sdk_version must equal")
    return match.group(1)


def front_matter(title: str, sdk_version: str) -> str:
    """The YAML block at the top of README.md that tells Hugging Face how to run the Space."""
    return (
        "---\n"
        f"title: {title}\n"
        "emoji: 🖼️\n"
        "colorFrom: blue\n"
        "colorTo: green\n"
        "sdk: gradio\n"
        f"sdk_version: {sdk_version}\n"
        "app_file: app.py\n"
        "pinned: false\n"
        "license: apache-2.0\n"
        "---\n"
    )


def read_front_matter(readme: str) -> dict[str, str]:
    """The `key: value` pairs of a README's front matter ({} when it does not start with one)."""
    if not readme.startswith("---\n"):
        return {}
    block = readme[4:].split("\n---\n", 1)[0]
    return dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)


def space_readme(title: str, sdk_version: str, model_name: str, metadata: dict) -> str:
    classes = metadata["class_names"]
    accuracy = metadata.get("val_accuracy")
    return front_matter(title, sdk_version) + (
        f"\n# {title}\n\n"
        f"An image classifier for {len(classes)} classes "
        f"({', '.join(classes[:20])}{' ...' if len(classes) > 20 else ''}): "
        f"{metadata.get('backbone')} backbone cut at `{metadata.get('cut_layer')}` with a small trained head"
        + (f", validation accuracy {accuracy:.3f}" if isinstance(accuracy, (int, float)) else "")
        + ".\n\n"
        "Drop an image on the page, or call the API:\n\n"
        "```python\n"
        "from gradio_client import Client, handle_file\n\n"
        'Client("OWNER/SPACE").predict(handle_file("photo.jpg"), api_name="/predict")\n'
        "```\n\n"
        "Run it locally from this folder: `pip install -r requirements.txt && python app.py` (model: "
        f"`models/{model_name}/`).\n"
    )


def stage_space(model_dir: str | Path, out: str | Path, title: str | None = None, overwrite: bool = False) -> Path:
    """Write the Space folder `out` for the model folder `model_dir`; returns `out`."""
    model_dir = Path(model_dir)
    if not is_model_dir(model_dir):
        raise UsageError(
            f"{model_dir}: not a model folder (needs metadata.json and model.keras); train one with python -m "
            "classifier.train"
        )
    missing = [name for name in SPACE_FILES if not (ROOT / name).is_file()]
    if missing:
        raise UsageError(
            f"{ROOT}: no {', '.join(missing)} here; run python -m classifier.deploy from a source checkout of the "
            "project"
        )
    out = check_output_dir(out, overwrite)
    if out.resolve() == model_dir.resolve() or model_dir.resolve() in out.resolve().parents:
        raise UsageError(f"--out {out}: must not be inside the model folder {model_dir}")
    name = model_dir.resolve().name
    metadata = read_metadata(model_dir)
    sdk_version = gradio_pin((ROOT / "requirements.txt").read_text())
    with staged_dir(out) as folder:
        for file in SPACE_FILES:
            shutil.copy2(ROOT / file, folder / file)
        shutil.copytree(PACKAGE, folder / "classifier", ignore=IGNORE)
        shutil.copytree(model_dir, folder / "models" / name, ignore=IGNORE)
        (folder / "README.md").write_text(space_readme(title or f"{name} classifier", sdk_version, name, metadata))
        (folder / ".gitattributes").write_text(
            "".join(f"{pattern} filter=lfs diff=lfs merge=lfs -text\n" for pattern in LFS_PATTERNS)
        )
    return out


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m classifier.deploy",
        description="Stage a self-contained Hugging Face Space folder for a trained model.",
        epilog=(
            "Then: cd DIR && huggingface-cli upload OWNER/SPACE . --repo-type space  (or git push to the Space's "
            "repository)"
        ),
    )
    parser.add_argument("model_dir", help="model folder written by python -m classifier.train")
    parser.add_argument("--out", required=True, help="Space folder to write (must not exist unless --overwrite)")
    parser.add_argument("--title", help="the Space's title (default: '<model name> classifier')")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    return parser


@cli
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = stage_space(args.model_dir, args.out, args.title, args.overwrite)
    print(f"staged {out}: run it with  cd {out} && python app.py   then push it to a Space (see README.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

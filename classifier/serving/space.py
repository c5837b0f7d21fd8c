"""Stage a Hugging Face Space: one folder that runs the app with `python app.py` and nothing else
(`stage_space`; the command: `python -m classifier.deploy MODEL_DIR --out DIR [--title TITLE] [--overwrite]`).

The folder holds app.py, the classifier package, a README whose front matter makes it a Gradio
Space, .gitattributes sending big files through Git LFS, and the model under models/NAME. Push it
with git or `huggingface-cli upload`. Written atomically, like a model folder.

The front matter pins what the Space builds with: sdk_version is the gradio pinned in
requirements.txt, python_version the repository README's (the Python CI tests on; Spaces default to
3.10, which the pinned numpy has no wheel for). The Space's requirements.txt is the repository's
with the packages serving never imports left out (`NOT_SERVED`), so the pins live in one place.
The model's copy carries no path of the training machine: absolute paths in its JSON files are
cut to their last part, and the README describes the backbone in words.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from ..atomic import staged_dir, write_json
from ..errors import UsageError
from ..model.artifacts import check_output_dir, is_model_dir, read_metadata
from ..model.metadata import ModelMetadata, public_json

PACKAGE = Path(__file__).resolve().parents[1]  # classifier/, copied whole into the Space
ROOT = PACKAGE.parent  # the source checkout: app.py, requirements.txt and README.md live here
SPACE_FILES = ("app.py", "requirements.txt", "README.md")
# Pinned in requirements.txt for training, never imported by the served app: left out of the Space's requirements.
NOT_SERVED = {
    "matplotlib": "training's plots (classifier.evaluation.plots); the page shows the saved PNGs",
    "tensorflow-hub": "fetching hub: handles at training; a model folder carries its SavedModel in hub/",
}
# Hugging Face refuses files over 10 MB outside Git LFS: models, SavedModel graphs and variables, pictures.
LFS_PATTERNS = ("*.keras", "*.h5", "*.pb", "*.data-*", "*.png", "*.jpg", "*.jpeg", "*.gif", "*.bmp")
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")
# Exports (SavedModel, TFLite) are not served, nor a keras: backbone's copy (model.keras holds the network; the copy
# is for retraining, which a Space does not do).
MODEL_IGNORE = shutil.ignore_patterns(".*", "export", "backbone*.keras")


def gradio_pin(requirements: str) -> str:
    """The exact gradio version a requirements.txt pins (Spaces install that same one as the SDK)."""
    match = re.search(r"^gradio==([\w.]+)\s*$", requirements, re.MULTILINE)
    if not match:
        raise UsageError("requirements.txt: no exact gradio==VERSION pin, which the Space's sdk_version must equal")
    return match.group(1)


def serving_requirements(requirements: str) -> str:
    """requirements.txt without the lines of `NOT_SERVED` packages; comments and every other pin as they are."""
    return "".join(line for line in requirements.splitlines(keepends=True) if _package(line) not in NOT_SERVED)


def _package(line: str) -> str | None:
    """The normalised distribution name a requirements line installs (PEP 503), or None for a comment."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else None


def front_matter(title: str, sdk_version: str, python_version: str) -> str:
    """The YAML block at the top of README.md that tells Hugging Face how to run the Space."""
    return (
        "---\n"
        f"title: {title}\n"
        "emoji: 🖼️\n"
        "colorFrom: blue\n"
        "colorTo: green\n"
        "sdk: gradio\n"
        f"sdk_version: {sdk_version}\n"
        f'python_version: "{python_version}"\n'  # quoted: YAML reads 3.10 as the number 3.1
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
    pairs = (line.split(": ", 1) for line in block.splitlines() if ": " in line)
    return {key: value.strip().strip('"') for key, value in pairs}


def repo_python_version() -> str:
    """The python_version of the repository README's front matter: the Python CI tests the pins on."""
    version = read_front_matter((ROOT / "README.md").read_text()).get("python_version")
    if not version:
        raise UsageError(f"{ROOT / 'README.md'}: no python_version in its front matter, which a Space must set")
    return version


def space_readme(title: str, sdk_version: str, python_version: str, model_name: str, metadata: ModelMetadata) -> str:
    accuracy = metadata.val_accuracy
    return front_matter(title, sdk_version, python_version) + (
        f"\n# {title}\n\n"
        f"An image classifier for {len(metadata.class_names)} classes ({metadata.class_list(20)}). "
        f"Backbone: {metadata.describe_backbone()}"
        + (f"; validation accuracy {accuracy:.3f}" if isinstance(accuracy, (int, float)) else "")
        + (" (before the head was refit on train + validation)" if metadata.refit is not None else "")
        + (
            f"; test accuracy {metadata.test['accuracy']:.3f} on {metadata.test['count']} held-out images"
            if metadata.test is not None
            else ""
        )
        + ".\n\n"
        "Drop an image on the page, or call the API:\n\n"
        "```python\n"
        "from gradio_client import Client, handle_file\n\n"
        'Client("OWNER/SPACE").predict(handle_file("photo.jpg"), api_name="/predict")\n'
        "```\n\n"
        "Run it locally from this folder: `pip install -r requirements.txt && python app.py` (model: "
        f"`models/{model_name}/`).\n"
    )


def is_space_dir(path: Path) -> bool:
    """A folder this command staged: app.py, the classifier package and a README."""
    return (path / "app.py").is_file() and (path / "classifier").is_dir() and (path / "README.md").is_file()


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
    out = check_output_dir(out, overwrite, is_space_dir, "Space folder")
    if out.resolve() == model_dir.resolve() or model_dir.resolve() in out.resolve().parents:
        raise UsageError(f"--out {out}: must not be inside the model folder {model_dir}")
    name = model_dir.resolve().name
    metadata = read_metadata(model_dir)
    requirements = (ROOT / "requirements.txt").read_text()
    sdk_version, python_version = gradio_pin(requirements), repo_python_version()
    with staged_dir(out) as folder:
        shutil.copy2(ROOT / "app.py", folder / "app.py")
        (folder / "requirements.txt").write_text(serving_requirements(requirements))
        shutil.copytree(PACKAGE, folder / "classifier", ignore=IGNORE)
        model_copy = folder / "models" / name
        shutil.copytree(model_dir, model_copy, ignore=MODEL_IGNORE)
        for path in model_copy.glob("*.json"):  # metadata.json, metrics.json: what the page and the repo show
            write_json(path, public_json(json.loads(path.read_text())))
        (folder / "README.md").write_text(
            space_readme(title or f"{name} classifier", sdk_version, python_version, name, metadata)
        )
        (folder / ".gitattributes").write_text(
            "".join(f"{pattern} filter=lfs diff=lfs merge=lfs -text\n" for pattern in LFS_PATTERNS)
        )
    return out

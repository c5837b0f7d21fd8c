"""The staged Hugging Face Space: a folder that runs `python app.py` on its own, tested by running it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import ROOT, free_port, run_main
from gradio_client import Client, handle_file
from huggingface_hub import SpaceCard

from classifier.deploy import main, stage_space
from classifier.model.metadata import ModelMetadata
from classifier.predict import Predictor
from classifier.serving.space import NOT_SERVED, gradio_pin, read_front_matter

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"  # the Python these tests (and CI) run on


def start_space(folder, port: int, log, missing) -> subprocess.Popen:
    """`python app.py` in the Space folder with nothing of the checkout on its path, and the packages in the
    folder `missing` (see `not_installed`) failing to import as if they were not installed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLASSIFIER_", "GRADIO_", "PYTHON"))}
    return subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port)],
        cwd=folder,
        env={**env, "PYTHONPATH": str(missing)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def not_installed(folder, modules) -> None:
    """Modules in `folder` that shadow the installed ones and raise what a missing package raises."""
    folder.mkdir()
    for module in modules:
        (folder / f"{module}.py").write_text(f"raise ModuleNotFoundError(\"No module named '{module}'\")\n")


def test_the_repository_front_matter_pins_the_python_and_gradio_it_is_tested_with():
    card = SpaceCard((ROOT / "README.md").read_text()).data  # real YAML: python_version must stay a string
    assert card.python_version == PYTHON
    assert card.sdk_version == gradio_pin((ROOT / "requirements.txt").read_text())


def wait_until_serving(process: subprocess.Popen, url: str, log_path, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        try:
            urllib.request.urlopen(url + "config", timeout=5)
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"the Space did not start (exit code {process.poll()}):\n{log_path.read_text()}")


def test_staged_space_runs_alone_and_answers(model_dir, shapes_dir, tmp_path):
    space = stage_space(model_dir, tmp_path / "space", title="Shapes demo")
    names = {p.relative_to(space).as_posix() for p in space.rglob("*") if p.is_file()}
    assert {
        "app.py",
        "requirements.txt",
        "README.md",
        ".gitattributes",
        "classifier/predict.py",
        "classifier/serving/app_ui.py",
    } <= names
    assert {f"models/{model_dir.name}/{f}" for f in ("model.keras", "metadata.json", "labels.txt")} <= names
    assert not any("__pycache__" in name for name in names)
    readme = (space / "README.md").read_text()
    meta = read_front_matter(readme)
    assert meta["title"] == "Shapes demo" and meta["sdk"] == "gradio" and meta["app_file"] == "app.py"
    assert meta["sdk_version"] == gradio_pin((ROOT / "requirements.txt").read_text())
    assert SpaceCard(readme).data.python_version == PYTHON
    pins = (ROOT / "requirements.txt").read_text().splitlines()
    served = [line for line in pins if not line.startswith(tuple(f"{name}==" for name in NOT_SERVED))]
    assert (space / "requirements.txt").read_text().splitlines() == served and len(served) == len(pins) - 2
    # The model card and the files in the public repository name no path of the training machine.
    assert "Backbone: mobilenet_v2, cut at `block_1_expand_relu`" in readme and "None" not in readme
    for text in [readme, *(path.read_text() for path in (space / "models" / model_dir.name).glob("*.json"))]:
        assert str(shapes_dir) not in text and str(model_dir.parent) not in text
    assert json.loads((space / "models" / model_dir.name / "metadata.json").read_text())["data"]["root"] == "shapes"

    # The Space starts and answers without what its requirements leave out (gradio imports matplotlib if it can).
    not_installed(tmp_path / "left_out", ["matplotlib", "tensorflow_hub"])
    port, log_path = free_port(), tmp_path / "space.log"
    url = f"http://127.0.0.1:{port}/"
    with open(log_path, "w") as log:
        process = start_space(space, port, log, tmp_path / "left_out")
    try:
        wait_until_serving(process, url, log_path)
        image = sorted(shapes_dir.glob("circle/*.png"))[0]
        result = Client(url, verbose=False).predict(handle_file(str(image)), api_name="/predict")
        assert result["label"] == Predictor(model_dir).predict(image)[0][0]
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_deploy_command_errors_are_one_line(model_dir, tmp_path, capsys):
    code, _, err = run_main(main, [tmp_path, "--out", tmp_path / "space"], capsys)
    assert code == 2 and "not a model folder" in err and err.count("\n") == 1
    (tmp_path / "taken").mkdir()
    code, _, err = run_main(main, [model_dir, "--out", tmp_path / "taken"], capsys)
    assert code == 2 and "--out" in err and "already exists" in err
    code, out, _ = run_main(main, [model_dir, "--out", tmp_path / "taken", "--overwrite"], capsys)
    assert code == 0 and (tmp_path / "taken" / "app.py").is_file() and "python app.py" in out
    code, _, err = run_main(main, [model_dir, "--out", model_dir.parent, "--overwrite"], capsys)
    assert code == 2 and "not a Space folder" in err and err.count("\n") == 1 and model_dir.is_dir()


@pytest.mark.parametrize("requirements", ["gradio>=6\n", "numpy==2.4.6\n"])
def test_gradio_must_be_pinned_exactly(requirements):
    from classifier.errors import UsageError

    with pytest.raises(UsageError, match="gradio==VERSION"):
        gradio_pin(requirements)


@pytest.mark.parametrize(
    "backbone, cut, weights, words",
    [
        ("inception_v3", "mixed7", "imagenet", "inception_v3, cut at `mixed7`, weights: ImageNet"),
        ("mobilenet_v2", None, "/home/me/w/mobilenet.h5", "mobilenet_v2, whole network, weights: mobilenet.h5"),
        ("resnet50", "top", "../w/resnet.h5", "resnet50, whole network, weights: resnet.h5"),
        ("simple_cnn", "top", "none", "simple_cnn, whole network, weights: none (trained from scratch)"),
        ("hub:/home/me/hub/efficientnet_b0/", None, "imagenet", "TF-Hub model `efficientnet_b0`"),
        ("hub:C:\\models\\effnet", None, "imagenet", "TF-Hub model `effnet`"),
        ("hub:https://tfhub.dev/x/y/5", None, "imagenet", "TF-Hub model `https://tfhub.dev/x/y/5`"),
    ],
)
def test_the_backbone_is_described_without_machine_paths_or_none(backbone, cut, weights, words):
    """The one description the page's card and the Space's README share."""
    metadata = ModelMetadata(["a", "b"], (32, 32), backbone=backbone, cut_layer=cut, weights=weights)
    assert metadata.describe_backbone() == words

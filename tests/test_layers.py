"""The house's plan holds (docs/design.md, "Layers"): one-way layers, no import cycle, commands on top.

Every import under classifier/ and app.py counts, the ones inside functions too (import_graph.py reads the source
with `ast`; nothing is imported). A module may import its own unit (its subpackage, or itself when it is a top-level
module) and any unit of a lower layer, never a peer unit of its own layer (data and model are peers) nor anything
above. All static: the file takes well under a second.
"""

from __future__ import annotations

import importlib

import pytest
import tomllib
from conftest import ROOT
from import_graph import (
    PACKAGE,
    collect_imports,
    command_modules,
    commands_imported_from_below,
    describe,
    design_layers,
    functions,
    graph,
    importers_of,
    imports_of,
    layer_of,
    layer_violations,
    module_files,
    reaches,
    strongly_connected,
    unassigned,
)

IMPORTS = collect_imports(ROOT)
MODULES = module_files(ROOT)
LAYERS = design_layers(ROOT / "docs" / "design.md")
TOP = max(LAYERS.values())  # the commands and app.py
MAX_FUNCTION_LINES = 60
# Modules that import without TensorFlow (module-level imports): `python app.py --help`, the flags' modules, and
# what a script reading probabilities needs (test_confidence runs it in a process of its own).
TF_FREE = (
    "app",
    "classifier.config",
    "classifier.serving.limits",
    "classifier.data.limits",
    "classifier.data.formats",
    "classifier.model.artifacts",
    "classifier.model.metadata",
    "classifier.model.confidence",
    "classifier.evaluation.confidence",
    "classifier.evaluation.metrics",
)
# What README.md and docs/ tell users to import: each keeps working wherever its code lives.
PUBLIC = (
    "classifier.predict.Predictor",
    "classifier.train.train",
    "classifier.train.TrainResult",
    "classifier.evaluate.evaluate",
    "classifier.export.export_model",
    "classifier.evaluation.confidence.answer",
    "classifier.errors.UsageError",
    "classifier.data.images.ImageError",
    "classifier.model.hub.HubFeatures",
    "classifier.model.artifacts.load_model",
    "classifier.model.metadata.ModelMetadata",
    "classifier.config.TrainConfig",
    "classifier.shapes.make_shapes_dataset",
    "classifier.datasets.convert_pixels_csv",  # datasets/README.md
)


def test_no_import_cycle():
    cycles = strongly_connected(graph(IMPORTS, MODULES))
    assert cycles == [], "\n".join(
        describe(imp) for cycle in cycles for imp in IMPORTS if {imp.source, imp.target} <= set(cycle)
    )


def test_the_commands_are_the_top_layer():
    commands = [module for module, layer in LAYERS.items() if layer == TOP and module != "app"]
    assert command_modules(ROOT) == sorted(commands)


def test_no_package_module_imports_a_command():
    found = commands_imported_from_below(IMPORTS, command_modules(ROOT))
    assert found == [], "\n".join(map(describe, found))


def test_config_imports_only_plumbing():
    found = [imp for imp in imports_of(IMPORTS, f"{PACKAGE}.config") if layer_of(imp.target, LAYERS) != 0]
    assert found == [], "\n".join(map(describe, found))


def test_every_module_has_a_layer_and_imports_only_down():
    assert unassigned(MODULES, LAYERS) == []
    found = layer_violations(IMPORTS, LAYERS)
    assert found == [], "\n".join(map(describe, found))


@pytest.mark.parametrize("module", TF_FREE)
def test_modules_that_must_not_load_tensorflow(module):
    assert module in MODULES
    assert reaches(graph(IMPORTS, MODULES, lazy=False), module, f"{PACKAGE}._tf") is None


def test_gradio_only_in_the_app_and_beam_only_in_batch():
    assert {m for m in importers_of(ROOT, "gradio") if not m.startswith(f"{PACKAGE}.serving.")} == set()
    assert {m for m in importers_of(ROOT, "apache_beam") if not m.startswith(f"{PACKAGE}.batch.")} == set()


def test_no_function_longer_than_the_limit():
    long = [f"{where} {name}: {lines}" for where, name, lines in functions(ROOT) if lines > MAX_FUNCTION_LINES]
    assert long == []


def test_every_package_is_packaged():
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    folders = sorted({module for module, path in MODULES.items() if path.name == "__init__.py"})
    assert sorted(packages) == folders


@pytest.mark.parametrize("path", PUBLIC)
def test_documented_import_paths_still_work(path):
    module, _, name = path.rpartition(".")
    assert hasattr(importlib.import_module(module), name)

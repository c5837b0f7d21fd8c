"""The repository keeps its own promises: one code style, and CI runs exactly what the README says."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys

import pytest
from conftest import ROOT

ruff = pytest.mark.skipif(
    importlib.util.find_spec("ruff") is None,
    reason='ruff is not installed (python -m pip install -e ".[test]" installs it)',
)


@ruff
@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff_passes(command):
    result = subprocess.run([sys.executable, "-m", "ruff", *command, "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def readme_test_commands() -> list[str]:
    """The shell block right after the README's sentence about running the tests."""
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"```sh\n(python -m pip install[^\n]*\n[^\n]*pytest[^\n]*)\n```", readme)
    assert match, "README.md: no ```sh block with the setup line and the test command"
    return match.group(1).splitlines()


def test_ci_runs_exactly_the_readme_commands():
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    python_lines = [line for line in ci if line.startswith("python ")]
    assert python_lines == readme_test_commands()

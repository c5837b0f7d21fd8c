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


PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted(ROOT.glob("*/README.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")  # [text](target)
FENCED = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)  # code blocks: no links, no headings


def anchors(page) -> set[str]:
    """The #fragments GitHub makes of a page's headings: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+\s+(.+)$", FENCED.sub("", page.read_text()), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


@pytest.mark.parametrize("page", PAGES, ids=[str(page.relative_to(ROOT)) for page in PAGES])
def test_relative_links_between_the_docs_resolve(page):
    """Every relative link in the README and docs names a file that exists, and a heading there if it has a #."""
    broken = []
    for target in LINK.findall(FENCED.sub("", page.read_text())):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, fragment = target.partition("#")
        linked = (page.parent / path) if path else page
        if not linked.exists() or (fragment and fragment not in anchors(linked)):
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: broken links {broken}"

"""The package's import graph, read from the source with `ast` (nothing is imported or run), for test_layers.py.

Each module under classifier/ (and app.py) is parsed; every `import` / `from ... import` in it, the ones inside
functions too, is resolved to a module name (relative imports against the module's own package; `from pkg import
sub` to `pkg.sub` when `sub` is a module), and only the project's own modules are kept. An import inside a function
is marked lazy; it is still an edge, since it runs when the function does. The layers come from the table under
"## Layers" in docs/design.md, so the document and the test cannot disagree.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

PACKAGE = "classifier"
EXTRA_MODULES = ("app.py",)  # top-level scripts that belong to the graph too


@dataclass(frozen=True)
class Import:
    """One resolved import: `source` imports `target` (a project module) at `line`; lazy = inside a function."""

    source: str
    target: str
    names: tuple[str, ...]
    line: int
    lazy: bool


def module_files(root: Path) -> dict[str, Path]:
    """Every project module: dotted name -> file (packages named by their __init__.py)."""
    files = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        files[name] = path
    for extra in EXTRA_MODULES:
        if (root / extra).is_file():
            files[Path(extra).stem] = root / extra
    return files


def _is_package(name: str, files: dict[str, Path]) -> bool:
    return name in files and files[name].name == "__init__.py"


def _resolve_base(source: str, node: ast.ImportFrom, files: dict[str, Path]) -> str:
    """The module a `from X import ...` reads X as: relative levels climb from the importing module's package."""
    if not node.level:
        return node.module or ""
    package = source if _is_package(source, files) else source.rpartition(".")[0]
    for _ in range(node.level - 1):  # level 1 is the package itself; each further dot climbs one
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


class _Collector(ast.NodeVisitor):
    """Walks one module's tree, recording imports and whether each sits inside a function."""

    def __init__(self, source: str, files: dict[str, Path]):
        self.source, self.files, self.depth, self.found = source, files, 0, []

    def _function(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def _add(self, target: str, names: tuple[str, ...], node: ast.AST) -> None:
        if target in self.files:  # the project's own modules only
            self.found.append(Import(self.source, target, names, node.lineno, self.depth > 0))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, (), node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = _resolve_base(self.source, node, self.files)
        plain = []
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            if sub in self.files:  # `from pkg import module` is an import of that module
                self._add(sub, (), node)
            else:
                plain.append(alias.name)
        if plain or not node.names:
            self._add(base, tuple(plain), node)


def collect_imports(root: Path) -> list[Import]:
    """Every import of a project module by a project module, in file order."""
    files = module_files(root)
    found = []
    for name, path in files.items():
        collector = _Collector(name, files)
        collector.visit(ast.parse(path.read_text(), filename=str(path)))
        found.extend(collector.found)
    return found


def importers_of(root: Path, distribution: str) -> dict[str, list[int]]:
    """Project modules that import the outside package `distribution` (e.g. gradio, apache_beam), lazy or not:
    module -> lines."""
    found: dict[str, list[int]] = {}
    for name, path in module_files(root).items():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                targets = [node.module or ""]
            else:
                continue
            if any(target.split(".")[0] == distribution for target in targets):
                found.setdefault(name, []).append(node.lineno)
    return found


def graph(imports: list[Import], modules=(), lazy: bool = True) -> dict[str, set[str]]:
    """Module -> the modules it imports (without self-edges); lazy=False leaves out imports inside functions."""
    edges = {name: set() for name in modules}
    for imp in imports:
        edges.setdefault(imp.source, set())
        edges.setdefault(imp.target, set())
        if imp.target != imp.source and (lazy or not imp.lazy):
            edges[imp.source].add(imp.target)
    return edges


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module (each one is an import cycle)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:  # node is the root of a component: pop it off
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(found)


def command_modules(root: Path) -> list[str]:
    """Top-level package modules that define a module-level `main` (the `python -m classifier.X` commands)."""
    commands = []
    for name, path in module_files(root).items():
        if name.count(".") != 1 or not name.startswith(PACKAGE + "."):
            continue
        tree = ast.parse(path.read_text())
        if any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body):
            commands.append(name)
    return sorted(commands)


def subpackage_of(module: str) -> str | None:
    """classifier.serving.app_ui -> classifier.serving; top-level modules and the package itself -> None."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == PACKAGE and len(parts) > 2 else None


def commands_imported_from_below(imports: list[Import], commands: list[str]) -> list[Import]:
    """Imports of a command module by a module inside a subpackage (the library reaching up to a command)."""
    return [imp for imp in imports if imp.target in commands and subpackage_of(imp.source)]


def imports_of(imports: list[Import], module: str) -> list[Import]:
    return [imp for imp in imports if imp.source == module]


def layer_of(module: str, layers: dict[str, int]) -> int | None:
    """The layer of a module: the longest key of `layers` that is the module or a package holding it (the root
    package's key names only the root's own __init__, never every module of the package)."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        key = ".".join(parts[:end])
        if key in layers and (key != PACKAGE or module == PACKAGE):
            return layers[key]
    return None


def unassigned(modules, layers: dict[str, int]) -> list[str]:
    """Modules no key of `layers` covers: a new subpackage or top-level module must be given its layer."""
    return sorted(module for module in modules if layer_of(module, layers) is None)


def unit_of(module: str) -> str:
    """What may import itself freely: a subpackage (all its modules), else the top-level module alone."""
    return subpackage_of(module) or module


def layer_violations(imports: list[Import], layers: dict[str, int], one_unit: tuple[int, ...] = (0,)) -> list[Import]:
    """Imports that climb: the target's layer is above the source's, or the same layer but another unit (a peer:
    data -> model, one command -> another). The layers in `one_unit` (plumbing) are one unit: their modules may
    import each other."""
    bad = []
    for imp in imports:
        low, high = layer_of(imp.source, layers), layer_of(imp.target, layers)
        if low is None or high is None:
            continue
        peer = high == low and low not in one_unit and unit_of(imp.source) != unit_of(imp.target)
        if high > low or peer:
            bad.append(imp)
    return bad


def reaches(edges: dict[str, set[str]], start: str, goal: str) -> list[str] | None:
    """A shortest import chain from `start` to `goal` in `edges` (None: `goal` is not reached)."""
    paths, queue = {start: [start]}, [start]
    for module in queue:
        if module == goal:
            return paths[module]
        for nxt in sorted(edges.get(module, ())):
            if nxt not in paths:
                paths[nxt] = paths[module] + [nxt]
                queue.append(nxt)
    return None


def design_layers(design_md: Path) -> dict[str, int]:
    """Unit -> layer, read from the table under "## Layers" in docs/design.md: each row's first cell starts with the
    layer number, its second cell names the units in backticks (`app` is app.py, `classifier` the package's own
    __init__ only, any other name `classifier.NAME`, a module or a subpackage)."""
    layers: dict[str, int] = {}
    section = design_md.read_text().split("\n## Layers\n", 1)[1].split("\n## ", 1)[0]
    for row in section.splitlines():
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        if len(cells) < 2 or not cells[0][:1].isdigit():
            continue  # prose, the header, the separator
        layer = int(cells[0].split()[0])
        for unit in re.findall(r"`([A-Za-z_.]+)`", cells[1]):
            layers[unit if unit in ("app", PACKAGE) else f"{PACKAGE}.{unit}"] = layer
    return layers


def functions(root: Path) -> Iterator[tuple[str, str, int]]:
    """(file:line, qualified name, length in lines) of every function and method, decorators and docstring
    included."""
    for path in module_files(root).values():
        yield from _functions(ast.parse(path.read_text()), "", path.relative_to(root))


def _functions(node: ast.AST, prefix: str, path: Path) -> Iterator[tuple[str, str, int]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            start = min([decorator.lineno for decorator in child.decorator_list] + [child.lineno])
            yield f"{path}:{child.lineno}", prefix + child.name, child.end_lineno - start + 1
            yield from _functions(child, f"{prefix}{child.name}.", path)
        elif isinstance(child, ast.ClassDef):
            yield from _functions(child, f"{prefix}{child.name}.", path)
        else:
            yield from _functions(child, prefix, path)


def describe(imp: Import) -> str:
    """`data.trainset:30 -> serving.limits (Limits) [lazy]`: where an import is and what it takes."""
    names = f" ({', '.join(imp.names)})" if imp.names else ""
    return f"{_short(imp.source)}:{imp.line} -> {_short(imp.target)}{names}{' [lazy]' if imp.lazy else ''}"


def _short(module: str) -> str:
    return module.removeprefix(PACKAGE + ".") if module != PACKAGE else module

"""The architecture rules of ``docs/architecture.md``, checked on the source.

Every module under ``featuremap/`` is parsed with :mod:`ast`; every import counts, module-level or
inside a function (lazy), under ``if TYPE_CHECKING:`` or not, relative imports resolved, as well as
``importlib.import_module("...")`` / ``__import__("...")`` with a literal name:

* ``zarr`` is imported only inside ``featuremap/io/``;
* ``featuremap/io/`` never imports ``featuremap.jobs`` or ``featuremap.cli``;
* ``featuremap/engine/`` and ``featuremap/banks/`` never import ``dask``, ``distributed`` or
  ``zarr``;
* ``featuremap/arrays/`` (``featuremap.apply`` and the functional API) never imports
  ``featuremap.jobs``, ``featuremap.cluster`` or ``featuremap.cli``;
* only ``featuremap/cli/`` imports ``click``;
* private third-party API is reached from one place each: ``zarr.core`` from
  ``io/_zarr_private.py``, ``dask._task_spec`` from ``arrays/dask.py``;
* no module is longer than 500 lines.

The layer order itself is import-linter's contracts (``[tool.importlinter]`` in pyproject.toml),
run here through ``lint-imports``.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
from support import REPO

PACKAGE = REPO / "featuremap"
MAX_LINES = 500


@dataclass(frozen=True)
class Import:
    """``module`` (a file under featuremap/) imports ``name`` (absolute, dotted) at ``line``."""

    path: Path
    line: int
    name: str
    lazy: bool

    def __str__(self) -> str:
        where = "inside a function" if self.lazy else "at module level"
        return f"{self.path.relative_to(REPO)}:{self.line}: imports {self.name} ({where})"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _absolute(path: Path, node: ast.ImportFrom) -> str:
    """The module a ``from ... import`` names, relative imports resolved against ``path``."""
    if not node.level:
        return node.module or ""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


class _ImportFinder(ast.NodeVisitor):
    def __init__(self, path: Path) -> None:
        self.path, self.depth, self.found = path, 0, []

    def _add(self, node: ast.AST, name: str) -> None:
        self.found.append(Import(self.path, node.lineno, name, self.depth > 0))

    def _function(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(node, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = _absolute(self.path, node)
        self._add(node, base)
        for alias in node.names:  # ``from featuremap import jobs`` imports featuremap.jobs
            if alias.name != "*":
                self._add(node, f"{base}.{alias.name}")

    def visit_Call(self, node: ast.Call) -> None:
        function = node.func
        called = (
            function.attr
            if isinstance(function, ast.Attribute)
            else function.id
            if isinstance(function, ast.Name)
            else ""
        )
        if (
            called in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            self._add(node, node.args[0].value)
        self.generic_visit(node)


@cache
def imports_of(path: Path) -> tuple[Import, ...]:
    finder = _ImportFinder(path)
    finder.visit(ast.parse(path.read_text(), filename=str(path)))
    return tuple(finder.found)


def all_imports() -> list[Import]:
    return [found for path in modules() for found in imports_of(path)]


def reaches(name: str, *targets: str) -> bool:
    """``name`` is one of ``targets`` or a submodule of one."""
    return any(name == target or name.startswith(target + ".") for target in targets)


def inside(path: Path, *places: str) -> bool:
    """``path`` is one of ``places`` (files or folders relative to featuremap/)."""
    relative = path.relative_to(PACKAGE).as_posix()
    return any(
        relative == place or relative.startswith(place.rstrip("/") + "/") for place in places
    )


@dataclass(frozen=True)
class Rule:
    description: str
    applies: Callable[[Path], bool]
    forbidden: tuple[str, ...]


RULES = [
    Rule("zarr is imported only inside featuremap/io/", lambda p: not inside(p, "io/"), ("zarr",)),
    Rule(
        "featuremap/io/ never imports featuremap.jobs or featuremap.cli",
        lambda p: inside(p, "io/"),
        ("featuremap.jobs", "featuremap.cli"),
    ),
    Rule(
        "kernels, geometry and layers never import dask, distributed or zarr",
        lambda p: inside(p, "_kernels/", "geometry.py", "layers.py"),
        ("dask", "distributed", "zarr"),
    ),
    Rule("only featuremap/cli/ imports click", lambda p: not inside(p, "cli/"), ("click",)),
    Rule(
        "Zarr's private API (zarr.core) is reached only from io/_zarr_private.py",
        lambda p: not inside(p, "io/_zarr_private.py"),
        ("zarr.core",),
    ),
    Rule(
        "Dask's private task classes are reached only from arrays/dask.py",
        lambda p: not inside(p, "arrays/dask.py"),
        ("dask._task_spec",),
    ),
]


@pytest.mark.parametrize("rule", RULES, ids=[rule.description for rule in RULES])
def test_import_rule(rule: Rule):
    offenders = [
        str(found)
        for found in all_imports()
        if rule.applies(found.path) and reaches(found.name, *rule.forbidden)
    ]
    assert not offenders, f"{rule.description}; broken by:\n" + "\n".join(offenders)


def test_the_scan_sees_imports_and_lazy_imports():
    """Control for the rules above: the scanner finds what is known to be there."""
    found = all_imports()
    assert len(modules()) > 50
    assert any(inside(i.path, "io/") and reaches(i.name, "zarr") for i in found)
    assert any(inside(i.path, "cli/") and reaches(i.name, "click") for i in found)
    assert any(i.lazy for i in found), "no function-level import found: is the scan blind to them?"
    relative = [i for i in found if i.name.startswith("featuremap.")]
    assert relative
    assert all(not i.name.startswith(".") for i in relative)


def test_absolute_names_of_relative_imports():
    path = PACKAGE / "io" / "output.py"
    tree = ast.parse(
        "from . import ome\nfrom ..geometry import StackGeometry\nfrom .sink import write_block\n"
    )
    names = [_absolute(path, node) for node in tree.body]
    assert names == ["featuremap.io", "featuremap.geometry", "featuremap.io.sink"]
    package = PACKAGE / "io" / "__init__.py"
    assert (
        _absolute(package, ast.parse("from .input import open_input").body[0])
        == "featuremap.io.input"
    )


def test_no_module_is_longer_than_500_lines():
    lengths = {path: len(path.read_text().splitlines()) for path in modules()}
    offenders = sorted(
        (
            f"{path.relative_to(REPO)}: {count} lines"
            for path, count in lengths.items()
            if count > MAX_LINES
        )
    )
    if offenders:
        print("modules over", MAX_LINES, "lines:", *offenders, sep="\n  ")
    assert not offenders, f"modules over {MAX_LINES} lines: " + ", ".join(offenders)


def _lint_imports() -> str | None:
    beside = Path(sys.executable).with_name("lint-imports")  # this virtualenv's, even off PATH
    return str(beside) if beside.exists() else shutil.which("lint-imports")


def test_import_linter_contracts_are_kept():
    executable = _lint_imports()
    if executable is None:
        pytest.skip("lint-imports (import-linter) is not installed")
    result = subprocess.run(
        [executable, "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "broken" in result.stdout
    assert "0 broken" in result.stdout

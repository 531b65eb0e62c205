"""The import rules of DESIGN.md §2, checked: the decision core is pure, and imports go one way.

* ``personalization.decision`` (every submodule) imports no I/O or heavy library: it is the pure
  core that ``decide()``, the SDK bundle and replays over logs rely on. Checked in a fresh
  interpreter, because in this one the test suite has long since imported everything.
* ``personalization`` imports neither ``api`` nor ``content``; ``content`` imports from
  ``personalization`` only its shared types (``types``, ``seams``, ``errors``). Checked on the
  source, every import statement — inside functions and ``if TYPE_CHECKING:`` blocks too, since a
  lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: What importing the decision core must not pull in (numpy too: serving math is pure Python).
HEAVY = (
    "redis", "sklearn", "scipy", "skops", "pyarrow", "litestar", "contentful", "httpx", "anyio", "numpy",
)  # fmt: skip
#: The only modules of ``personalization`` that ``content`` may import.
SHARED_WITH_CONTENT = frozenset({"personalization.types", "personalization.seams", "personalization.errors"})

_PROBE = """
import importlib, json, pkgutil, sys
import personalization.decision as core
names = [m.name for m in pkgutil.walk_packages(core.__path__, "personalization.decision.")]
for name in names:
    importlib.import_module(name)
print(json.dumps({"modules": names, "loaded": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def test_the_decision_core_imports_no_io_or_heavy_library() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert "personalization.decision.decide" in found["modules"]  # the walk saw the package
    assert sorted(set(HEAVY) & set(found["loaded"])) == []


def _modules(package: str) -> Iterator[tuple[str, Path]]:
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def _imports(module: str, path: Path) -> Iterator[tuple[int, str]]:
    """Every module an import statement anywhere in the file names, relative imports resolved."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield node.lineno, target
            for alias in node.names:  # ``from personalization import types`` names a module
                yield node.lineno, f"{target}.{alias.name}"


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_personalization_imports_neither_api_nor_content() -> None:
    wrong = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for module, path in _modules("personalization")
        for line, name in _imports(module, path)
        if _within(name, "api") or _within(name, "content")
    ]
    assert wrong == []


def test_content_imports_only_the_shared_types_of_personalization() -> None:
    wrong = []
    for module, path in _modules("content"):
        for line, name in _imports(module, path):
            if not _within(name, "personalization") or name in SHARED_WITH_CONTENT:
                continue
            # ``from personalization.types import Experience`` also yields ``personalization.types.Experience``
            if any(_within(name, shared) for shared in SHARED_WITH_CONTENT):
                continue
            if name == "personalization":  # the bare package, from ``from personalization import types``
                continue
            wrong.append(f"{path.relative_to(ROOT)}:{line}: {name}")
    assert wrong == []


def test_personalization_has_no_import_cycle() -> None:
    """A cycle (``features → plugins → selection → policy → features`` was one) means two modules
    cannot be read, tested or moved apart; ``TYPE_CHECKING`` imports count, they hide the same knot."""
    modules = dict(_modules("personalization"))
    graph = {
        module: {name for _, name in _imports(module, path) if name in modules and name != module}
        for module, path in modules.items()
    }
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for name in sorted(graph[module]):
            if state.get(name) == 1:
                cycles.append([*path[path.index(name) :], name])
            elif name not in state:
                visit(name)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert cycles == []

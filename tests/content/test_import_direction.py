"""``content`` depends on ``personalization`` only through its shared types: what the decision code
needs from content is compiled into ``personalization.types``, and what content needs from the
decision code (the experience types plugins add, the audience-condition check) is passed in."""

from __future__ import annotations

import ast
from pathlib import Path

import content

ALLOWED = {"personalization.types", "personalization.seams", "personalization.errors"}


def _imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from personalization import decision`` imports personalization.decision.
            base = node.module
            modules.add(base)
            if base == "personalization":
                modules.update(f"{base}.{alias.name}" for alias in node.names)
    return modules


def test_content_imports_only_the_shared_types_of_personalization() -> None:
    root = Path(content.__file__).parent
    offending = {
        f"{path.relative_to(root.parent)}: {module}"
        for path in sorted(root.rglob("*.py"))
        for module in _imported_modules(path)
        if module.startswith("personalization.") and module not in ALLOWED
    }
    assert not offending, sorted(offending)

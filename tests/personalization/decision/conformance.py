"""GrowthBook's cross-SDK cases, loaded once for the bucketing and condition tests.

The cases live outside the project (``../shared/conformance/growthbook-cases.json``, or the path or
directory in ``VARY_CONFORMANCE_DIR``) and are not copied in; without them the conformance tests are
skipped with this module's :data:`SKIP_REASON`, and the hand-written tests still run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

__all__ = ["CASES", "SKIP_REASON", "case_params"]

_FILE = "growthbook-cases.json"


def _cases_path() -> Path:
    default = Path(__file__).resolve().parents[4] / "shared" / "conformance" / _FILE
    if default.is_file():
        return default
    env = os.environ.get("VARY_CONFORMANCE_DIR")
    if env:
        candidate = Path(env)
        return candidate if candidate.is_file() else candidate / _FILE
    return default


_PATH = _cases_path()
CASES: dict[str, Any] | None = json.loads(_PATH.read_text(encoding="utf-8")) if _PATH.is_file() else None
SKIP_REASON = (
    f"GrowthBook conformance cases not found at {_PATH} "
    "(expected ../shared/conformance/growthbook-cases.json next to the repo, or set VARY_CONFORMANCE_DIR)"
)


def case_params(section: str, case_id: Callable[[list[Any]], object] = lambda case: case[0]) -> list[Any]:
    """One ``pytest.param`` per case of ``section``, id'd by ``case_id`` (duplicates numbered)."""
    if CASES is None:
        return [pytest.param(None, id=f"{section}-missing", marks=pytest.mark.skip(reason=SKIP_REASON))]
    seen: dict[str, int] = {}
    params = []
    for case in CASES[section]:
        name = str(case_id(case))
        seen[name] = seen.get(name, 0) + 1
        params.append(pytest.param(case, id=name if seen[name] == 1 else f"{name} #{seen[name]}"))
    return params

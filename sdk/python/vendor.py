"""Which of Vary's own modules the SDK ships, and copying them into a build (used by ``setup.py``).

The SDK does not re-implement decisions: it packages Vary's ``personalization.decision`` with the two
modules it imports (``personalization.types``, ``personalization.seams``) and nothing else from
Vary. ``tests/sdk/test_python_sdk.py`` imports the SDK from such a copy alone and checks that no
heavy library (scikit-learn, scipy, numpy, Redis, Litestar) is loaded.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["REPO", "VENDORED", "copy_vendored", "vendored_files"]

#: The Vary checkout the modules are read from (``VARY_REPO`` when the SDK directory was copied elsewhere).
REPO = Path(os.environ.get("VARY_REPO") or Path(__file__).resolve().parents[2])
#: The package modules the SDK needs besides ``personalization/decision/*.py``.
VENDORED = ("personalization/__init__.py", "personalization/types.py", "personalization/seams.py")


def vendored_files(repo: Path = REPO) -> dict[str, Path]:
    """Target path in the distribution → source file in the Vary checkout."""
    files = {name: repo / name for name in VENDORED}
    for source in sorted((repo / "personalization" / "decision").glob("*.py")):
        files[f"personalization/decision/{source.name}"] = source
    return files


def copy_vendored(target: Path, repo: Path = REPO) -> list[Path]:
    """Copy the vendored modules under ``target`` (a build directory); returns the written files."""
    written = []
    for name, source in vendored_files(repo).items():
        destination = Path(target) / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, destination)
        written.append(destination)
    return written

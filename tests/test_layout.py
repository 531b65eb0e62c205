"""Rules of the repository's layout that a reader should be able to rely on."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_no_python_file_holds_lua() -> None:
    """Lua lives in ``.lua`` files next to the module that loads it (``scripts/*.lua``), each with a
    header naming its KEYS and ARGV; no Python file spells a script (``redis.call``)."""
    tracked = subprocess.run(
        ["git", "ls-files", "-z", "--", "api", "content", "personalization", "bench", "tests"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    this = Path(__file__).resolve()
    needle = "redis" + ".call"
    offenders = [
        name for name in tracked
        if name.endswith(".py") and (ROOT / name).resolve() != this and (ROOT / name).is_file()
        and needle in (ROOT / name).read_text(encoding="utf-8")
    ]
    assert offenders == [], f"Lua held in Python (move it to a scripts/*.lua file): {offenders}"

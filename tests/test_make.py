"""``make run`` installs only what running needs; ``make test`` adds the test extras (README, "Two commands")."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _plan(target: str, venv: Path) -> str:
    """What ``make <target>`` would run for a fresh venv at ``venv`` (``make -n``: nothing runs)."""
    done = subprocess.run(["make", "-n", "-C", str(ROOT), f"VENV={venv}", target],
                          capture_output=True, text=True, check=True)
    return done.stdout


def test_run_installs_without_the_test_extras_and_test_adds_them(tmp_path: Path) -> None:
    run = _plan("run", tmp_path / "venv")
    assert "pip install --quiet -e .\n" in run and "[test]" not in run and "serve" in run
    test = _plan("test", tmp_path / "venv")
    assert "pip install --quiet -e '.[test]'" in test and "pytest" in test
    # Separate stamps: once the run stamp exists, `make test` still installs the extras.
    (tmp_path / "venv").mkdir()
    for stamp in (".venv-stamp", ".run-stamp"):
        (tmp_path / "venv" / stamp).touch()
    assert "[test]" in _plan("test", tmp_path / "venv")
    assert "pip install" not in _plan("run", tmp_path / "venv")

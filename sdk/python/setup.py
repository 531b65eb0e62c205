"""Build hook: ship Vary's own decision modules (``vendor.py``) inside the ``vary-sdk`` wheel.

Build from a Vary checkout: ``pip wheel sdk/python`` (the modules are read from ``../../personalization``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

sys.path.insert(0, str(Path(__file__).parent))
from vendor import copy_vendored


class BuildWithDecisions(build_py):
    def run(self) -> None:
        super().run()
        copy_vendored(Path(self.build_lib))


setup(cmdclass={"build_py": BuildWithDecisions})

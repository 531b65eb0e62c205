"""The committed conformance file is what ``generate_decisions.py`` produces from today's code and content.

Both SDKs' tests read the committed file; this test makes sure it still says what the server decides.
Floats may differ in the last bits only where the demo segment model was trained on another machine
(BLAS); anything else — a variant, a reason, a case — must be identical. Regenerate with
``python -m tests.conformance.generate_decisions``.
"""

from __future__ import annotations

import math

import msgspec

from tests.conformance.generate_decisions import (
    CONFORMANCE_FILE,
    build_conformance,
    encode_conformance,
)


def _differences(committed: object, fresh: object, path: str, out: list[str]) -> None:
    if len(out) >= 10:
        return
    if isinstance(committed, float) and isinstance(fresh, float):
        if not math.isclose(committed, fresh, rel_tol=1e-12, abs_tol=1e-15):
            out.append(f"{path}: {committed!r} != {fresh!r}")
    elif isinstance(committed, dict) and isinstance(fresh, dict):
        if committed.keys() != fresh.keys():
            out.append(f"{path}: keys {sorted(committed)} != {sorted(fresh)}")
            return
        for key in committed:
            _differences(committed[key], fresh[key], f"{path}.{key}", out)
    elif isinstance(committed, list) and isinstance(fresh, list):
        if len(committed) != len(fresh):
            out.append(f"{path}: {len(committed)} items != {len(fresh)}")
            return
        for i, (a, b) in enumerate(zip(committed, fresh)):
            _differences(a, b, f"{path}[{i}]", out)
    elif committed != fresh:
        out.append(f"{path}: {committed!r} != {fresh!r}")


def test_the_committed_conformance_file_is_current() -> None:
    fresh = encode_conformance(build_conformance())
    committed = CONFORMANCE_FILE.read_bytes()
    if committed == fresh:
        return
    differences: list[str] = []
    _differences(msgspec.json.decode(committed), msgspec.json.decode(fresh), "$", differences)
    assert not differences, (
        "tests/conformance/decisions.json is out of date; run `python -m tests.conformance.generate_decisions`:\n"
        + "\n".join(differences)
    )

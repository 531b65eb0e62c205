"""``make bench``'s SDK table runs: the JS SDK and GrowthBook's JS SDK assign alike before being timed."""

from __future__ import annotations

import pytest

from bench.sdk import js_rows


@pytest.mark.slow
def test_the_js_sdk_rows_compare_like_with_like() -> None:
    rows = js_rows(quick=True)
    assert [row["section"] for row in rows] == ["sdk"] * 3
    for row in rows:
        assert row["vary"] > 0 and row["baseline"] > 0 and row["agreement_checked"] >= 1_000
        assert row["met"] in (True, False)


@pytest.mark.slow
def test_the_python_sdk_rows_compare_like_with_like() -> None:
    from bench.sdk_python import python_rows

    rows = python_rows(quick=True)
    assert len(rows) == 3 and all(row["agreement_checked"] == 3_000 for row in rows)
    assert all(row["vary"] > 0 for row in rows) and all(row["baseline"] > 0 for row in rows[:2])

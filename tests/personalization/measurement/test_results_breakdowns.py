"""Breakdowns carry Benjamini–Hochberg adjusted p-values per breakdown and a visible warning."""

from __future__ import annotations

import msgspec
import numpy as np
from statsmodels.stats.multitest import multipletests

from personalization.measurement.events import Conversion
from personalization.measurement.results_breakdowns import BREAKDOWN_WARNING
from tests.personalization.measurement.test_aggregation import T0, exposure
from tests.personalization.measurement.test_results import (
    aggregate_and_read,
    experience,
)

CHANNELS = ("web", "ios", "email")
SEGMENTS = ({"price": 0.9}, {"loyal": 0.8}, {})


def test_each_breakdown_is_adjusted_over_its_cells_and_configured_goals(redis_url: str) -> None:
    rng = np.random.default_rng(11)
    exposures, events = [], []
    for i in range(1800):
        v = i % 3
        exposures.append(exposure(f"b{i}", v, T0 + i, channel=CHANNELS[(i // 3) % 3],
                                  segments=SEGMENTS[(i // 9) % 3]))
        for goal, rate in (("signup", 0.10 + 0.02 * v), ("purchase", 0.05), ("invented", 0.2)):
            if rng.random() < rate:
                events.append(Conversion(visitor_id=f"b{i}", goal=goal, ts=T0 + i + 60))
    exp = experience(weights=(0.34, 0.33, 0.33), goals=("signup", "purchase"))
    results = aggregate_and_read(redis_url, exposures, events, exp, goals=["signup", "purchase", "invented"])

    assert results.breakdowns_warning == BREAKDOWN_WARNING
    for kind in ("channel", "segment"):
        cells = results.breakdowns[kind]
        assert len(cells) == 3
        family = [(c, g, i) for c in sorted(cells) for g in ("signup", "purchase") for i in (1, 2)]
        raw = [cells[c][g].variants[i].p_value for c, g, i in family]
        assert all(p is not None for p in raw)
        expected = multipletests(raw, method="fdr_bh")[1]
        got = [cells[c][g].variants[i].adjusted_p_value for c, g, i in family]
        assert np.allclose(got, expected, rtol=1e-12, atol=0)
        assert all(a >= p * (1 - 1e-12) for a, p in zip(got, raw))
        for c in cells:  # a goal the experience does not configure is not in the family
            assert all(v.adjusted_p_value is None for v in cells[c]["invented"].variants)
            assert cells[c]["signup"].variants[0].adjusted_p_value is None  # control is not a test
    # The JSON carries the warning next to the two breakdowns.
    wire = msgspec.json.decode(msgspec.json.encode(results))
    assert set(wire["breakdowns"]) == {"channel", "segment"}
    assert "Benjamini" in wire["breakdowns_warning"] and "xploratory" in wire["breakdowns_warning"]

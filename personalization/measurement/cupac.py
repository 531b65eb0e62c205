"""CUPAC for new visitors: the conversion rate of the visitor's segment as a covariate, from counts Vary keeps.

A new visitor has no history for CUPED to use. But the segment model scores every visitor *before* a
variant is chosen, and the top segment is logged with the first exposure (``top_segment``, ``none``
below 0.5), so it is a pre-exposure prediction — the CUPAC covariate of Tang, Tong, Krishnan & Zhang
("Improving experimental power through control using predictions as covariate", DoorDash, 2020).
Vary uses X_i = r_{s(i)}, the conversion rate of visitor i's segment pooled over the arms compared
(0…k), which is regression on segment indicators (post-stratification) written as one covariate.

Nothing new is aggregated: each visitor is counted in exactly one ``seg:<segment>`` hash (their first
exposure's top segment), which holds per arm the visitors n_{v,s} and converters y_{v,s}. So per arm

    n = Σ_s n_{v,s},  ΣY = ΣY² = Σ_s y_{v,s},  ΣX = Σ_s n_{v,s}·r_s,  ΣX² = Σ_s n_{v,s}·r_s²,
    ΣXY = Σ_s y_{v,s}·r_s,

the sufficient statistics :func:`~personalization.measurement.regression_adjustment.adjust_rates`
takes. r_s is estimated from the same visitors; with few visitors per segment that overfits a little
(the adjusted variance is then slightly optimistic), which is why the rate is pooled over the arms
(the same covariate for everyone) and the coverage is checked by simulation in the tests.
"""

from __future__ import annotations

from collections.abc import Mapping

from personalization.measurement.results_counts import Counts
from personalization.measurement.stats import CupedSums

__all__ = ["segment_covariate_sums"]


def segment_covariate_sums(segments: Mapping[str, Counts], k: int, goal: str) -> list[CupedSums | None]:
    """Per arm 0…k the CUPAC sums of ``goal`` from the experience's ``seg:<segment>`` hashes (segment →
    counts); ``None`` for an arm with no visitors. Converters are capped at visitors, as in the results."""
    cells = {
        name: [(c.count(v, "visitors"), min(c.count(v, f"conv:{goal}"), c.count(v, "visitors"))) for v in range(k + 1)]
        for name, c in segments.items()
    }
    rates = {}
    for name, arms in cells.items():
        n = sum(a for a, _ in arms)
        if n:
            rates[name] = sum(y for _, y in arms) / n
    out: list[CupedSums | None] = []
    for v in range(k + 1):
        n = y = sx = sx2 = sxy = 0.0
        for name, arms in cells.items():
            nv, yv = arms[v]
            if not nv:
                continue
            r = rates[name]
            n, y = n + nv, y + yv
            sx, sx2, sxy = sx + nv * r, sx2 + nv * r * r, sxy + yv * r
        out.append(
            CupedSums(n=int(n), sum_y=y, sum_x=sx, sum_x2=sx2, sum_y2=y, sum_xy=sxy) if n else None
        )
    return out

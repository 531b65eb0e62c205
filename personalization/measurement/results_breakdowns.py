"""Breakdowns by channel and segment: goal results per cell, with Benjamini–Hochberg adjusted p-values.

A breakdown multiplies the tests: 6 channels × 3 goals × 2 variants is 36 chances to see "+103.8 %" on
ten conversions. Every row therefore carries ``adjusted_p_value``: the Benjamini–Hochberg adjustment
(:func:`~personalization.measurement.sequential.adjusted_p_values`) over the family of *that*
breakdown — all its cells × the experience's configured goals × variants 1…k. Goals only seen in
events (names a client may invent) are neither adjusted nor counted, as in the goals block. The block
comes with :data:`BREAKDOWN_WARNING` whenever it has a cell, so nobody reads a
segment's uplift as a finding: breakdowns are for exploring, decisions are made on the totals. The
warning is a field of its own (``breakdowns_warning`` in the results), so ``breakdowns`` keeps one
type: kind → cell → goal → result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from msgspec import structs

from personalization.measurement.results_counts import Counts
from personalization.measurement.results_goals import GoalResult, goal_result
from personalization.measurement.sequential import adjusted_p_values

__all__ = ["BREAKDOWN_WARNING", "Breakdowns", "adjust_breakdown", "breakdowns"]

#: ``breakdowns``: ``{"channel": {cell: {goal: GoalResult}}, "segment": {…}}``.
Breakdowns = dict[str, dict[str, dict[str, GoalResult]]]

BREAKDOWN_WARNING = (
    "Exploratory: breakdowns split the same visitors many ways, so some cells differ by chance. "
    "adjusted_p_value is Benjamini–Hochberg over each breakdown's cells × configured goals × variants; "
    "decide on the totals (goals, personalization_lift), not on a cell."
)

_KINDS = {"ch": "channel", "seg": "segment"}


def adjust_breakdown(
    cells: Mapping[str, Mapping[str, GoalResult]], configured: Sequence[str]
) -> dict[str, dict[str, GoalResult]]:
    """``cells`` with ``adjusted_p_value`` set: BH over cells × configured goals × variants 1…k."""
    family = [
        (cell, g, i)
        for cell in sorted(cells)
        for g in configured
        if g in cells[cell]
        for i in range(1, len(cells[cell][g].variants))
    ]
    adjusted = adjusted_p_values([cells[c][g].variants[i].p_value for c, g, i in family])
    out = {cell: dict(goals) for cell, goals in cells.items()}
    for (cell, g, i), p in zip(family, adjusted, strict=True):
        variants = list(out[cell][g].variants)
        variants[i] = structs.replace(variants[i], adjusted_p_value=p)
        out[cell][g] = GoalResult(variants=variants)
    return out


def breakdowns(
    dim_counts: Mapping[str, Counts],
    k: int,
    goals: Sequence[str],
    valued: Mapping[str, bool],
    configured: Sequence[str],
) -> tuple[Breakdowns, str | None]:
    """The ``breakdowns`` block from the experience's ``ch:<channel>`` and ``seg:<segment>`` hashes, and
    the warning to show beside it (``None`` when there is no cell)."""
    raw: dict[str, dict[str, dict[str, GoalResult]]] = {"channel": {}, "segment": {}}
    for dim, counts in dim_counts.items():
        kind, _, name = dim.partition(":")
        if kind in _KINDS:
            raw[_KINDS[kind]][name] = {g: goal_result(counts, k, g, False, valued[g]) for g in goals}
    block: Breakdowns = {kind: adjust_breakdown(cells, configured) for kind, cells in raw.items()}
    return block, (BREAKDOWN_WARNING if any(raw.values()) else None)

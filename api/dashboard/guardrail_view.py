"""Guardrail pauses and phase history as the experience page shows them.

A pause banner says which variant a guardrail paused and why (the reason carries the numbers:
``csat −12.0 pts [−18.1, −5.9], 412 vs 398 answers``), that its visitors get the baseline meanwhile,
and how to resume (``POST /v1/experiences/{key}/resume``). The phase history lists each phase of the
experience (:func:`~personalization.store.phases.list_phases`): results are per phase, because a set-up
edit that changes assignment starts a new one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from personalization.store.phases import Phase

__all__ = ["pause_banners", "phase_rows"]


def pause_banners(experience: str, paused: Mapping[int, str]) -> list[dict[str, str]]:
    """One banner per paused variant (``paused``: variant → reason, current phase)."""
    return [
        {
            "variant": str(variant),
            "label": f"Variant {variant}",
            "reason": reason,
            "resume": f"POST /v1/experiences/{experience}/resume",
        }
        for variant, reason in sorted(paused.items())
    ]


def phase_rows(phases: Sequence[Phase], current: int | None = None) -> list[dict[str, Any]]:
    """The phase history, newest first; ``current`` marks the phase the results are read from
    (default: the last one)."""
    last = current if current is not None else max((p.phase for p in phases), default=None)
    rows = []
    for p in sorted(phases, key=lambda p: p.phase, reverse=True):
        rows.append(
            {
                "phase": p.phase,
                "current": p.phase == last,
                "started": (p.started_at_iso or "")[:16].replace("T", " ") or f"{p.started_at:.0f}",
                "changes": "; ".join(p.changes) if p.changes else ("first phase" if p.phase == 1 else "–"),
            }
        )
    return rows

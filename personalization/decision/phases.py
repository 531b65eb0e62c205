"""What makes a new phase: the part of an experience's set-up that decides who gets which variant.

Why phases: a marketer who changes weights, traffic, the audience or the variants mid-flight changes
who is in each arm; results that mixed the two set-ups would compare visitors bucketed under
different rules. Like GrowthBook's phases, such an edit starts phase n+1: exposures carry ``phase``,
aggregates of phase n > 1 live under ``<key>@p<n>``, and sticky assignments of the new phase are
stored apart, so visitors are re-bucketed under the new set-up.

:func:`assignment_fingerprint` hashes exactly what changes assignment — type, variants, weights,
traffic allocation, holdout, the audience's condition and the bandit settings — and nothing else:
renaming, goals, guardrails and the schedule keep the phase. Pure (no I/O); the store appends phases
(:mod:`personalization.store.phases`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import msgspec

from personalization.types import Experience

__all__ = ["assignment_fingerprint", "assignment_setup", "describe_changes"]

_ENCODE = msgspec.json.Encoder(order="sorted")


def assignment_setup(experience: Experience) -> dict[str, Any]:
    """The fields that decide assignment, as plain JSON-able values (stored with each phase)."""
    setup: dict[str, Any] = {
        "type": experience.type,
        "variants": list(experience.variants),
        "weights": [round(float(w), 9) for w in experience.weights],
        "traffic_allocation": round(float(experience.traffic_allocation), 9),
        "holdout": round(float(experience.holdout), 9),
        "audience": experience.audience.condition if experience.audience is not None else None,
    }
    if experience.type == "bandit":
        setup["bandit"] = {
            "method": experience.bandit_method,
            "epsilon": experience.epsilon,
            "min_probability": experience.min_probability,
        }
    # Only when set, so fingerprints recorded before these fields existed stay the same.
    if experience.layer is not None:
        start, end = experience.layer_range or (0.0, 1.0)
        setup["layer"] = [experience.layer, round(float(start), 9), round(float(end), 9)]
    if experience.bucketing != "growthbook":
        setup["bucketing"] = experience.bucketing
    return setup


def assignment_fingerprint(experience: Experience | Mapping[str, Any]) -> str:
    """A short stable hash of :func:`assignment_setup` (16 hex digits; key order does not matter)."""
    setup = experience if isinstance(experience, Mapping) else assignment_setup(experience)
    return hashlib.sha256(_ENCODE.encode(setup)).hexdigest()[:16]


def _share(value: object) -> str:
    return f"{float(value) * 100:g}%" if isinstance(value, (int, float)) else str(value)


def _shares(values: object) -> str:
    return "/".join(_share(v) for v in values) if isinstance(values, list) else str(values)


def describe_changes(
    old: Experience | Mapping[str, Any], new: Experience | Mapping[str, Any]
) -> list[str]:
    """What changed in assignment between two set-ups, for a marketer (empty: the same phase)."""
    a = old if isinstance(old, Mapping) else assignment_setup(old)
    b = new if isinstance(new, Mapping) else assignment_setup(new)
    changes: list[str] = []
    if a.get("type") != b.get("type"):
        changes.append(f"type {a.get('type')} → {b.get('type')}")
    old_variants, new_variants = list(a.get("variants") or []), list(b.get("variants") or [])
    added = [v for v in new_variants if v not in old_variants]
    removed = [v for v in old_variants if v not in new_variants]
    if added:
        changes.append("variants added: " + ", ".join(added))
    if removed:
        changes.append("variants removed: " + ", ".join(removed))
    if not added and not removed and old_variants != new_variants:
        changes.append("variants reordered")
    if a.get("weights") != b.get("weights"):
        changes.append(f"weights {_shares(a.get('weights'))} → {_shares(b.get('weights'))}")
    for field, label in (("traffic_allocation", "traffic allocation"), ("holdout", "holdout")):
        if a.get(field) != b.get(field):
            changes.append(f"{label} {_share(a.get(field))} → {_share(b.get(field))}")
    if a.get("audience") != b.get("audience"):
        changes.append("audience condition changed")
    if a.get("bandit") != b.get("bandit") and a.get("type") == b.get("type"):
        changes.append("bandit settings changed")
    if a.get("layer") != b.get("layer"):
        changes.append(f"layer {_layer(a.get('layer'))} → {_layer(b.get('layer'))}")
    if a.get("bucketing") != b.get("bucketing"):
        changes.append(f"bucketing {a.get('bucketing') or 'growthbook'} → {b.get('bucketing') or 'growthbook'}")
    return changes


def _layer(value: object) -> str:
    if isinstance(value, list) and len(value) == 3:
        return f"{value[0]} [{_share(value[1])}, {_share(value[2])})"
    return "none"

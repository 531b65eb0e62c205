"""Harm planted on purpose (``vary simulate --harm``), so a newcomer can watch a guardrail fire.

A guardrail (an experience's ``guardrails`` in Contentful) pauses a variant once a sequential test
establishes that it harms a metric (:mod:`personalization.measurement.guardrails`). Nobody trusts
such a safety net before seeing it catch something, so the simulator can make the visitors who got
one variant answer worse:

    --harm csat:banner-shipping-test:2:0.5

reads ``<metric>:<experience>:<variant>:<effect>``; the metric is ``csat``, ``task_success``, ``nps``,
``ces`` or ``goal:<goal>`` (``goal:purchase``, ``goal:signup``: the goals the simulated shop converts),
and may itself contain a colon, so the string is read from the right. ``effect`` (0 < e ≤ 1) is the
share of that arm's answers turned bad: a CSAT answer becomes 1–2, an NPS answer a detractor's
0–6, a CES answer 6–7 (high effort), a successful task a failed one; for a goal, the conversion
probability is multiplied by 1 − e. Only visitors *shown* the variant are harmed: once a guardrail
pauses it, its visitors see the baseline and answer as everyone else.

The changes draw from a random stream of their own (seeded by the visitor and session), so a run
without ``--harm`` is exactly the run it was before harm could be planted, and a run with it
differs only in the harmed answers.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["HARM_METRICS", "HARM_GOALS", "Harm", "parse_harm", "harm_factor", "apply_harms"]

#: Metrics the simulated visitors answer (besides ``goal:<goal>``).
HARM_METRICS = ("csat", "task_success", "nps", "ces")
#: Goals the simulated shop converts.
HARM_GOALS = ("purchase", "signup")
_FORMAT = "<metric>:<experience>:<variant>:<effect>, e.g. csat:banner-shipping-test:2:0.5"


@dataclass(frozen=True, slots=True)
class Harm:
    """Visitors shown ``variant`` of ``experience`` answer ``metric`` worse by ``effect`` (module doc)."""

    metric: str
    experience: str
    variant: int
    effect: float

    def hits(self, served: Mapping[str, int]) -> bool:
        """Whether a visitor shown these variants (experience → variant) is harmed."""
        return served.get(self.experience) == self.variant


def parse_harm(text: str) -> Harm:
    """``<metric>:<experience>:<variant>:<effect>`` → :class:`Harm`; ``ValueError`` says what is wrong."""
    parts = text.strip().rsplit(":", 3)
    if len(parts) != 4:
        raise ValueError(f"harm {text!r}: expected {_FORMAT}")
    metric, experience, variant_text, effect_text = (p.strip() for p in parts)
    goal = metric.removeprefix("goal:") if metric.startswith("goal:") else None
    if metric not in HARM_METRICS and goal not in HARM_GOALS:
        known = ", ".join((*HARM_METRICS, *(f"goal:{g}" for g in HARM_GOALS)))
        raise ValueError(f"harm {text!r}: metric {metric!r} is not one the simulated visitors answer ({known})")
    if not experience:
        raise ValueError(f"harm {text!r}: no experience key; expected {_FORMAT}")
    try:
        variant = int(variant_text)
    except ValueError:
        raise ValueError(f"harm {text!r}: variant {variant_text!r} is not a number (1 = the first variant)") from None
    if variant < 1:
        raise ValueError(f"harm {text!r}: variant must be 1 or more (0 is the baseline, which is compared with)")
    try:
        effect = float(effect_text)
    except ValueError:
        raise ValueError(f"harm {text!r}: effect {effect_text!r} is not a number") from None
    if not (math.isfinite(effect) and 0.0 < effect <= 1.0):
        raise ValueError(f"harm {text!r}: effect must be in (0, 1], the share of answers made worse")
    return Harm(metric=metric, experience=experience, variant=variant, effect=effect)


def harm_factor(harms: Iterable[Harm], goal: str, served: Mapping[str, int]) -> float:
    """What a harmed visitor's conversion probability for ``goal`` is multiplied by (1: unharmed)."""
    factor = 1.0
    for harm in harms:
        if harm.metric == f"goal:{goal}" and harm.hits(served):
            factor *= 1.0 - harm.effect
    return factor


def apply_harms(
    events: list[dict[str, Any]], harms: Iterable[Harm], served: Mapping[str, int], visitor_id: str, session: int
) -> list[dict[str, Any]]:
    """The events with this visitor's answers made worse where a harm hits (in place; also returned)."""
    active = [h for h in harms if h.metric in HARM_METRICS and h.hits(served)]
    if not active:
        return events
    rng = random.Random(f"vary-sim-harm:{visitor_id}:{session}")
    for event in events:
        for harm in active:
            if rng.random() >= harm.effect:
                continue
            kind, metric = event.get("type"), event.get("metric")
            if harm.metric == "task_success" and kind == "task" and event.get("success"):
                event["success"] = False
            elif kind == "survey" and metric == harm.metric == "csat":
                event["score"] = rng.choice([1, 2])
            elif kind == "survey" and metric == harm.metric == "nps":
                event["score"] = rng.randint(0, 6)
            elif kind == "survey" and metric == harm.metric == "ces":
                event["score"] = rng.choice([6, 7])
    return events

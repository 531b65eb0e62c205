"""An experience's ``guardrails`` field read into :class:`~personalization.types.Guardrail` values.

A guardrail is a metric a variant must not harm; when harm is established the variant is paused
(``personalization.measurement.guardrails``). Marketers write the field as a JSON list in Contentful::

    [{"metric": "csat"}, {"metric": "goal:purchase", "harm": "decrease"}]

Each metric has a natural direction of harm, used when ``harm`` is left out: lower task success,
CSAT, NPS and goal conversion rates are harm; higher abandonment and CES (customer *effort*, 1–7,
lower is better) are harm. A guardrail entry Vary cannot read is reported and left out — the
experience itself keeps running, because a typo in a safety net must not switch the test off.
"""

from __future__ import annotations

from typing import Literal

from personalization.types import Guardrail

__all__ = ["DEFAULT_HARM", "MAX_GUARDRAILS", "GOAL_PREFIX", "parse_guardrails"]

#: The direction that is harm for each built-in metric (``goal:<name>``: ``decrease``).
DEFAULT_HARM: dict[str, Literal["decrease", "increase"]] = {
    "task_success": "decrease",
    "abandonment": "increase",
    "csat": "decrease",
    "ces": "increase",
    "nps": "decrease",
}
GOAL_PREFIX = "goal:"
#: More guardrails than this are left out: each is a sequential test per variant.
MAX_GUARDRAILS = 8
_MAX_GOAL_LENGTH = 128
_EXAMPLE = '[{"metric": "csat"}, {"metric": "goal:purchase", "harm": "decrease"}]'


def parse_guardrails(raw: object) -> tuple[tuple[Guardrail, ...], list[str]]:
    """The guardrails of a ``guardrails`` field value, and one problem text per entry left out.

    ``None`` (the field is empty) is no guardrail and no problem. Duplicates of a metric keep the first.
    """
    if raw is None or raw == []:
        return (), []
    if not isinstance(raw, list):
        return (), [f"Its guardrails field is not a JSON list of guardrails; no guardrail runs. "
                    f"Write it like {_EXAMPLE}."]
    guardrails: dict[str, Guardrail] = {}
    problems: list[str] = []
    for position, item in enumerate(raw, start=1):
        guardrail, problem = _one(item)
        if problem is not None:
            problems.append(f"Guardrail {position} ({_shown(item)}) in its guardrails field {problem}; "
                            "that guardrail is left out.")
        elif guardrail is not None and guardrail.metric not in guardrails:
            guardrails[guardrail.metric] = guardrail
    if len(guardrails) > MAX_GUARDRAILS:
        problems.append(f"Its guardrails field lists {len(guardrails)} metrics; the first {MAX_GUARDRAILS} "
                        "run.")
    return tuple(list(guardrails.values())[:MAX_GUARDRAILS]), problems


def _one(item: object) -> tuple[Guardrail | None, str | None]:
    if isinstance(item, str):  # a bare metric name is read as {"metric": name}
        item = {"metric": item}
    if not isinstance(item, dict):
        return None, 'is not an object like {"metric": "csat"}'
    metric = item.get("metric")
    if not isinstance(metric, str) or not metric.strip():
        return None, "has no metric"
    metric = metric.strip()
    default = _default_harm(metric)
    if default is None:
        return None, (f'has the metric "{metric[:60]}", which Vary does not measure (use task_success, '
                      "abandonment, csat, ces, nps or goal:<goal name>)")
    harm = item.get("harm", default)
    if harm not in ("decrease", "increase"):
        return None, f'has harm {harm!r} (use "decrease" or "increase", or leave it out for {default})'
    unknown = sorted(set(item) - {"metric", "harm"})
    if unknown:
        return None, f"has fields Vary does not know: {', '.join(str(u)[:30] for u in unknown)}"
    return Guardrail(metric=metric, harm=harm), None


def _default_harm(metric: str) -> Literal["decrease", "increase"] | None:
    if metric in DEFAULT_HARM:
        return DEFAULT_HARM[metric]
    goal = metric.removeprefix(GOAL_PREFIX)
    if metric.startswith(GOAL_PREFIX) and goal.strip() == goal and 0 < len(goal) <= _MAX_GOAL_LENGTH:
        return "decrease"
    return None


def _shown(item: object) -> str:
    text = repr(item)
    return text if len(text) <= 80 else text[:77] + "..."

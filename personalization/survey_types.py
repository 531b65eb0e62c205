"""What ``content.surveys`` compiles a ``varySurvey`` entry into (issue 24): metric, trigger, texts per
locale, sampling and caps. Plain data, no behaviour beyond a trigger's label; re-exported by
:mod:`personalization.types`, the module ``content`` imports shared types from.
"""

from __future__ import annotations

from typing import Literal

from msgspec import Struct

__all__ = [
    "SURVEY_METRICS",
    "SURVEY_TRIGGERS",
    "SurveyDefinition",
    "SurveyMetric",
    "SurveyText",
    "SurveyTrigger",
    "SurveyTriggerKind",
]


SurveyMetric = Literal["nps", "csat", "ces", "sus", "feedback"]
SURVEY_METRICS: tuple[str, ...] = ("nps", "csat", "ces", "sus", "feedback")
SurveyTriggerKind = Literal["task_success", "task_failure", "page", "visits", "purchase", "exit_intent"]
#: Trigger kinds, in the order a due survey is preferred when several are due at once: the moment a
#: task ended or an order was placed first (it passes), then where the person is, then the rest.
SURVEY_TRIGGERS: tuple[str, ...] = ("task_success", "task_failure", "purchase", "page", "visits", "exit_intent")


class SurveyTrigger(Struct, frozen=True, kw_only=True):
    """When a survey becomes due: ``kind`` and its ``detail`` (the task name, the page, the number of
    visits). :attr:`label` is how content writes it and a prompt reports it, e.g. ``task_success:checkout``."""

    kind: SurveyTriggerKind
    detail: str | None = None

    @property
    def label(self) -> str:
        return self.kind if self.detail is None else f"{self.kind}:{self.detail}"


class SurveyText(Struct, frozen=True, kw_only=True):
    """A survey's words in one locale: the question, the scale's end labels and SUS's ten statements."""

    question: str
    low_label: str | None = None
    high_label: str | None = None
    items: tuple[str, ...] = ()


class SurveyDefinition(Struct, frozen=True, kw_only=True):
    """One compiled ``varySurvey`` entry. ``texts`` has every space locale (fallbacks applied at
    compile time); ``experience`` is the key of the experience it is attached to; ``cap_days``: not
    due to a person shown any survey, on any channel, in that many days; ``max_per_person``: how often
    one person may be shown this one (``None``: no limit besides the cap)."""

    id: str
    key: str
    name: str
    metric: SurveyMetric
    trigger: SurveyTrigger
    texts: dict[str, SurveyText]
    problem_tags: tuple[str, ...] = ()
    sampling_rate: float = 1.0
    cap_days: float = 30.0
    max_per_person: int | None = None
    experience: str | None = None

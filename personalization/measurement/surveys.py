"""A survey's results, reported honestly: who was asked, who answered, per variant and channel.

Why counted from the event stream and not by the aggregator: the aggregation scripts attribute an
event to the exposures of its visitor and keep per-experience counters; survey showings and
dismissals would need new counters per survey × variant × channel in the Lua steps
(``measurement/scripts``) and a migration for data already aggregated. A survey report is asked for
rarely, by an admin, over one survey; reading the ``survey_shown`` / ``survey_dismissed`` /
``survey`` / ``feedback`` events of the stream (``XRANGE`` in pages, bounded by the stream's
retention) and each respondent's variant (one pipelined ``HGET`` of the sticky assignment per person)
costs nothing on the hot paths. The answers themselves still reach the experience's CX results
through the aggregator, as every ``survey`` event does.

Counted per **person**: ``shown`` people shown the survey, ``answered`` those of them who answered,
``dismissed`` those who closed it without answering; ``answers`` counts every answer event (an email
link answered with no showing recorded counts there, not in the rate). ``response_rate`` =
answered / shown with its Wilson interval. The CX figure of each arm (NPS, CSAT top-two-box %, CES
mean, SUS mean) carries its arm's response rate: a figure from 3 % of the people asked says less
than one from 40 %.

**Response-rate check**: when the survey is attached to an experience, each variant's response rate
is compared with control's by the pooled two-proportion z-test; a p-value below
:data:`RESPONSE_RATE_ALPHA` divided by the number of comparisons (Bonferroni) **flags** the survey:
the variant changes who answers, so its CX comparison is biased (the people who answer differ, not
only their answers).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated

from msgspec import Meta, Struct
from redis.asyncio import Redis

from personalization.measurement.events import (
    Event,
    Feedback,
    Survey,
    SurveyDismissed,
    SurveyShown,
)
from personalization.measurement.stats import (
    mean_interval,
    nps_interval,
    two_proportion_p_value,
    wilson_interval,
)
from personalization.measurement.stored_events import STORED_EVENT_DECODER, UnknownEventKind
from personalization.store.keys import profile_key
from personalization.types import SurveyDefinition

__all__ = [
    "RESPONSE_RATE_ALPHA",
    "CxFigure",
    "ExperienceSurvey",
    "FeedbackGroup",
    "ResponseRate",
    "SurveyArm",
    "SurveyResults",
    "experience_surveys",
    "read_survey_events",
    "survey_report",
    "survey_results",
    "variants_of",
]

RESPONSE_RATE_ALPHA = 0.05
#: Texts kept per problem tag in the report (the newest).
FEEDBACK_TEXTS = 50
_PAGE = 2000
UNTAGGED = "(untagged)"


class ResponseRate(Struct, frozen=True, kw_only=True):
    """Who was asked and who answered, counted per person, in one slice (all, a variant, a channel)."""

    shown: Annotated[int, Meta(description="People shown the survey.")]
    answered: Annotated[int, Meta(description="People shown the survey who answered it.")]
    dismissed: Annotated[int, Meta(description="People shown the survey who closed it without answering.")]
    answers: Annotated[
        int,
        Meta(
            description="Answer events (`survey` / `feedback`), including those with no showing recorded "
            "(e.g. from an email link), which the rate leaves out."
        ),
    ]
    response_rate: Annotated[
        float | None, Meta(description="answered / shown, 0–1; null when nobody was shown the survey.")
    ]
    interval: Annotated[
        tuple[float, float] | None,
        Meta(description="The response rate's 95 % Wilson interval (low, high), 0–1; null when nobody was shown it."),
    ]


class CxFigure(Struct, frozen=True, kw_only=True):
    """The metric over one arm's answers, and the response rate it rests on."""

    metric: Annotated[str, Meta(description="What the survey measures: `nps`, `csat`, `ces` or `sus`.")]
    score: Annotated[
        float | None,
        Meta(
            description="The figure: NPS (−100…100), CSAT top-two-box share in percent (answers ≥ 4), CES or "
            "SUS mean score; null with no scored answers."
        ),
    ]
    interval: Annotated[
        tuple[float, float] | None,
        Meta(description="The score's 95 % interval (low, high), in the score's unit; null when it cannot be computed."),
    ]
    n: Annotated[int, Meta(description="Scored answers the figure is computed from.")]
    response_rate: Annotated[
        float | None,
        Meta(description="The response rate (answered / shown, 0–1) of the people the figure rests on; null: none shown."),
    ]


class SurveyArm(Struct, frozen=True, kw_only=True):
    """One variant's people: their response rate and the CX figure of their answers."""

    responses: Annotated[
        ResponseRate, Meta(description="This variant's people: shown, answered, dismissed and the response rate.")
    ]
    cx: (
        Annotated[CxFigure, Meta(description="The CX figure of this variant's answers; null for a feedback survey.")]
        | None
    )
    response_rate_p_value: Annotated[
        float | None,
        Meta(
            description="Two-proportion z-test p-value of this variant's response rate against control's; null "
            "for control or when undefined."
        ),
    ] = None


class FeedbackGroup(Struct, frozen=True, kw_only=True):
    """The free-text feedback under one problem tag."""

    count: Annotated[int, Meta(description="Feedback answers with this problem tag.")]
    texts: Annotated[list[str], Meta(description="Their texts, newest first, at most the 50 newest.")]


class SurveyResults(Struct, frozen=True, kw_only=True):
    """A survey's report: response rates overall, per variant and per channel, CX figures, feedback."""

    key: Annotated[str, Meta(description="The survey's key.")]
    metric: Annotated[str, Meta(description="What the survey measures: `nps`, `csat`, `ces`, `sus` or `feedback`.")]
    experience: Annotated[
        str | None, Meta(description="The key of the experience the survey is attached to; null: none.")
    ]
    responses: Annotated[
        ResponseRate, Meta(description="All people shown it: shown, answered, dismissed and the response rate.")
    ]
    cx: (
        Annotated[
            CxFigure, Meta(description="The CX figure over every answer, with its response rate; null for feedback.")
        ]
        | None
    )
    by_variant: Annotated[
        dict[str, SurveyArm],
        Meta(
            description="By variant of the attached experience (`0` is control, `-1` its holdout): response rate, CX figure and the "
            "rate's p-value against control. Empty when the survey is attached to no experience."
        ),
    ]
    by_channel: Annotated[
        dict[str, ResponseRate],
        Meta(description="By channel the events came from (`web`, `email`, …; `unknown` when unset): the response rate."),
    ]
    response_rate_differs: Annotated[
        bool,
        Meta(
            description="True when a variant's response rate differs from control's (two-proportion z-test, "
            "Bonferroni over variants): its CX comparison is biased; `flag` says which."
        ),
    ]
    flag: Annotated[
        str | None, Meta(description="Which variants' response rates differ, in words; null when none does.")
    ]
    feedback: Annotated[
        dict[str, FeedbackGroup],
        Meta(description="Free-text feedback by problem tag (`(untagged)` for none): count and the newest texts."),
    ]


class ExperienceSurvey(Struct, frozen=True, kw_only=True):
    """A survey attached to an experience, as the experience's results show it (issue 24): how many
    of each variant's people were asked and answered, beside the CX figure, and whether a variant
    changes who answers. The survey's own report (``GET /v1/surveys/{key}/results``) adds channels
    and feedback texts."""

    metric: Annotated[str, Meta(description="What the survey measures: `nps`, `csat`, `ces`, `sus` or `feedback`.")]
    responses: Annotated[ResponseRate, Meta(description="All people shown it: shown, answered, dismissed, response rate.")]
    by_variant: Annotated[
        dict[str, SurveyArm],
        Meta(description="Per variant of the experience: its response rate (answered / shown, Wilson interval), "
                         "the CX figure of its answers with that rate, and the rate's p-value against control."),
    ]
    response_rate_differs: Annotated[
        bool, Meta(description="A variant's response rate differs from control's (Bonferroni over variants).")
    ]
    flag: Annotated[
        str | None, Meta(description="Which variants, in words: its CX comparison with control is biased.")
    ] = None


class _Tally:
    """People shown, answering and dismissing, and the answers' scores, for one slice."""

    def __init__(self) -> None:
        self.shown: set[str] = set()
        self.answered: set[str] = set()
        self.dismissed: set[str] = set()
        self.answers = 0
        self.scores: list[float] = []

    def rate(self) -> ResponseRate:
        shown = len(self.shown)
        answered = len(self.answered & self.shown)
        dismissed = len((self.dismissed - self.answered) & self.shown)
        rate = answered / shown if shown else None
        return ResponseRate(shown=shown, answered=answered, dismissed=dismissed, answers=self.answers,
                            response_rate=rate, interval=wilson_interval(answered, shown) if shown else None)


def _sus(event: Survey) -> float | None:
    if event.answers is not None:  # Brooke: odd items a − 1, even 5 − a, the sum × 2.5
        return 2.5 * sum((a - 1) if i % 2 == 0 else (5 - a) for i, a in enumerate(event.answers))
    return event.score


def _cx(metric: str, scores: Sequence[float], rate: float | None) -> CxFigure | None:
    if metric == "feedback":
        return None
    n = len(scores)
    score: float | None
    interval: tuple[float, float] | None
    if metric == "nps":
        promoters = sum(1 for s in scores if s >= 9)
        detractors = sum(1 for s in scores if s <= 6)
        score = 100.0 * (promoters - detractors) / n if n else None
        interval = nps_interval(promoters, n - promoters - detractors, detractors)
    elif metric == "csat":  # top-two-box share, in percent, as the CX report gives it
        top = sum(1 for s in scores if s >= 4)
        score = 100.0 * top / n if n else None
        lo, hi = wilson_interval(top, n)
        interval = (100.0 * lo, 100.0 * hi) if n else None
    else:  # ces, sus: means
        score, interval = mean_interval(n, sum(scores), sum(s * s for s in scores))
    return CxFigure(metric=metric, score=score, interval=interval, n=n, response_rate=rate)


def survey_results(
    survey: SurveyDefinition, events: Iterable[Event], variant_of: Mapping[str, int] | None = None
) -> SurveyResults:
    """The report over a survey's events (pure). ``variant_of``: person → the variant of the
    survey's experience they were served (people not in it are left out of ``by_variant``)."""
    variant_of = variant_of or {}
    total = _Tally()
    arms: dict[str, _Tally] = {}
    channels: dict[str, _Tally] = {}
    feedback: dict[str, list[str]] = {}
    for event in events:
        if getattr(event, "survey", None) != survey.key:
            continue
        person = event.visitor_id
        slices = [total, channels.setdefault(event.channel or "unknown", _Tally())]
        if survey.experience is not None and person in variant_of:
            slices.append(arms.setdefault(str(variant_of[person]), _Tally()))
        for tally in slices:
            if isinstance(event, SurveyShown):
                tally.shown.add(person)
            elif isinstance(event, SurveyDismissed):
                tally.dismissed.add(person)
            elif isinstance(event, (Survey, Feedback)):
                tally.answered.add(person)
                tally.answers += 1
                score = _sus(event) if isinstance(event, Survey) and event.metric == "sus" else (
                    event.score if isinstance(event, Survey) else None)
                if score is not None:
                    tally.scores.append(score)
        if isinstance(event, Feedback):
            feedback.setdefault(event.problem or UNTAGGED, []).append(event.text)
    by_variant: dict[str, SurveyArm] = {}
    control = arms.get("0")
    control_rate = control.rate() if control is not None else None
    compared = [key for key in arms if key != "0"]
    threshold = RESPONSE_RATE_ALPHA / max(1, len(compared))
    flagged: list[str] = []
    for key in sorted(arms, key=int):
        rate = arms[key].rate()
        p_value = None
        if key != "0" and control_rate is not None:
            p_value = two_proportion_p_value(control_rate.answered, control_rate.shown, rate.answered, rate.shown)
            if p_value is not None and p_value < threshold:
                flagged.append(f"variant {key} ({rate.response_rate:.1%} vs control {control_rate.response_rate:.1%}, "
                               f"p = {p_value:.2g})")
        by_variant[key] = SurveyArm(responses=rate, cx=_cx(survey.metric, arms[key].scores, rate.response_rate),
                                    response_rate_p_value=p_value)
    overall = total.rate()
    flag = None
    if flagged:
        flag = ("Response rates differ between arms: " + "; ".join(flagged) + ". The variant changes who answers, "
                "so comparing its answers with control's is biased.")
    return SurveyResults(
        key=survey.key, metric=survey.metric, experience=survey.experience, responses=overall,
        cx=_cx(survey.metric, total.scores, overall.response_rate), by_variant=by_variant,
        by_channel={channel: tally.rate() for channel, tally in sorted(channels.items())},
        response_rate_differs=bool(flagged), flag=flag,
        feedback={tag: FeedbackGroup(count=len(texts), texts=texts[-FEEDBACK_TEXTS:][::-1])
                  for tag, texts in sorted(feedback.items())},
    )


_SURVEY_TYPES = (b'"survey_shown"', b'"survey_dismissed"', b'"survey"', b'"feedback"')


async def read_survey_events(redis: Redis, streams: Sequence[str], survey_key: str) -> list[Event]:
    """The stream's events about one survey (every partition, oldest first per partition)."""
    needle = f'"survey":"{survey_key}"'.encode()
    found: list[Event] = []
    for stream in streams:
        start = "-"
        while True:
            page = await redis.xrange(stream, min=start, max="+", count=_PAGE)
            for entry_id, fields in page:
                for raw in fields.values():
                    data = raw if isinstance(raw, bytes) else str(raw).encode()
                    if needle in data and any(kind in data for kind in _SURVEY_TYPES):
                        try:  # tolerant of a newer version's records (stored_events.py)
                            found.append(STORED_EVENT_DECODER.decode(data))
                        except UnknownEventKind:
                            continue
            if len(page) < _PAGE:
                break
            last = page[-1][0]
            start = "(" + (last.decode() if isinstance(last, bytes) else last)
    return found


async def variants_of(redis: Redis, people: Iterable[str], experience: str) -> dict[str, int]:
    """Each person's sticky variant of ``experience`` (one pipelined round trip)."""
    ordered = list(dict.fromkeys(people))
    if not ordered:
        return {}
    async with redis.pipeline(transaction=False) as pipe:
        for person in ordered:
            pipe.hget(profile_key(person), f"a:{experience}")
        values = await pipe.execute()
    return {person: int(value) for person, value in zip(ordered, values, strict=True) if value is not None}


async def survey_report(redis: Redis, streams: Sequence[str], survey: SurveyDefinition) -> SurveyResults:
    """Read a survey's events and its respondents' variants, and report (see the module doc)."""
    events = await read_survey_events(redis, streams, survey.key)
    variants: dict[str, int] = {}
    if survey.experience is not None:
        variants = await variants_of(redis, (e.visitor_id for e in events), survey.experience)
    return survey_results(survey, events, variants)


async def experience_surveys(
    redis: Redis, streams: Sequence[str], surveys: Iterable[SurveyDefinition]
) -> dict[str, ExperienceSurvey]:
    """The response rates of an experience's attached ``surveys``, by survey key: each is
    :func:`survey_report` (one read of the event stream per survey) without channels and feedback."""
    out: dict[str, ExperienceSurvey] = {}
    for survey in sorted(surveys, key=lambda s: s.key):
        report = await survey_report(redis, streams, survey)
        out[survey.key] = ExperienceSurvey(
            metric=report.metric, responses=report.responses, by_variant=report.by_variant,
            response_rate_differs=report.response_rate_differs, flag=report.flag,
        )
    return out

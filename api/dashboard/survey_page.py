"""The survey pages: what each survey asked, who answered, per variant and channel, and what they wrote.

The numbers are :func:`~personalization.measurement.surveys.survey_report`'s (the same report
``GET /v1/surveys/{key}/results`` serves); this module only words and formats them. Every CX figure
is shown beside the response rate it rests on, because a score from 3 % of the people asked says less
than one from 40 %; the flag that a variant changes who answers leads the page, because it makes the
comparison of the variants' answers biased whatever the scores say.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from markupsafe import Markup

from api.dashboard.charts import Bar, bar_chart, percent
from personalization.decision.selection import HOLDOUT_STICKY
from personalization.measurement.surveys import (
    CxFigure,
    ExperienceSurvey,
    ResponseRate,
    SurveyArm,
    SurveyResults,
)
from personalization.types import SurveyDefinition

__all__ = ["METRIC_NAMES", "experience_surveys_view", "survey_row", "survey_view"]

METRIC_NAMES: dict[str, str] = {
    "nps": "NPS",
    "csat": "CSAT (top-two-box)",
    "ces": "CES (mean, 1–7)",
    "sus": "SUS (mean, 0–100)",
    "feedback": "Free-text feedback",
}


def _label(variant: str) -> str:
    """``0`` control, ``-1`` the experience's holdout (its sticky value, ``HOLDOUT_STICKY``), else a variant."""
    if variant == "0":
        return "Control"
    return "Holdout" if variant == str(HOLDOUT_STICKY) else f"Variant {variant}"


def _figure(value: float, metric: str) -> str:
    if metric == "csat":
        return f"{value:.0f}%"
    return f"{value:+.0f}" if metric == "nps" else f"{value:.1f}"


def _cx(cx: CxFigure | None) -> dict[str, str]:
    """The CX figure, its 95 % interval and the response rate it rests on, as text."""
    if cx is None:
        return {"score": "–", "interval": "", "n": "0", "rate": ""}
    score = "–" if cx.score is None else _figure(cx.score, cx.metric)
    interval = "" if cx.interval is None else f"[{_figure(cx.interval[0], cx.metric)} – {_figure(cx.interval[1], cx.metric)}]"
    rate = "" if cx.response_rate is None else f"from {percent(cx.response_rate, 1)} of those asked"
    return {"score": score, "interval": interval, "n": f"{cx.n:,}", "rate": rate}


def _rate(r: ResponseRate) -> dict[str, str]:
    return {
        "shown": f"{r.shown:,}",
        "answered": f"{r.answered:,}",
        "dismissed": f"{r.dismissed:,}",
        "ignored": f"{max(r.shown - r.answered - r.dismissed, 0):,}",
        "answers": f"{r.answers:,}",
        "rate": percent(r.response_rate, 1),
        "interval": "" if r.interval is None else f"[{percent(r.interval[0], 1)} – {percent(r.interval[1], 1)}]",
    }


def _p(value: float | None) -> str:
    if value is None:
        return "–"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _trigger(survey: SurveyDefinition) -> str:
    return survey.trigger.label


def survey_row(survey: SurveyDefinition) -> dict[str, Any]:
    """One line of the surveys list (no numbers: those are read when a survey's page is opened)."""
    return {
        "key": survey.key,
        "name": survey.name,
        "metric": METRIC_NAMES.get(survey.metric, survey.metric),
        "trigger": _trigger(survey),
        "sampling": percent(survey.sampling_rate, 0),
        "cap": f"{survey.cap_days:g} days",
        "experience": survey.experience,
    }


def _rate_chart(results: SurveyResults) -> Markup:
    bars = [
        Bar(
            label=_label(variant),
            value=arm.responses.response_rate,
            low=arm.responses.interval[0] if arm.responses.interval else None,
            high=arm.responses.interval[1] if arm.responses.interval else None,
            attrs={"data-variant": variant, "data-shown": arm.responses.shown, "data-answered": arm.responses.answered},
        )
        for variant, arm in results.by_variant.items()
    ]
    return bar_chart(bars, title=f"{results.key}: response rate per variant, 95% intervals", domain_max=1.0)


def _variant_rows(by_variant: Mapping[str, SurveyArm]) -> list[dict[str, Any]]:
    """Per variant: shown, answered, dismissed, the response rate, the CX figure resting on it, and
    the rate's p-value against control (the survey page and the experience page show the same)."""
    return [
        {
            "variant": variant,
            "label": _label(variant),
            "responses": _rate(arm.responses),
            "cx": _cx(arm.cx),
            "p_value": _p(arm.response_rate_p_value),
        }
        for variant, arm in by_variant.items()
    ]


def experience_surveys_view(
    surveys: Iterable[SurveyDefinition], figures: Mapping[str, ExperienceSurvey]
) -> list[dict[str, Any]]:
    """The surveys section of an experience's page: per attached survey (``surveys``), its list line
    and the figures the experience's results carry (``figures``: ``ExperimentResults.surveys``, what
    ``GET /v1/experiences/{key}/results`` serves) — the overall and per-variant response rates, each
    arm's CX figure with its interval, and the flag when a variant changes who answers."""
    out: list[dict[str, Any]] = []
    for survey in sorted(surveys, key=lambda s: s.key):
        report = figures.get(survey.key)
        out.append({
            **survey_row(survey),
            "metric_code": survey.metric,
            "overall": _rate(report.responses) if report is not None else None,
            "flag": report.flag if report is not None and report.response_rate_differs else None,
            "variants": _variant_rows(report.by_variant) if report is not None else [],
        })
    return out


def survey_view(survey: SurveyDefinition, results: SurveyResults, locale: str) -> dict[str, Any]:
    """Everything the survey page shows, formatted; the question in ``locale`` (the space's default)."""
    variants = _variant_rows(results.by_variant)
    channels = [{"channel": channel, "responses": _rate(rate)} for channel, rate in results.by_channel.items()]
    feedback = [
        {"problem": problem, "count": f"{group.count:,}", "texts": group.texts}
        for problem, group in sorted(results.feedback.items(), key=lambda item: (-item[1].count, item[0]))
    ]
    return {
        **survey_row(survey),
        "metric_code": survey.metric,
        "question": (survey.texts.get(locale) or next(iter(survey.texts.values()))).question if survey.texts else "",
        "overall": _rate(results.responses),
        "cx": _cx(results.cx),
        "flag": results.flag if results.response_rate_differs else None,
        "variants": variants,
        "channels": channels,
        "feedback": feedback,
        "chart": _rate_chart(results) if variants else None,
    }

"""The survey pages: what each survey asked, who answered, per variant and channel, and what they wrote.

The numbers are :func:`~personalization.measurement.surveys.survey_report`'s (the same report
``GET /v1/surveys/{key}/results`` serves); this module only words and formats them. Every CX figure
is shown beside the response rate it rests on, because a score from 3 % of the people asked says less
than one from 40 %; the flag that a variant changes who answers leads the page, because it makes the
comparison of the variants' answers biased whatever the scores say.
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from api.dashboard.charts import Bar, bar_chart, percent
from personalization.measurement.surveys import CxFigure, ResponseRate, SurveyResults
from personalization.types import SurveyDefinition

__all__ = ["METRIC_NAMES", "survey_row", "survey_view"]

METRIC_NAMES: dict[str, str] = {
    "nps": "NPS",
    "csat": "CSAT (top-two-box)",
    "ces": "CES (mean, 1–7)",
    "sus": "SUS (mean, 0–100)",
    "feedback": "Free-text feedback",
}


def _label(variant: str) -> str:
    return "Control" if variant == "0" else f"Variant {variant}"


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


def survey_view(survey: SurveyDefinition, results: SurveyResults, locale: str) -> dict[str, Any]:
    """Everything the survey page shows, formatted; the question in ``locale`` (the space's default)."""
    variants = [
        {
            "variant": variant,
            "label": _label(variant),
            "responses": _rate(arm.responses),
            "cx": _cx(arm.cx),
            "p_value": _p(arm.response_rate_p_value),
        }
        for variant, arm in results.by_variant.items()
    ]
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

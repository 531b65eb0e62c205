"""A survey's results (issue 24): response rates per variant and channel, the CX figure with its
response rate, the flag when a variant changes who answers (a planted difference is flagged, equal
rates are not), feedback grouped by problem tag — over events read back from the real stream."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from redis.asyncio import Redis

from personalization.measurement.events import (
    Event,
    Feedback,
    Survey,
    SurveyDismissed,
    SurveyShown,
)
from personalization.measurement.recorder import EventRecorder
from personalization.measurement.surveys import (
    read_survey_events,
    survey_report,
    survey_results,
    variants_of,
)
from personalization.store.keys import profile_key
from personalization.types import SurveyDefinition, SurveyText, SurveyTrigger

T = 1_767_000_000.0
TEXT = {"en-US": SurveyText(question="?")}


def definition(key: str = "csat-x", metric: str = "csat", experience: str | None = "exp") -> SurveyDefinition:
    return SurveyDefinition(id="e", key=key, name=key, metric=metric,  # type: ignore[arg-type]
                            trigger=SurveyTrigger(kind="purchase"), texts=TEXT, experience=experience)


def arm_events(prefix: str, shown: int, answering: int, dismissing: int, key: str = "csat-x",
               channel: str = "web") -> list[Event]:
    events: list[Event] = []
    for i in range(shown):
        person = f"{prefix}-{i}"
        events.append(SurveyShown(visitor_id=person, survey=key, metric="csat", channel=channel, ts=T))  # type: ignore[arg-type]
        if i < answering:
            events.append(Survey(visitor_id=person, survey=key, metric="csat", score=5 if i % 2 else 2,
                                 channel=channel, ts=T + 1))  # type: ignore[arg-type]
        elif i < answering + dismissing:
            events.append(SurveyDismissed(visitor_id=person, survey=key, metric="csat", channel=channel, ts=T + 1))  # type: ignore[arg-type]
    return events


def variants(prefix_to_variant: dict[str, int], n: int) -> dict[str, int]:
    return {f"{prefix}-{i}": v for prefix, v in prefix_to_variant.items() for i in range(n)}


def test_a_planted_response_rate_difference_is_flagged() -> None:
    rng = np.random.default_rng(24)
    n = 800
    answering = {0: int(rng.binomial(n, 0.40)), 1: int(rng.binomial(n, 0.40)), 2: int(rng.binomial(n, 0.25))}
    events = [e for v, a in answering.items() for e in arm_events(f"v{v}", n, a, 100)]
    report = survey_results(definition(), events, variants({"v0": 0, "v1": 1, "v2": 2}, n))
    assert report.response_rate_differs and report.flag is not None
    assert "variant 2" in report.flag and "variant 1" not in report.flag and "biased" in report.flag
    arm2 = report.by_variant["2"]
    assert arm2.responses.shown == n and arm2.responses.answered == answering[2]
    assert arm2.response_rate_p_value is not None and arm2.response_rate_p_value < 0.001
    assert arm2.cx is not None and arm2.cx.response_rate == pytest.approx(answering[2] / n)
    assert report.by_variant["0"].response_rate_p_value is None


def test_equal_response_rates_are_not_flagged() -> None:
    n = 500
    events = [e for v in (0, 1) for e in arm_events(f"w{v}", n, 150, 50)]
    report = survey_results(definition(), events, variants({"w0": 0, "w1": 1}, n))
    assert not report.response_rate_differs and report.flag is None
    assert report.by_variant["1"].response_rate_p_value == pytest.approx(1.0)
    control = report.by_variant["0"].responses
    assert (control.shown, control.answered, control.dismissed) == (n, 150, 50)
    assert control.response_rate == 0.3 and control.interval is not None
    assert control.interval[0] < 0.3 < control.interval[1]


def test_cx_figures_channels_and_feedback() -> None:
    events = arm_events("c", 4, 4, 0, channel="ios") + arm_events("m", 2, 0, 2, channel="email")
    report = survey_results(definition(experience=None), events)
    assert report.cx is not None and report.cx.n == 4 and report.cx.score == 50.0  # 2 of 4 gave 5
    assert report.cx.response_rate == pytest.approx(4 / 6) and report.by_variant == {}
    assert report.by_channel["ios"].answered == 4 and report.by_channel["email"].dismissed == 2

    nps = definition("nps-x", "nps", None)
    answers = [Survey(visitor_id=f"n{i}", survey="nps-x", metric="nps", score=s) for i, s in enumerate([10, 9, 8, 3])]
    nps_report = survey_results(nps, answers)
    assert nps_report.cx is not None and nps_report.cx.score == 25.0 and nps_report.responses.answers == 4
    assert nps_report.responses.shown == 0 and nps_report.responses.response_rate is None  # nothing shown recorded

    sus = definition("sus-x", "sus", None)
    best = Survey(visitor_id="s1", survey="sus-x", metric="sus", answers=[5, 1] * 5)
    middling = Survey(visitor_id="s2", survey="sus-x", metric="sus", answers=[3] * 10)
    assert survey_results(sus, [best, middling]).cx.score == 75.0  # type: ignore[union-attr]  # (100 + 50) / 2

    fb = definition("fb-x", "feedback", None)
    notes = [Feedback(visitor_id=f"f{i}", survey="fb-x", text=f"note {i}", problem=tag)
             for i, tag in enumerate(["delivery", "payment", "delivery", None])]
    other = Feedback(visitor_id="f9", survey="another", text="not this survey", problem="delivery")
    grouped = survey_results(fb, [*notes, other])
    assert grouped.cx is None
    assert {tag: g.count for tag, g in grouped.feedback.items()} == {"delivery": 2, "payment": 1, "(untagged)": 1}
    assert grouped.feedback["delivery"].texts == ["note 2", "note 0"]  # newest first


def test_the_report_reads_the_stream_and_the_variants_seen(redis_url: str) -> None:
    async def body() -> None:
        redis = Redis.from_url(redis_url)
        stream = "vary:events:test-survey-report"
        recorder = EventRecorder(redis, stream=stream)
        events = arm_events("r0", 10, 6, 2, key="rep-x") + arm_events("r1", 10, 2, 2, key="rep-x")
        events.append(Survey(visitor_id="r0-0", metric="csat", score=1))  # collected elsewhere: no survey key
        assert await recorder.record(events) == len(events)
        for i in range(10):
            await redis.hset(profile_key(f"r0-{i}"), "a:exp", 0)
            await redis.hset(profile_key(f"r1-{i}"), "a:exp", 1)
        found = await read_survey_events(redis, [stream], "rep-x")
        assert len(found) == len(events) - 1
        assert await variants_of(redis, ["r0-1", "r1-1", "nobody"], "exp") == {"r0-1": 0, "r1-1": 1}
        report = await survey_report(redis, [stream], definition("rep-x"))
        assert report.by_variant["0"].responses.answered == 6 and report.by_variant["1"].responses.answered == 2
        assert report.by_variant["1"].cx is not None and report.by_variant["1"].cx.n == 2
        await redis.aclose()

    asyncio.run(body())

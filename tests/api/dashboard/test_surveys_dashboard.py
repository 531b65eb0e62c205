"""The survey pages of the dashboard (issue 24), through the real app and the real event stream.

People are decided by ``POST /v1/personalize`` (so each has a sticky variant of the shipping test the
demo space's ``checkout-csat`` survey is attached to), then the kit's events go in through
``POST /v1/events``: ``survey_shown``, the answer or ``survey_dismissed``, and written feedback. The
page must show the response rate per variant and channel, each arm's CSAT with its interval and the
response rate it rests on, the flag when a variant changes who answers (planted here: variant 1's
people answer far more often), and the feedback grouped by problem tag.
"""

from __future__ import annotations

import re
import time
from html import unescape

from litestar.testing import TestClient

from api.dashboard.survey_page import survey_view
from personalization.measurement.events import EVENT_DECODER
from personalization.measurement.surveys import survey_results
from personalization.types import SurveyDefinition, SurveyText, SurveyTrigger

SURVEY = "checkout-csat"
EXPERIENCE = "banner-shipping-test"


def _row(html: str, attr: str, value: str) -> str:
    found = re.search(rf'<tr {attr}="{re.escape(value)}">(.*?)</tr>', html, re.DOTALL)
    assert found, f"no row {attr}={value}"
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", found.group(1)))).strip()


def _people(client: TestClient, delivery: dict[str, str], n: int) -> dict[str, int]:
    """``n`` people decided by the real decision; person → their variant of the shipping test."""
    served: dict[str, int] = {}
    for i in range(n):
        body = {"visitor": {"id": f"sv-{i}", "channel": "web"}, "entries": ["bannerShipping"]}
        answer = client.post("/v1/personalize", json=body, headers=delivery).json()
        entry = answer["entries"][0]
        if entry["experience"] == EXPERIENCE and not entry["holdout"]:
            served[f"sv-{i}"] = entry["variant"]
    return served


def test_survey_page_shows_rates_per_variant_the_flag_and_feedback_by_problem(
    client: TestClient, delivery: dict[str, str], admin: dict[str, str]
) -> None:
    served = _people(client, delivery, 150)
    assert {0, 1} <= set(served.values())
    events: list[dict[str, object]] = []
    answered: dict[int, int] = {}
    for n, (person, variant) in enumerate(sorted(served.items())):
        base = {"visitor_id": person, "survey": SURVEY, "touchpoint": "checkout",
                "channel": "ios" if n % 5 == 0 else "web"}
        events.append({**base, "type": "survey_shown", "metric": "csat"})
        # Planted: variant 1's people nearly all answer, everyone else about one in six.
        if (variant == 1 and n % 10 != 0) or (variant != 1 and n % 6 == 0):
            events.append({**base, "type": "survey", "metric": "csat", "score": 5 if variant == 1 else 3})
            answered[variant] = answered.get(variant, 0) + 1
        else:
            events.append({**base, "type": "survey_dismissed", "metric": "csat"})
    people = sorted(served)
    events += [
        {"type": "feedback", "visitor_id": people[0], "survey": SURVEY, "text": "How much is shipping?",
         "problem": "shipping cost unclear"},
        {"type": "feedback", "visitor_id": people[1], "survey": SURVEY, "text": "Shipping fee <b>hidden</b>",
         "problem": "shipping cost unclear"},
        {"type": "feedback", "visitor_id": people[2], "survey": SURVEY, "text": "The coupon did nothing",
         "problem": "coupon not applied"},
        {"type": "feedback", "visitor_id": people[3], "survey": SURVEY, "text": "Nice shop"},
    ]
    for start in range(0, len(events), 100):
        response = client.post("/v1/events", json={"events": events[start:start + 100]}, headers=delivery)
        assert response.status_code == 202 and response.json()["rejected"] == [], response.text

    deadline = time.monotonic() + 10
    while True:  # the page reads the event stream; the recorder may hand a batch over a moment later
        response = client.get(f"/dashboard/surveys/{SURVEY}", headers=admin)
        assert response.status_code == 200, response.text[:2000]
        html = response.text
        if "shipping cost unclear" in html and f"{len(served)} shown" in html or time.monotonic() > deadline:
            break
        time.sleep(0.2)

    assert re.search(r"<h1[^>]*>Checkout satisfaction \(CSAT\)</h1>", html)
    assert "How satisfied are you with checking out today?" in html
    # The flag leads the page, naming the variant that changes who answers.
    flag = re.search(r'<p class="alert response-rate-flag" role="alert">(.*?)</p>', html, re.DOTALL)
    assert flag and "variant 1" in unescape(flag.group(1)) and "biased" in unescape(flag.group(1))
    # Per variant: shown, answered, dismissed, the response rate and the CSAT it rests on.
    shown_1 = sum(1 for v in served.values() if v == 1)
    row_1 = _row(html, "data-variant", "1")
    assert row_1.startswith(f"Variant 1 {shown_1} {answered[1]} {shown_1 - answered[1]} 0 ")
    assert "100% [" in row_1  # every answer in variant 1 is a 5: top-two-box 100 %, with its interval
    rate_1 = f"{answered[1] / shown_1:.1%}"
    assert f"from {rate_1} of those asked" in row_1
    shown_0 = sum(1 for v in served.values() if v == 0)
    row_0 = _row(html, "data-variant", "0")
    assert row_0.startswith(f"Control {shown_0} {answered[0]} {shown_0 - answered[0]} 0 ")
    assert "0% [" in row_0  # control answered 3: not top-two-box
    # Per channel.
    ios = sum(1 for n in range(len(served)) if n % 5 == 0)
    assert _row(html, "data-channel", "ios").startswith(f"ios {ios} ")
    assert _row(html, "data-channel", "web").startswith(f"web {len(served) - ios} ")
    # Feedback grouped by problem tag, the biggest group first, escaped text.
    groups = re.findall(r'<section class="feedback-group" data-problem="([^"]+)"', html)
    assert groups == ["shipping cost unclear", "(untagged)", "coupon not applied"]
    assert "Shipping fee &lt;b&gt;hidden&lt;/b&gt;" in html and "<b>hidden</b>" not in html

    # The list links to it; the experience page names its surveys.
    listing = client.get("/dashboard/surveys", headers=admin).text
    assert f'href="/dashboard/surveys/{SURVEY}"' in listing and "task_success:checkout" in listing
    experience = client.get(f"/dashboard/experiences/{EXPERIENCE}", headers=admin).text
    assert f'<li data-survey="{SURVEY}">' in experience
    missing = client.get("/dashboard/surveys/nope", headers=admin)
    assert missing.status_code == 404 and "nope" in unescape(missing.text)


def test_survey_view_words_a_report_without_answers_and_a_feedback_survey() -> None:
    """Pure: a survey shown but never answered, and a free-text one, read sensibly."""
    feedback = SurveyDefinition(
        id="s1", key="why-leave", name="Why leave?", metric="feedback",
        trigger=SurveyTrigger(kind="exit_intent"), texts={"en-US": SurveyText(question="What stopped you?")},
        problem_tags=("price", "trust"), sampling_rate=0.5,
    )
    raw = [
        b'{"type":"survey_shown","visitor_id":"a","survey":"why-leave","metric":"feedback","channel":"web"}',
        b'{"type":"survey_shown","visitor_id":"b","survey":"why-leave","metric":"feedback","channel":"web"}',
        b'{"type":"feedback","visitor_id":"a","survey":"why-leave","text":"Too dear","problem":"price"}',
    ]
    view = survey_view(feedback, survey_results(feedback, [EVENT_DECODER.decode(r) for r in raw]), "en-US")
    assert view["question"] == "What stopped you?" and view["trigger"] == "exit_intent" and view["sampling"] == "50%"
    assert view["overall"]["shown"] == "2" and view["overall"]["answered"] == "1" and view["overall"]["rate"] == "50.0%"
    assert view["cx"]["score"] == "–" and view["flag"] is None and view["variants"] == [] and view["chart"] is None
    assert view["feedback"] == [{"problem": "price", "count": "1", "texts": ["Too dear"]}]

    silent = SurveyDefinition(
        id="s2", key="quiet", name="Quiet", metric="nps", trigger=SurveyTrigger(kind="visits", detail="3"),
        texts={"en-US": SurveyText(question="Recommend us?")},
    )
    view = survey_view(silent, survey_results(silent, [EVENT_DECODER.decode(
        b'{"type":"survey_shown","visitor_id":"a","survey":"quiet","metric":"nps"}')]), "en-US")
    assert view["overall"]["rate"] == "0.0%" and view["overall"]["ignored"] == "1"
    assert view["cx"]["score"] == "–" and view["cx"]["n"] == "0"


def test_experience_page_shows_its_surveys_figures_as_the_results_api_does(
    client: TestClient, delivery: dict[str, str], admin: dict[str, str]
) -> None:
    """The experience page computes its results with the attached surveys, as
    ``GET /v1/experiences/{key}/results`` does: per variant, shown / answered / dismissed, the
    response rate and the CSAT (with its interval) resting on it — the same numbers as the API's."""
    served = _people(client, delivery, 60)
    assert {0, 1} <= set(served.values())
    events: list[dict[str, object]] = []
    shown: dict[int, int] = {}
    answered: dict[int, int] = {}
    for n, (person, variant) in enumerate(sorted(served.items())):
        base = {"visitor_id": person, "survey": SURVEY, "touchpoint": "checkout", "channel": "web"}
        events.append({**base, "type": "survey_shown", "metric": "csat"})
        shown[variant] = shown.get(variant, 0) + 1
        if n % 3 == 0:  # a third answer (all fives), the rest dismiss it
            events.append({**base, "type": "survey", "metric": "csat", "score": 5})
            answered[variant] = answered.get(variant, 0) + 1
        else:
            events.append({**base, "type": "survey_dismissed", "metric": "csat"})
    for start in range(0, len(events), 100):
        response = client.post("/v1/events", json={"events": events[start:start + 100]}, headers=delivery)
        assert response.status_code == 202 and response.json()["rejected"] == [], response.text

    total_answered = sum(answered.values())
    deadline = time.monotonic() + 10
    while True:  # the page reads the event stream; the recorder may hand a batch over a moment later
        response = client.get(f"/dashboard/experiences/{EXPERIENCE}", headers=admin)
        assert response.status_code == 200, response.text[:2000]
        html = response.text
        if f"({total_answered} of {len(served)} shown" in html or time.monotonic() > deadline:
            break
        time.sleep(0.2)

    section = re.search(rf'<section class="experience-survey" data-survey="{SURVEY}"(.*?)</section>', html, re.DOTALL)
    assert section, "no surveys section on the experience page"
    body = section.group(1)
    assert "Checkout satisfaction (CSAT)" in body and "CSAT (top-two-box) (95% interval)" in unescape(body)
    dismissed = len(served) - total_answered
    assert f"({total_answered} of {len(served)} shown, {dismissed} dismissed)" in unescape(body)
    api = client.get(f"/v1/experiences/{EXPERIENCE}/results", headers=admin).json()["surveys"][SURVEY]
    for variant, n in shown.items():
        label = "Control" if variant == 0 else f"Variant {variant}"
        got = answered.get(variant, 0)
        rate = f"{got / n:.1%}"
        row = _row(body, "data-survey-variant", str(variant))
        assert row.startswith(f"{label} {n} {got} {n - got} 0 {rate} ["), row
        arm = api["by_variant"][str(variant)]
        assert (arm["responses"]["shown"], arm["responses"]["answered"]) == (n, got)  # the API's numbers
        if got:  # every answer a 5: top-two-box 100 %, its interval, and the rate it rests on
            low, high = arm["cx"]["interval"]
            assert arm["cx"]["score"] == 100.0
            assert f"100% [{low:.0f}% – {high:.0f}%]" in row and f"from {rate} of those asked" in row
        p_value = arm["response_rate_p_value"]  # null for control
        p_text = "–" if p_value is None else "< 0.001" if p_value < 0.001 else f"{p_value:.3f}"
        assert row.endswith(f" {got} {p_text}"), row  # the answers the figure rests on, the rate's p


def test_survey_rows_name_the_experiences_holdout() -> None:
    """Held-out people are stored with the sticky value HOLDOUT_STICKY (-1): their row says so."""
    from api.dashboard.survey_page import _label
    from personalization.decision.selection import HOLDOUT_STICKY

    assert [_label(v) for v in ("0", "2", str(HOLDOUT_STICKY))] == ["Control", "Variant 2", "Holdout"]

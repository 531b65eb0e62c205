"""The experience results' ``surveys`` section (issue 24 leftover): for an experience with a survey
attached (the demo's ``checkout-csat`` on ``banner-shipping-test``), each variant's response rate —
people shown, people who answered — beside the CX figure, through the real app and Valkey."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from api.app import create_app
from api.settings import Settings
from tests.api.conftest import ADMIN, DELIVERY

HEADERS = {"Authorization": f"Bearer {DELIVERY}"}
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN}"}
SURVEY, EXPERIENCE = "checkout-csat", "banner-shipping-test"


@pytest.fixture
def client(redis_url: str, model_dir: Path) -> Iterator[TestClient]:
    settings = Settings(redis_url=redis_url, data_dir=model_dir, delivery_keys=(DELIVERY,), admin_keys=(ADMIN,),
                        train_demo_model=False)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _variant(client: TestClient, visitor: str) -> int | None:
    body = {"visitor": {"id": visitor}, "entries": ["bannerShipping"]}
    response = client.post("/v1/personalize", json=body, headers=HEADERS)
    assert response.status_code == 200, response.text
    (entry,) = response.json()["entries"]
    return entry["variant"] if entry["experience"] == EXPERIENCE and not entry.get("holdout") else None


def _send(client: TestClient, events: list[dict[str, Any]]) -> None:
    response = client.post("/v1/events", json={"events": events}, headers=HEADERS)
    assert response.status_code == 202 and not response.json()["rejected"], response.text


def test_each_variant_shows_its_response_rate_beside_its_cx(client: TestClient) -> None:
    shown: Counter[int] = Counter()
    answered: Counter[int] = Counter()
    for i in range(40):
        visitor = f"rate-{i}"
        variant = _variant(client, visitor)
        if variant is None:
            continue
        events: list[dict[str, Any]] = [
            {"type": "survey_shown", "visitor_id": visitor, "survey": SURVEY, "metric": "csat", "channel": "web"}
        ]
        shown[variant] += 1
        if i % 3 == 0:  # a third answer; the rest dismiss it
            events.append({"type": "survey", "visitor_id": visitor, "survey": SURVEY, "metric": "csat", "score": 4})
            answered[variant] += 1
        else:
            events.append({"type": "survey_dismissed", "visitor_id": visitor, "survey": SURVEY, "metric": "csat"})
        _send(client, events)
    assert len(shown) >= 2, shown  # people in at least two arms

    results = client.get(f"/v1/experiences/{EXPERIENCE}/results", headers=ADMIN_HEADERS)
    assert results.status_code == 200, results.text
    section = results.json()["surveys"]
    assert set(section) == {SURVEY}
    survey = section[SURVEY]
    assert survey["metric"] == "csat"
    assert survey["responses"]["shown"] == sum(shown.values())
    assert survey["responses"]["answered"] == sum(answered.values())
    assert {int(v) for v in survey["by_variant"]} == set(shown)
    for variant, n in shown.items():
        arm = survey["by_variant"][str(variant)]
        assert (arm["responses"]["shown"], arm["responses"]["answered"]) == (n, answered[variant])
        assert arm["responses"]["response_rate"] == pytest.approx(answered[variant] / n)
        assert arm["cx"]["response_rate"] == arm["responses"]["response_rate"]  # next to the CX figure
        assert arm["cx"]["n"] == answered[variant]
    # the same numbers and flag as the survey's own report
    report = client.get(f"/v1/surveys/{SURVEY}/results", headers=ADMIN_HEADERS).json()
    assert survey["by_variant"] == report["by_variant"]
    assert survey["response_rate_differs"] == report["response_rate_differs"]

    # an experience without an attached survey: the section is empty
    other = client.get("/v1/experiences/hero-sale/results", headers=ADMIN_HEADERS)
    assert other.status_code == 200 and other.json()["surveys"] == {}


def test_a_variant_that_changes_who_answers_is_flagged_in_the_experience_results(client: TestClient) -> None:
    arms: Counter[int] = Counter()
    for i in range(60):
        visitor = f"flag-{i}"
        variant = _variant(client, visitor)
        if variant is None:
            continue
        arms[variant] += 1
        events: list[dict[str, Any]] = [
            {"type": "survey_shown", "visitor_id": visitor, "survey": SURVEY, "metric": "csat"}
        ]
        if variant != 0:  # planted: only people of the variants answer
            events.append({"type": "survey", "visitor_id": visitor, "survey": SURVEY, "metric": "csat", "score": 5})
        _send(client, events)
    assert arms[0] >= 8 and sum(n for v, n in arms.items() if v) >= 8, arms
    survey = client.get(f"/v1/experiences/{EXPERIENCE}/results", headers=ADMIN_HEADERS).json()["surveys"][SURVEY]
    assert survey["by_variant"]["0"]["responses"]["response_rate"] == 0.0
    assert survey["response_rate_differs"] is True
    assert "changes who answers" in survey["flag"]

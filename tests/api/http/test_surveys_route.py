"""Surveys through the real app and Valkey (issue 24): the demo space's checkout CSAT is due after the
``checkout`` task succeeds, for people in its experience, once per cap across channels; the answer
counts for the variant the visitor saw; email links are signed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from api.app import create_app
from api.http.surveys import survey_token_subject
from api.settings import Settings
from personalization.store.identity import sign_identity
from tests.api.conftest import ADMIN, DELIVERY

SECRET = "survey-link-secret"
HEADERS = {"Authorization": f"Bearer {DELIVERY}"}
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture
def client(redis_url: str, model_dir: Path) -> Iterator[TestClient]:
    settings = Settings(redis_url=redis_url, data_dir=model_dir, delivery_keys=(DELIVERY,), admin_keys=(ADMIN,),
                        train_demo_model=False, identity_secret=SECRET)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def personalize(client: TestClient, visitor: str, **extra: Any) -> dict[str, Any]:
    body = {"visitor": {"id": visitor, "page": "/checkout/done"}, "entries": ["bannerShipping"], "surveys": True,
            **extra}
    response = client.post("/v1/personalize", json=body, headers=HEADERS)
    assert response.status_code == 200, response.text
    return response.json()


def send(client: TestClient, *events: dict[str, Any]) -> None:
    response = client.post("/v1/events", json={"events": list(events)}, headers=HEADERS)
    assert response.status_code == 202 and not response.json()["rejected"], response.text


def checkout(visitor: str, success: bool = True) -> dict[str, Any]:
    return {"type": "task", "visitor_id": visitor, "name": "checkout", "success": success}


def test_the_checkout_csat_is_due_after_its_trigger_and_capped_across_channels(client: TestClient) -> None:
    first = personalize(client, "sv-alice")
    assert first["survey"] is None  # in the experience now, but the checkout has not happened
    (entry,) = first["entries"]
    variant = entry["variant"]

    send(client, checkout("sv-alice", success=False))
    assert personalize(client, "sv-alice")["survey"] is None  # a failed checkout is not this trigger
    send(client, checkout("sv-alice"))
    survey = personalize(client, "sv-alice", locale="de-DE")["survey"]
    assert survey is not None
    assert survey["key"] == "checkout-csat" and survey["metric"] == "csat" and survey["trigger"] == "task_success:checkout"
    assert survey["question"].startswith("Wie zufrieden") and survey["locale"] == "de-DE"
    assert (survey["scale_min"], survey["scale_max"]) == (1, 5) and survey["low_label"] == "Sehr unzufrieden"
    assert survey["experience_key"] == "banner-shipping-test" and survey["variant"] == variant
    assert survey["touchpoint"] == "checkout"
    # The app asks too: the same decision as data.
    due = client.post("/v1/surveys/due", json={"visitor": {"id": "sv-alice", "channel": "ios"}}, headers=HEADERS)
    assert due.status_code == 200 and due.json()["survey"]["key"] == "checkout-csat"

    send(client, {"type": "survey_shown", "visitor_id": "sv-alice", "survey": "checkout-csat", "metric": "csat",
                  "channel": "web"})
    assert personalize(client, "sv-alice")["survey"] is None  # shown on the web: capped on every channel
    due = client.post("/v1/surveys/due", json={"visitor": {"id": "sv-alice", "channel": "ios"}}, headers=HEADERS)
    assert due.json() == {"survey": None}
    send(client, checkout("sv-alice"))  # another checkout inside the 30 days: still capped
    assert personalize(client, "sv-alice")["survey"] is None


def test_no_survey_unless_asked_without_consent_or_outside_its_experience(client: TestClient) -> None:
    personalize(client, "sv-bob")
    send(client, checkout("sv-bob"))
    plain = client.post("/v1/personalize", json={"visitor": {"id": "sv-bob"}, "entries": ["heroHome"]}, headers=HEADERS)
    assert plain.status_code == 200 and plain.json()["survey"] is None  # not asked for
    no_consent = {"visitor": {"id": "sv-bob", "consent": {"analytics": False}}, "entries": ["heroHome"], "surveys": True}
    assert client.post("/v1/personalize", json=no_consent, headers=HEADERS).json()["survey"] is None
    # Never served the experience the survey is attached to: not asked, whatever the trigger.
    send(client, checkout("sv-carol"))
    due = client.post("/v1/surveys/due", json={"visitor": {"id": "sv-carol"}}, headers=HEADERS)
    assert due.status_code == 200 and due.json() == {"survey": None}


def test_bad_requests_are_4xx_naming_the_field(client: TestClient) -> None:
    bad = client.post("/v1/surveys/due", json={"visitor": {}}, headers=HEADERS)
    assert bad.status_code == 400 and "id" in bad.text
    assert client.post("/v1/surveys/due", json={"visitor": {"id": "x"}}).status_code == 401
    unknown = client.get("/v1/surveys/nope/results", headers=ADMIN_HEADERS)
    assert unknown.status_code == 404 and "nope" in unknown.text
    assert client.get("/v1/surveys/checkout-csat/results", headers=HEADERS).status_code == 403


def test_the_answer_shows_for_the_variant_and_an_email_link_records_one(client: TestClient) -> None:
    variants = {}
    for person in ("sv-dan", "sv-eve", "sv-fay"):
        variants[person] = personalize(client, person)["entries"][0]["variant"]
        send(client, checkout(person))
        assert personalize(client, person)["survey"]["key"] == "checkout-csat"
        send(client, {"type": "survey_shown", "visitor_id": person, "survey": "checkout-csat", "metric": "csat"})
    send(client, {"type": "survey", "visitor_id": "sv-dan", "survey": "checkout-csat", "metric": "csat", "score": 5})
    send(client, {"type": "survey_dismissed", "visitor_id": "sv-eve", "survey": "checkout-csat", "metric": "csat"})

    token = sign_identity(SECRET, survey_token_subject("checkout-csat", "sv-fay"), int(time.time()) + 3600)
    forged = client.get("/v1/surveys/checkout-csat/answer",
                        params={"visitor_id": "sv-dan", "score": 1, "token": token})
    assert forged.status_code == 403 and "token" in forged.text
    linked = client.get("/v1/surveys/checkout-csat/answer", params={"visitor_id": "sv-fay", "score": 2, "token": token})
    assert linked.status_code == 200 and linked.json()["recorded"] is True
    out_of_range = client.get("/v1/surveys/checkout-csat/answer",
                              params={"visitor_id": "sv-fay", "score": 9, "token": token})
    assert out_of_range.status_code == 400 and "score" in out_of_range.text

    report = client.get("/v1/surveys/checkout-csat/results", headers=ADMIN_HEADERS)
    assert report.status_code == 200, report.text
    body = report.json()
    assert body["responses"]["shown"] == 3 and body["responses"]["answered"] == 2
    assert body["responses"]["dismissed"] == 1
    assert body["by_channel"]["email"]["answers"] == 1
    arm = body["by_variant"][str(variants["sv-dan"])]
    assert arm["responses"]["answered"] >= 1 and arm["cx"]["n"] >= 1 and arm["cx"]["response_rate"] is not None
    total_answers = sum(a["cx"]["n"] for a in body["by_variant"].values())
    assert total_answers == 2
    assert body["cx"]["metric"] == "csat" and body["cx"]["n"] == 2 and body["cx"]["score"] == 50.0


def test_an_answer_shows_in_the_experience_cx_results_for_the_variant_seen(client: TestClient) -> None:
    variant = personalize(client, "sv-gus")["entries"][0]["variant"]
    send(client, {"type": "page_view", "visitor_id": "sv-gus", "page": "/checkout/done"}, checkout("sv-gus"))
    survey = personalize(client, "sv-gus")["survey"]
    assert survey is not None and survey["variant"] == variant
    send(client, {"type": "survey_shown", "visitor_id": "sv-gus", "survey": survey["key"], "metric": "csat"},
         {"type": "survey", "visitor_id": "sv-gus", "survey": survey["key"], "metric": "csat", "score": 4})
    deadline = time.monotonic() + 10.0
    while True:  # the in-process aggregator holds events ~2 s for their exposures
        results = client.get(f"/v1/experiences/{survey['experience_key']}/results", headers=ADMIN_HEADERS)
        assert results.status_code == 200, results.text
        csat = results.json()["cx"].get(str(variant), {}).get("csat", {})
        if csat.get("n") == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert csat["n"] == 1 and csat["score"] == 100.0

"""Issue #17 items 2 and 11 through the real app: the public delivery key, ``/v1/events``, the
in-process aggregator, the results JSON and the dashboard's experience page.

Reproduced before the fix: two requests of invented goals grew the experience page from 52 kB to
9.5 MB and rendered for seconds on the event loop; one visitor's hundreds of conversions counted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from litestar.testing import TestClient

EXPERIENCE = "banner-shipping-test"  # goals: signup, purchase
RESULTS = f"/v1/experiences/{EXPERIENCE}/results"
PAGE = f"/dashboard/experiences/{EXPERIENCE}"
VISITORS = 24
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"


def _poll(client: TestClient, admin: dict[str, str], ready: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        body = client.get(RESULTS, headers=admin).json()
        if ready(body):
            return body
        assert time.monotonic() < deadline, f"the aggregator did not get there: {body}"
        time.sleep(0.2)


def _personalize(client: TestClient, delivery: dict[str, str], visitor: str, agent: str = BROWSER) -> float:
    started = time.perf_counter()
    response = client.post(
        "/v1/personalize", json={"visitor": {"id": visitor}, "entries": ["bannerShipping"]},
        headers={**delivery, "User-Agent": agent},
    )
    assert response.status_code == 200, response.text
    return time.perf_counter() - started


def _events(client: TestClient, delivery: dict[str, str], events: list[dict[str, Any]]) -> None:
    for i in range(0, len(events), 500):
        response = client.post("/v1/events", json={"events": events[i : i + 500]}, headers=delivery)
        assert response.status_code == 202, response.text


def _signup_events(body: dict[str, Any]) -> int:
    return sum(sum(day["conversions"]["signup"]) for day in body["daily"].values())


def _rates(body: dict[str, Any]) -> dict[str, list[float | None]]:
    return {goal: [v["rate"] for v in result["variants"]] for goal, result in body["goals"].items()}


def test_junk_from_one_visitor_and_bots_barely_move_results(
    client: TestClient, delivery: dict[str, str], admin: dict[str, str]
) -> None:
    for i in range(VISITORS):
        _personalize(client, delivery, f"flood-{i}")
    _poll(client, admin, lambda b: sum(b["visitors"]) == VISITORS)
    clean = [{"type": "conversion", "visitor_id": f"flood-{i}", "goal": "signup"} for i in range(0, VISITORS, 3)]
    clean += [{"type": "survey", "visitor_id": f"flood-{i}", "metric": "nps", "score": 9} for i in range(0, VISITORS, 2)]
    _events(client, delivery, clean)
    before = _poll(client, admin, lambda b: sum(v["conversions"] for v in b["goals"]["signup"]["variants"]) == 8
                   and sum(v["nps"]["n"] for v in b["cx"].values()) == 12)
    json_before = len(client.get(RESULTS, headers=admin).content)
    page_before = client.get(PAGE, headers=admin)
    assert page_before.status_code == 200
    assert before["discarded"] == {} and set(before["goals"]) == {"signup", "purchase"}

    # The flood: one exposed visitor (already a converter), through the public API, in a few requests.
    junk: list[dict[str, Any]] = [
        {"type": "conversion", "visitor_id": "flood-0", "goal": f"made-up-{n}-{'x' * 100}"} for n in range(1000)
    ]
    junk += [{"type": "conversion", "visitor_id": "flood-0", "goal": "signup"} for _ in range(300)]
    junk += [{"type": "survey", "visitor_id": "flood-0", "metric": "nps", "score": 0} for _ in range(200)]
    _events(client, delivery, junk)
    # Bots are served, but their decisions log no exposure: counted as discarded instead.
    for i in range(5):
        _personalize(client, delivery, f"crawler-{i}", GOOGLEBOT)

    after = _poll(client, admin, lambda b: b["discarded"].get("goal") == 1000
                  and b["discarded"].get("survey_repeat") == 200 and b["discarded"].get("rate", 0) >= 280)
    assert after["discarded"]["bot"] == 5
    assert after["visitors"] == before["visitors"]  # no crawler among the visitors
    assert set(after["goals"]) == {"signup", "purchase"}  # no section per invented goal
    assert _rates(after) == _rates(before)  # flood-0 was a converter already: rates do not move
    for v, cx in after["cx"].items():  # one NPS answer per visitor and day
        assert cx["nps"] == before["cx"][v]["nps"]
    assert _signup_events(after) - _signup_events(before) <= 20  # at most 10 a minute of flood-0's 300

    # Sizes: the results JSON and the page grow by the "not counted" lines only.
    assert len(client.get(RESULTS, headers=admin).content) < json_before + 500
    page_after = client.get(PAGE, headers=admin)
    assert page_after.status_code == 200 and "Not counted" in page_after.text
    assert len(page_after.content) < len(page_before.content) + 2_000


def test_rendering_the_experience_page_does_not_delay_personalize(
    client: TestClient, delivery: dict[str, str], admin: dict[str, str]
) -> None:
    for i in range(6):
        _personalize(client, delivery, f"busy-{i}")
    _poll(client, admin, lambda b: sum(b["visitors"]) == 6)
    _events(client, delivery, [{"type": "conversion", "visitor_id": "busy-1", "goal": f"g{n}"} for n in range(1000)])
    _poll(client, admin, lambda b: b["discarded"].get("goal") == 1000)

    stop = threading.Event()
    sizes: list[int] = []

    def render() -> None:
        while not stop.is_set():
            sizes.append(len(client.get(PAGE, headers=admin).content))

    renderer = threading.Thread(target=render)
    renderer.start()
    try:
        time.sleep(0.2)
        slowest = max(_personalize(client, delivery, f"busy-{i}") for i in range(20))
    finally:
        stop.set()
        renderer.join()
    assert sizes and max(sizes) < 200_000
    assert slowest < 0.5, f"a personalize waited {slowest:.2f} s behind the dashboard"

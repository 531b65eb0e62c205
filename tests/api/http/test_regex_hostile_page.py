"""A hostile page against a catastrophic-backtracking audience regex cannot stall the server (#17, item 3).

The fault reproduced: an audience rule ``{"page_path": {"$regex": "^/(a+)+$"}}`` (valid content) and a
visitor on ``/aaaa…a!`` made Python's backtracking ``re`` run for seconds on the event loop, and
``/health`` waited behind it. With RE2 the personalize answers in milliseconds and ``/health`` with it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from litestar.testing import TestClient

from api.app import create_app
from api.settings import Settings
from content import demo_space_path
from tests.content.spaces import set_field

HOSTILE_PAGE = "/" + "a" * 27 + "!"  # 3.3 s with the old engine; every extra "a" doubles it
GENEROUS_S = 1.0


@pytest.fixture
def hostile_client(settings: Settings, tmp_path: Path) -> Iterator[TestClient]:
    export = json.loads(demo_space_path().read_text(encoding="utf-8"))
    set_field(export, "northAmerica", "rules", {"page_path": {"$regex": "^/(a+)+$"}})
    space = tmp_path / "space.json"
    space.write_text(json.dumps(export), encoding="utf-8")
    with TestClient(create_app(msgspec.structs.replace(settings, content_source=str(space)))) as client:
        yield client


def test_health_answers_while_a_personalize_with_a_hostile_page_runs(
    hostile_client: TestClient, delivery: dict[str, str]
) -> None:
    body = {
        "visitor": {"id": "hostile-page", "country": "CA", "channel": "web", "page": HOSTILE_PAGE},
        "entries": ["heroHome"],
    }
    personalize: dict[str, object] = {}

    def run() -> None:
        start = time.perf_counter()
        response = hostile_client.post("/v1/personalize", json=body, headers=delivery)
        personalize.update(status=response.status_code, body=response.json(), s=time.perf_counter() - start)

    worker = threading.Thread(target=run)
    worker.start()
    # Ask /health over and over while the personalize runs: with the old engine one of these waits
    # for seconds behind the regex on the event loop.
    waits: list[float] = []
    while worker.is_alive() or not waits:
        start = time.perf_counter()
        health = hostile_client.get("/health")
        waits.append(time.perf_counter() - start)
        assert health.status_code == 200 and health.json() == {"status": "ok"}
    worker.join(timeout=60)

    assert max(waits) < GENEROUS_S, f"/health waited {max(waits):.2f} s behind the regex"
    assert personalize["status"] == 200, personalize
    assert personalize["s"] < GENEROUS_S * 2  # type: ignore[operator]
    (hero,) = personalize["body"]["entries"]  # type: ignore[index]
    assert hero["experience"] != "hero-north-america"  # the page does not match ^/(a+)+$

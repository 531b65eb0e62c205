"""While Redis is down, admin routes and dashboard pages answer 503 with ``Retry-After`` — never 500.

Issue #17, item 6. The app runs against its own real Valkey, which the test stops: every route that
needs Redis must then say so (503, ``Retry-After``, a body naming Redis as the cause), as the delivery
routes already degrade; when the same server is back on the same port, the same routes answer again.
The mapping is one entry of ``api/http/errors.py`` (redis-py's connection errors are
``StorageUnavailable``), not a try/except per route.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis.exceptions
from litestar.testing import TestClient

from api.app import create_app
from api.embedded.valkey import EmbeddedRedis
from api.http.errors import STORAGE_RETRY_AFTER_S, to_http
from api.settings import Settings
from tests.api.conftest import ADMIN

EXPERIENCE = "banner-shipping-test"
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN}"}

#: Every admin route and dashboard page that reads or writes Redis: (method, path, JSON body).
NEEDS_REDIS: list[tuple[str, str, Any]] = [
    ("GET", f"/v1/experiences/{EXPERIENCE}/results", None),
    ("GET", "/v1/cx", None),
    ("GET", "/v1/journeys/shopping", None),
    ("POST", "/v1/export", {"since": "2026-01-01", "until": "2026-01-02"}),
    ("DELETE", "/v1/visitors/someone", None),
    ("GET", "/v1/models", None),
    ("GET", "/v1/models/some-version", None),
    ("PUT", "/v1/models/active", {"version": "some-version"}),
    ("POST", "/v1/models/some-version/evaluate", None),
    ("GET", "/dashboard", None),
    ("GET", f"/dashboard/experiences/{EXPERIENCE}", None),
    ("GET", "/dashboard/ux", None),
    ("GET", "/dashboard/journeys/shopping", None),
    ("GET", "/dashboard/models", None),
]


class OwnValkey:
    """A real Valkey for one test that the test may stop and start again on the same port."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.server = EmbeddedRedis(data_dir, appendonly=False)
        self.url = self.server.start()
        self.port = self.server.port

    @property
    def running(self) -> bool:
        return self.server._server.is_running()

    def stop(self) -> None:
        self.server.stop()

    def restart(self) -> None:
        self.server = EmbeddedRedis(self.data_dir, port=self.port, appendonly=False)
        self.server.start()


@pytest.fixture
def own_valkey(tmp_path: Path) -> Iterator[OwnValkey]:
    valkey = OwnValkey(tmp_path / "own-valkey")
    try:
        yield valkey
    finally:
        valkey.stop()


@pytest.fixture
def app_on_own_valkey(settings: Settings, own_valkey: OwnValkey) -> Iterator[TestClient]:
    own = msgspec.structs.replace(settings, redis_url=own_valkey.url)
    with TestClient(create_app(own, print_keys=False)) as client:
        yield client
        if not own_valkey.running:  # back up, so the app shuts down as it would normally
            own_valkey.restart()


def _call(client: TestClient, method: str, path: str, body: Any, **kwargs: Any):  # noqa: ANN202
    return client.request(method, path, json=body, follow_redirects=False, **kwargs)


def test_admin_routes_answer_503_with_retry_after_while_redis_is_down(
    app_on_own_valkey: TestClient, own_valkey: OwnValkey
) -> None:
    client = app_on_own_valkey
    signed_in = client.post("/dashboard/sign-in", data={"key": ADMIN}, follow_redirects=False)
    assert signed_in.status_code == 303
    cookie_page = client.get("/dashboard/models", follow_redirects=False)
    assert cookie_page.status_code == 200  # the session works while Redis is up
    client.cookies.clear()
    up = _call(client, "GET", f"/v1/experiences/{EXPERIENCE}/results", None, headers=ADMIN_HEADERS)
    assert up.status_code == 200, up.text
    cookie = signed_in.cookies.get("vary_dashboard")
    assert cookie

    own_valkey.stop()

    answers = {path: _call(client, method, path, body, headers=ADMIN_HEADERS) for method, path, body in NEEDS_REDIS}
    statuses = {path: response.status_code for path, response in answers.items()}
    assert statuses == {path: 503 for path in statuses}, {p: r.text[:300] for p, r in answers.items()}
    for path, response in answers.items():
        assert response.headers["retry-after"] == str(STORAGE_RETRY_AFTER_S), path
        assert "Redis cannot be reached (ConnectionError)" in response.text, (path, response.text[:300])
        assert "127.0.0.1" not in response.text  # the cause, never the address
        if path.startswith("/v1/"):
            assert response.json() == {
                "status_code": 503,
                "detail": f"storage unavailable: Redis cannot be reached (ConnectionError); "
                f"retry in {STORAGE_RETRY_AFTER_S} s",
            }
        else:
            assert response.headers["content-type"].startswith("text/html")

    # A dashboard session cannot be checked without Redis: it fails closed, as a 503, not a 500.
    client.cookies.set("vary_dashboard", cookie, path="/dashboard")
    by_cookie = client.get("/dashboard/models", follow_redirects=False)
    assert by_cookie.status_code == 503 and by_cookie.headers["retry-after"] == str(STORAGE_RETRY_AFTER_S)
    client.cookies.clear()

    # Delivery keeps degrading as before (a decision without the profile), and /ready says why.
    ready = client.get("/ready")
    assert ready.status_code == 503 and ready.json()["redis"] == "unreachable"

    # Back on the same port: the same routes answer again.
    own_valkey.restart()
    again = _call(client, "GET", f"/v1/experiences/{EXPERIENCE}/results", None, headers=ADMIN_HEADERS)
    assert again.status_code == 200, again.text


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        (redis.exceptions.ConnectionError("Error 111 connecting to 10.0.0.7:6379"), "cannot be reached"),
        (redis.exceptions.TimeoutError("Timeout reading from 10.0.0.7:6379"), "did not answer in time"),
        (redis.exceptions.BusyLoadingError("LOADING"), "still loading"),
        (redis.exceptions.ClusterDownError("CLUSTERDOWN"), "cluster is down"),
        (redis.exceptions.TryAgainError("TRYAGAIN"), "moving the keys"),
        (redis.exceptions.ReadOnlyError("READONLY"), "read-only"),
        (redis.exceptions.OutOfMemoryError("OOM"), "out of memory"),
    ],
)
def test_redis_unavailability_maps_to_503_naming_the_cause_not_the_address(error: Exception, cause: str) -> None:
    http = to_http(error)
    assert http.status_code == 503 and http.headers == {"Retry-After": str(STORAGE_RETRY_AFTER_S)}
    assert cause in http.detail and type(error).__name__ in http.detail and "10.0.0.7" not in http.detail


def test_other_redis_errors_stay_bugs() -> None:
    with pytest.raises(TypeError, match="no HTTP mapping"):
        to_http(redis.exceptions.ResponseError("WRONGTYPE Operation against a key holding the wrong kind"))

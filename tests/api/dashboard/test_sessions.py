"""Signing out ends a dashboard session on the server, not only in the browser (issue #17, item 9).

Before: the session cookie was only a signed, expiring token, so a copy of it (a second tab, a
stolen cookie) kept working for up to 8 hours after "Sign out". Now a session lives only while Redis
holds it: sign-out deletes it, and "Sign out everywhere" ends every session begun before it.
"""

from __future__ import annotations

import redis
from litestar.testing import TestClient

from api.dashboard.session import COOKIE_NAME, session_id
from personalization.store.keys import DASHBOARD_GENERATION_KEY, dashboard_session_key
from tests.api.conftest import ADMIN


def _signed_in(client: TestClient) -> str:
    """Sign in through the form; the cookie token the browser now holds."""
    client.cookies.clear()
    response = client.post("/dashboard/sign-in", data={"key": ADMIN}, follow_redirects=False)
    assert response.status_code == 303
    token = client.cookies.get(COOKIE_NAME)
    assert token
    return token


def _page_with(client: TestClient, token: str):  # noqa: ANN202
    client.cookies.clear()
    client.cookies.set(COOKIE_NAME, token, path="/dashboard")
    return client.get("/dashboard/models", follow_redirects=False)


def test_an_old_cookie_after_sign_out_is_sent_to_sign_in(client: TestClient, sync_redis: redis.Redis) -> None:
    token = _signed_in(client)
    assert sync_redis.ttl(dashboard_session_key(session_id(token))) > 8 * 3600 - 60  # the session's TTL
    assert _page_with(client, token).status_code == 200

    out = client.post("/dashboard/sign-out", follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/dashboard/sign-in"
    assert not sync_redis.exists(dashboard_session_key(session_id(token)))

    again = _page_with(client, token)  # a copy of the cookie, kept from before the sign-out
    assert again.status_code == 303 and again.headers["location"].startswith("/dashboard/sign-in")
    assert client.post(
        "/dashboard/models/x/evaluate", data={"n_bootstrap": "10"}, follow_redirects=False
    ).status_code == 401  # a form post with the old cookie is refused too


def test_sign_out_ends_only_that_session(client: TestClient) -> None:
    first, second = _signed_in(client), _signed_in(client)
    client.cookies.clear()
    client.cookies.set(COOKIE_NAME, first, path="/dashboard")
    assert client.post("/dashboard/sign-out", follow_redirects=False).status_code == 303
    assert _page_with(client, first).status_code == 303
    assert _page_with(client, second).status_code == 200


def test_sign_out_everywhere_ends_every_earlier_session(client: TestClient, sync_redis: redis.Redis) -> None:
    laptop, phone = _signed_in(client), _signed_in(client)
    page = _page_with(client, phone)
    assert page.status_code == 200 and 'action="/dashboard/sign-out-everywhere"' in page.text

    out = client.post("/dashboard/sign-out-everywhere", follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/dashboard/sign-in"
    assert "Max-Age=0" in out.headers["set-cookie"]
    assert sync_redis.get(DASHBOARD_GENERATION_KEY) == "1"
    for token in (laptop, phone):
        response = _page_with(client, token)
        assert response.status_code == 303 and response.headers["location"].startswith("/dashboard/sign-in")

    fresh = _signed_in(client)  # signing in afterwards works as before
    assert _page_with(client, fresh).status_code == 200


def test_sign_out_everywhere_needs_a_live_session_or_an_admin_key(
    client: TestClient, admin: dict[str, str], delivery: dict[str, str], sync_redis: redis.Redis
) -> None:
    client.cookies.clear()
    assert client.post("/dashboard/sign-out-everywhere", follow_redirects=False).status_code == 401
    assert client.post("/dashboard/sign-out-everywhere", headers=delivery, follow_redirects=False).status_code == 403
    assert client.post(
        "/dashboard/sign-out-everywhere", headers={"Origin": "https://evil.example", **admin}, follow_redirects=False
    ).status_code == 403
    assert not sync_redis.exists(DASHBOARD_GENERATION_KEY)
    token = _signed_in(client)
    client.cookies.clear()
    assert client.post("/dashboard/sign-out-everywhere", headers=admin, follow_redirects=False).status_code == 303
    assert _page_with(client, token).status_code == 303  # an operator with the admin key ended it


def test_a_forged_session_record_is_not_enough(client: TestClient, sync_redis: redis.Redis) -> None:
    """Redis holds only session ids; the cookie must still carry a valid signature."""
    token = _signed_in(client)
    forged = token.rsplit(".", 1)[0] + ".AAAA"
    assert sync_redis.exists(dashboard_session_key(session_id(token)))
    assert _page_with(client, forged).status_code == 303

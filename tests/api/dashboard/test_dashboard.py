"""The dashboard through the real app: sign-in and sessions, every page, "preview as", no external URLs.

Traffic goes in through the public API (``/v1/personalize``, ``/v1/events``) and the in-process
aggregator counts it, as in production; the pages then show what the JSON admin API shows.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from html import unescape
from pathlib import Path

import pytest
from litestar.testing import TestClient

from api.app import create_app
from api.dashboard.session import COOKIE_NAME, issue_token, token_is_valid
from api.settings import Settings
from tests.api.conftest import ADMIN, DELIVERY

EXPERIENCE = "banner-shipping-test"
ENTRIES = ["heroHome", "bannerShipping", "bannerNewsletter"]
PAGES = {
    "/dashboard": "Experiences",
    f"/dashboard/experiences/{EXPERIENCE}": "Shipping banner: returns vs free vs fast",
    "/dashboard/ux": "UX and CX",
    "/dashboard/journeys": "Journeys",
    "/dashboard/journeys/shopping": "Journey map: Shopping journey",
    f"/dashboard/journeys/shopping?experience={EXPERIENCE}": "Journey map: Shopping journey",
    "/dashboard/models": "Models",
}
#: A src/href/action pointing at any host: the dashboard must load nothing from the network.
EXTERNAL = re.compile(r"""(?:src|href|action)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)


def _h1(html: str) -> str:
    found = re.search(r"<h1[^>]*>(.*?)</h1>", html, re.DOTALL)
    assert found, html[:500]
    return unescape(re.sub(r"<[^>]+>", "", found.group(1))).strip()


def _headings(html: str) -> list[int]:
    return [int(level) for level in re.findall(r"<h([1-6])[\s>]", html)]


def _traffic(client: TestClient, delivery: dict[str, str], admin: dict[str, str], visitors: int = 40) -> None:
    """Decisions and a few events per visitor, then wait until the aggregator has counted them."""
    for i in range(visitors):
        visitor = {"id": f"dash-{i}", "channel": "web" if i % 3 else "ios", "utm": {"campaign": "sale"} if i % 2 else {}}
        response = client.post("/v1/personalize", json={"visitor": visitor, "entries": ENTRIES}, headers=delivery)
        assert response.status_code == 200, response.text
        events = [
            {"type": "page_view", "visitor_id": f"dash-{i}", "channel": visitor["channel"], "touchpoint": "home"},
            {"type": "task", "visitor_id": f"dash-{i}", "name": "checkout", "success": i % 4 != 0,
             "duration_ms": 2000 + 100 * i, "touchpoint": "checkout", "channel": visitor["channel"]},
            {"type": "survey", "visitor_id": f"dash-{i}", "metric": "nps", "score": i % 11, "touchpoint": "checkout",
             "channel": visitor["channel"]},
        ]
        if i % 3 == 0:
            events.append({"type": "purchase", "visitor_id": f"dash-{i}", "order_id": f"o-{i}", "value": 30.0,
                           "touchpoint": "checkout", "channel": visitor["channel"]})
        assert client.post("/v1/events", json={"events": events}, headers=delivery).status_code == 202
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        body = client.get(f"/v1/experiences/{EXPERIENCE}/results", headers=admin).json()
        if sum(body["exposures"]) > 0 and body["ux"]:
            return
        time.sleep(0.2)
    raise AssertionError(f"the aggregator did not count the traffic: {body}")


def _sign_in(client: TestClient, key: str = ADMIN, **extra: str):
    return client.post("/dashboard/sign-in", data={"key": key, **extra}, follow_redirects=False)


# ------------------------------------------------------------------------------------------ access


def test_without_a_key_browsers_go_to_sign_in_and_others_get_401(client: TestClient) -> None:
    response = client.get(f"/dashboard/experiences/{EXPERIENCE}?goal=x", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == f"/dashboard/sign-in?next=/dashboard/experiences/{EXPERIENCE}%3Fgoal%3Dx"
    form = client.get(response.headers["location"])
    assert form.status_code == 200 and _h1(form.text) == "Sign in"
    assert f'name="next" value="/dashboard/experiences/{EXPERIENCE}?goal=x"' in unescape(form.text)
    refused = client.post("/dashboard/models/v1/evaluate", data={"n_bootstrap": "10"}, follow_redirects=False)
    assert refused.status_code == 401 and "sign in" in refused.json()["detail"]
    bad = client.get("/dashboard", headers={"Authorization": "Bearer nope"}, follow_redirects=False)
    assert bad.status_code == 401 and "unknown API key" in bad.text


def test_delivery_key_is_refused_as_header_and_in_the_form(client: TestClient, delivery: dict[str, str]) -> None:
    response = client.get("/dashboard", headers=delivery)
    assert response.status_code == 403 and "admin key" in response.text
    form = _sign_in(client, DELIVERY)
    assert form.status_code == 403 and "delivery key" in form.text
    assert "set-cookie" not in form.headers


@pytest.mark.parametrize(
    ("key", "status", "message"),
    [("not-a-key", 401, "not a Vary key"), ("", 400, "Enter an admin key"), ("   ", 400, "Enter an admin key")],
)
def test_bad_keys_show_the_form_again_with_a_message(client: TestClient, key: str, status: int, message: str) -> None:
    response = _sign_in(client, key)
    assert response.status_code == status
    assert message in response.text and 'role="alert"' in response.text
    assert "set-cookie" not in response.headers


def test_sign_in_sets_a_signed_http_only_cookie_and_sign_out_ends_it(client: TestClient) -> None:
    response = _sign_in(client, next="/dashboard/models")
    assert response.status_code == 303 and response.headers["location"] == "/dashboard/models"
    cookie = response.headers["set-cookie"]
    attributes = {part.strip().split("=")[0].lower(): part.strip() for part in cookie.split(";")}
    assert {"httponly", "path", "samesite", "max-age"} <= set(attributes)
    assert attributes["path"] == "Path=/dashboard"
    assert attributes["samesite"].lower() == "samesite=strict"
    assert attributes["max-age"] == "Max-Age=28800"
    assert ADMIN not in cookie  # a signed token, never the key
    token = client.cookies.get(COOKIE_NAME)
    assert token and token.startswith("v1.")

    page = client.get("/dashboard/models")
    assert page.status_code == 200 and _h1(page.text) == "Models"
    assert 'action="/dashboard/sign-out"' in page.text

    # A tampered token is no session.
    client.cookies.set(COOKIE_NAME, token[:-2] + ("AA" if not token.endswith("AA") else "BB"), path="/dashboard")
    assert client.get("/dashboard", follow_redirects=False).status_code == 303
    client.cookies.set(COOKIE_NAME, token, path="/dashboard")
    assert client.get("/dashboard", follow_redirects=False).status_code == 200

    client.cookies.clear()  # start over with only the cookie the server sets
    assert _sign_in(client).status_code == 303
    out = client.post("/dashboard/sign-out", follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/dashboard/sign-in"
    assert f"{COOKIE_NAME}=" in out.headers["set-cookie"] and "Max-Age=0" in out.headers["set-cookie"]
    assert client.get("/dashboard", follow_redirects=False).status_code == 303


def test_sign_in_refuses_foreign_origins_and_foreign_next(client: TestClient) -> None:
    foreign = client.post(
        "/dashboard/sign-in", data={"key": ADMIN}, headers={"Origin": "https://evil.example"}, follow_redirects=False
    )
    assert foreign.status_code == 403 and "another origin" in foreign.text
    for target in ("https://evil.example/", "//evil.example/dashboard", "/v1/experiences"):
        response = _sign_in(client, next=target)
        assert response.status_code == 303 and response.headers["location"] == "/dashboard", target


def test_rotating_admin_keys_ends_sessions_unless_a_secret_is_configured(settings: Settings) -> None:
    with TestClient(create_app(settings)) as first:
        assert _sign_in(first).status_code == 303
        token = first.cookies.get(COOKIE_NAME)
    rotated = Settings(**{**{f: getattr(settings, f) for f in settings.__struct_fields__}, "admin_keys": ("new-admin",)})
    with TestClient(create_app(rotated)) as second:
        second.cookies.set(COOKIE_NAME, token, path="/dashboard")
        assert second.get("/dashboard", follow_redirects=False).status_code == 303
    fixed = {f: getattr(settings, f) for f in settings.__struct_fields__} | {"session_secret": "s" * 32}
    with TestClient(create_app(Settings(**fixed))) as third:
        assert _sign_in(third).status_code == 303
        token = third.cookies.get(COOKIE_NAME)
    with TestClient(create_app(Settings(**fixed | {"admin_keys": ("new-admin",)}))) as fourth:
        fourth.cookies.set(COOKIE_NAME, token, path="/dashboard")
        assert fourth.get("/dashboard", follow_redirects=False).status_code == 200


def test_session_tokens_expire_and_need_the_same_secret() -> None:
    token = issue_token(b"secret", now=1_000.0, ttl_s=60)
    assert token_is_valid(b"secret", token, now=1_059.0)
    assert not token_is_valid(b"secret", token, now=1_060.0)
    assert not token_is_valid(b"other", token, now=1_000.0)
    assert issue_token(b"secret", now=1_000.0) != issue_token(b"secret", now=1_000.0)  # a nonce each
    for broken in ("", "v1", "v1.x.y.z", "v2" + token[2:], token.replace(".", "", 1), "a" * 1000):
        assert not token_is_valid(b"secret", broken, now=1_000.0), broken


# ------------------------------------------------------------------------------------------ pages


@pytest.fixture
def with_traffic(client: TestClient, delivery: dict[str, str], admin: dict[str, str]) -> Iterator[TestClient]:
    _traffic(client, delivery, admin)
    yield client


def test_every_page_renders_with_its_headings_and_no_external_urls(
    with_traffic: TestClient, admin: dict[str, str]
) -> None:
    client = with_traffic
    for path, heading in PAGES.items():
        response = client.get(path, headers=admin)
        assert response.status_code == 200, (path, response.text[:1000])
        assert response.headers["content-type"].startswith("text/html")
        html = response.text
        assert _h1(html) == heading, path
        assert '<html lang="en">' in html and 'href="#main"' in html
        levels = _headings(html)
        assert levels[0] == 1 and levels.count(1) == 1, path
        assert all(b - a <= 1 for a, b in zip(levels, levels[1:])), (path, levels)  # no skipped levels
        assert not EXTERNAL.search(html), (path, EXTERNAL.search(html))
        # Every form control has a label.
        for control_id in re.findall(r'<(?:input|select|textarea)(?![^>]*type="hidden")[^>]*\bid="([^"]+)"', html):
            assert f'for="{control_id}"' in html, (path, control_id)
        assert not re.search(r'<(?:input|select|textarea)(?![^>]*type="hidden")(?![^>]*\bid=)[^>]*>', html), path
    schema = client.get("/schema/openapi.json").json()
    assert not [p for p in schema["paths"] if p.startswith("/dashboard")]  # HTML pages are not API
    css = client.get("/dashboard/static/dashboard.css")
    assert css.status_code == 200 and "focus-visible" in css.text and "http" not in css.text


def test_experience_page_shows_results_charts_and_breakdowns(with_traffic: TestClient, admin: dict[str, str]) -> None:
    client = with_traffic
    results = client.get(f"/v1/experiences/{EXPERIENCE}/results", headers=admin).json()
    html = client.get(f"/dashboard/experiences/{EXPERIENCE}", headers=admin).text
    for goal in results["goals"]:
        assert f"Goal: {goal}" in html
    # The rate chart carries each variant's rate as the results compute it.
    bars = re.findall(r'<rect class="bar"[^>]*data-goal="purchase"[^>]*data-variant="(\d)"[^>]*data-rate="([^"]*)"', html)
    expected = {str(v["variant"]): v["rate"] for v in results["goals"]["purchase"]["variants"] if v["rate"] is not None}
    assert {k: float(r) for k, r in bars} == pytest.approx(expected)
    assert 'class="interval"' in html and 'class="chart line-chart"' in html
    assert "By channel" in html and "By segment" in html and ">ios<" in html
    assert 'role="img"' in html and "<title>" in html


def test_experiences_list_shows_traffic_and_badges(with_traffic: TestClient, admin: dict[str, str]) -> None:
    html = with_traffic.get("/dashboard", headers=admin).text
    results = with_traffic.get(f"/v1/experiences/{EXPERIENCE}/results", headers=admin).json()
    row = re.search(rf'<tr data-experience="{EXPERIENCE}">(.*?)</tr>', html, re.DOTALL)
    assert row, html
    assert f">{sum(results['exposures']):,}<" in row.group(1)
    assert "ab_test" in row.group(1) and "running" in row.group(1)
    expected_badge = "Mismatch" in row.group(1)
    assert expected_badge == results["srm_flag"]


def test_ux_page_has_touchpoint_tiles_and_cx_charts(with_traffic: TestClient, admin: dict[str, str]) -> None:
    html = with_traffic.get(f"/dashboard/ux?experience={EXPERIENCE}", headers=admin).text
    assert '<section class="tile"><h3>checkout</h3>' in html
    for metric in ("Task success", "Median task time", "Abandonment", "Click-through", "SUS"):
        assert f"<dt>{metric}</dt>" in html
    assert 'data-metric="nps"' in html and 'data-channel="ios"' in html
    assert "Retention by weekly cohort" in html and "Top channel transitions" in html


def test_journey_map_draws_the_flow_per_variant(with_traffic: TestClient, admin: dict[str, str]) -> None:
    html = with_traffic.get(f"/dashboard/journeys/shopping?experience={EXPERIENCE}", headers=admin).text
    journey = with_traffic.get(f"/v1/journeys/shopping?experience={EXPERIENCE}", headers=admin).json()
    lanes = set(re.findall(r'<g class="lane" data-lane="([^"]+)"', html))
    assert len(lanes) == len(journey["variants"]) >= 2
    for group in journey["variants"].values():
        first = group["stages"][0]
        assert re.search(rf'data-stage="{re.escape(first["name"])}" data-reached="{first["reached"]}"', html)


def test_models_page_shows_cards_and_evaluate_explains_refusals(client: TestClient, admin: dict[str, str]) -> None:
    listed = client.get("/v1/models", headers=admin).json()
    html = client.get("/dashboard/models", headers=admin).text
    active = listed["active"]
    assert active and f"{active} <span class=\"badge active\">active</span>" in html
    assert html.count('class="chart calibration-plot"') >= 3 and "ROC AUC" in html
    refused = client.post(f"/dashboard/models/{active}/evaluate", data={"n_bootstrap": "20"}, headers=admin)
    assert refused.status_code == 400 and "segment model" in refused.text
    bad = client.post(f"/dashboard/models/{active}/evaluate", data={"n_bootstrap": "lots"}, headers=admin)
    assert bad.status_code == 400 and "bootstrap resamples" in bad.text
    missing = client.post("/dashboard/models/nope/evaluate", data={"n_bootstrap": "20"}, headers=admin)
    assert missing.status_code == 404 and "no model with version" in missing.text


def test_unknown_experience_and_journey_are_404_pages(client: TestClient, admin: dict[str, str]) -> None:
    for path in ("/dashboard/experiences/nope", "/dashboard/journeys/nope", "/dashboard/ux?experience=nope",
                 "/dashboard/journeys/shopping?experience=nope"):
        response = client.get(path, headers=admin)
        assert response.status_code == 404 and "nope" in unescape(response.text), path
        assert response.headers["content-type"].startswith("text/html")


# ------------------------------------------------------------------------------------------ preview as


def test_preview_gives_the_variant_personalize_gives(client: TestClient, delivery: dict[str, str], admin: dict[str, str]) -> None:
    seen = set()
    for i in range(24):
        visitor = {"id": f"preview-{i}", "country": "CA" if i % 2 else "DE", "channel": "web" if i % 3 else "ios"}
        if i % 4 == 0:
            visitor["utm"] = {"campaign": "sale"}
        served = client.post("/v1/personalize", json={"visitor": visitor, "entries": ENTRIES}, headers=delivery).json()
        params = {"visitor_id": visitor["id"], "country": visitor["country"], "channel": visitor["channel"]}
        params |= {f"segment.{name}": repr(score) for name, score in served["segments"].items()}
        page = client.get(f"/dashboard/experiences/{EXPERIENCE}/preview", params=params, headers=admin)
        assert page.status_code == 200, page.text
        rows = {
            (entry, experience): int(variant)
            for entry, experience, variant in re.findall(
                r'<tr class="preview-result" data-entry="([^"]*)" data-experience="([^"]*)" data-variant="(\d+)"', page.text
            )
        }
        for entry in served["entries"]:
            if (entry["entry_id"], entry["experience"] or "") in rows:
                assert rows[(entry["entry_id"], entry["experience"] or "")] == entry["variant"], (visitor, entry)
                seen.add(entry["variant"])
                assert unescape(entry["reason"]) in unescape(page.text)
    assert len(seen) >= 2  # the comparison covered more than one variant


def test_preview_segment_scores_override_the_model(client: TestClient, admin: dict[str, str]) -> None:
    base = {"visitor_id": "who", "country": "DE", "channel": "web"}
    high = client.get("/dashboard/experiences/hero-sale/preview", params=base | {"segment.price_sensitive": "0.95"},
                      headers=admin)
    low = client.get("/dashboard/experiences/hero-sale/preview", params=base | {"segment.price_sensitive": "0.01"},
                     headers=admin)
    assert high.status_code == low.status_code == 200
    assert "price_sensitive 0.95" in high.text and "price_sensitive 0.01" in low.text
    assert 'data-experience="hero-sale"' in high.text and 'data-experience="hero-sale"' not in low.text


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"segment.price_sensitive": "1.5"}, "segment price_sensitive: expected a number from 0 to 1"),
        ({"segment.loyal": "lots"}, "segment loyal"),
        ({"country": "XYZ"}, "country"),
        ({"traits": "no equals sign"}, "traits line 1"),
        ({"channel": "fax"}, "channel"),
    ],
)
def test_preview_bad_input_is_a_400_that_names_the_field(
    client: TestClient, admin: dict[str, str], params: dict[str, str], message: str
) -> None:
    response = client.get(f"/dashboard/experiences/{EXPERIENCE}/preview", params={"visitor_id": "x"} | params,
                          headers=admin)
    assert response.status_code == 400 and message in unescape(response.text)


def test_preview_records_nothing(client: TestClient, admin: dict[str, str], sync_redis) -> None:
    def stored() -> dict[str, int]:
        # Entries only: the aggregator may create an empty stream for its consumer group meanwhile.
        streams = [k for k in sync_redis.keys("vary:*") if sync_redis.type(k) == "stream"]
        return {k: n for k in streams if (n := sync_redis.xlen(k))}

    before = stored()
    response = client.get(f"/dashboard/experiences/{EXPERIENCE}/preview", params={"visitor_id": "ghost"}, headers=admin)
    assert response.status_code == 200 and 'class="preview-result"' in response.text
    time.sleep(0.5)  # longer than the exposure writer takes to flush a batch
    assert stored() == before
    assert not [k for k in sync_redis.keys("*") if "ghost" in k]
    from personalization.store.keys import visitor_keys_pattern  # keys name a digest of the id, not the id

    assert not sync_redis.keys(visitor_keys_pattern("ghost"))


def test_templates_and_stylesheet_are_package_data() -> None:
    import tomllib

    root = Path(__file__).resolve().parents[3]
    data = tomllib.loads((root / "pyproject.toml").read_text())
    patterns = data["tool"]["setuptools"]["package-data"]["api.dashboard"]
    package = root / "api" / "dashboard"
    files = {p.relative_to(package).as_posix() for pattern in patterns for p in package.glob(pattern)}
    assert {"templates/base.html", "templates/experience.html", "static/dashboard.css"} <= files
    assert any(d.startswith("jinja2") for d in data["project"]["dependencies"])

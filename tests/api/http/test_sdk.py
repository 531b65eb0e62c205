"""The front-end kit over HTTP: the SDK files, the key in the query string, text/plain beacons, the demo."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis
from litestar.testing import TestClient

from api.app import create_app
from api.settings import Settings
from personalization.privacy import AccessLogRedactor
from tests.api.conftest import ADMIN, DELIVERY
from tests.e2e import browser as chromium
from tests.e2e.browser import artifacts_dir
from tests.e2e.servers import VaryProcess, running

# The real Chromium fixtures (tests/e2e/browser.py), for the survey prompt's rendering below.
browser = chromium.browser
page = chromium.page


@pytest.mark.parametrize("path", ["/v1/sdk.js", "/v1/sdk.mjs"])
def test_sdk_is_served_as_javascript_with_caching_headers(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["cache-control"] == "public, max-age=300"
    assert response.headers["x-content-type-options"] == "nosniff"
    etag = response.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"') and len(etag) > 10
    assert "createVary" in response.text and "sendBeacon" in response.text
    again = client.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    assert client.get(path, headers={"If-None-Match": '"something-else"'}).status_code == 200


def test_the_module_form_exports_create_vary_and_the_classic_form_does_not(client: TestClient) -> None:
    classic = client.get("/v1/sdk.js").text
    module = client.get("/v1/sdk.mjs").text
    assert "export " not in classic.replace("// ES module", "")  # a classic script cannot contain export
    assert "export function createVary" in module and "import.meta.url" in module
    assert client.get("/v1/sdk.js").headers["etag"] != client.get("/v1/sdk.mjs").headers["etag"]


def test_sdk_needs_no_key_and_is_allowed_cross_origin(settings: Settings) -> None:
    with TestClient(create_app(msgspec.structs.replace(settings, cors_origins=("https://shop.example",)))) as client:
        response = client.get("/v1/sdk.mjs", headers={"Origin": "https://shop.example"})
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "https://shop.example"
        preflight = client.options(
            "/v1/exposures",
            headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 204


def _event(visitor: str, **fields: object) -> dict[str, object]:
    return {"type": "page_view", "visitor_id": visitor, "page": "https://shop.example/", **fields}


def test_delivery_key_in_the_query_string_is_accepted_on_delivery_routes(
    client: TestClient, sync_redis
) -> None:
    body = {"visitor": {"id": "q-1"}, "entries": ["heroHome"]}
    assert client.post(f"/v1/personalize?key={DELIVERY}", json=body).status_code == 200
    assert client.get(f"/v1/entries/heroHome?visitor_id=q-1&key={DELIVERY}").status_code == 200
    response = client.post(f"/v1/events?key={DELIVERY}", json={"events": [_event("q-1")]})
    assert response.status_code == 202 and response.json()["accepted"] == 1
    assert client.post("/v1/personalize?key=wrong", json=body).status_code == 401
    assert client.post("/v1/personalize", json=body).status_code == 401  # still needs a key somewhere


def test_the_header_wins_over_the_query_key(client: TestClient) -> None:
    body = {"visitor": {"id": "q-2"}, "entries": ["heroHome"]}
    response = client.post(
        f"/v1/personalize?key={DELIVERY}", json=body, headers={"Authorization": "Bearer not-a-key"}
    )
    assert response.status_code == 401 and response.json()["detail"] == "unknown API key"


def test_query_keys_are_refused_on_admin_routes_and_admin_keys_in_urls(client: TestClient) -> None:
    for key in (ADMIN, DELIVERY):
        response = client.get(f"/v1/experiences?key={key}")
        assert response.status_code == 401, key
        assert "Authorization" in response.json()["detail"]
    # An admin key is never taken from a URL, even on a delivery route where the header would do.
    body = {"visitor": {"id": "q-3"}, "entries": ["heroHome"]}
    response = client.post(f"/v1/personalize?key={ADMIN}", json=body)
    assert response.status_code == 401 and "delivery keys only" in response.json()["detail"]
    assert client.get("/v1/experiences", headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 200


def test_text_plain_json_is_accepted_on_events(client: TestClient, sync_redis) -> None:
    """What ``navigator.sendBeacon`` sends: a text/plain body (no CORS preflight), the key in the URL."""
    body = b'{"events": [{"type": "conversion", "visitor_id": "beacon-1", "goal": "signup", "event_id": "b-1"}]}'
    response = client.post(
        f"/v1/events?key={DELIVERY}", content=body, headers={"Content-Type": "text/plain;charset=UTF-8"}
    )
    assert response.status_code == 202, response.text
    answer = response.json()
    assert (answer["accepted"], answer["duplicates"], answer["rejected"]) == (1, 0, [])
    stored = [fields["data"] for _, fields in sync_redis.xrange("vary:events")]
    assert any('"beacon-1"' in data and '"signup"' in data for data in stored)
    bad = client.post(f"/v1/events?key={DELIVERY}", content=b"{not json", headers={"Content-Type": "text/plain"})
    assert bad.status_code == 400


def test_the_key_never_reaches_the_access_log() -> None:
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:1", "POST", f"/v1/events?key={DELIVERY}&x=1", "1.1", 202), None,
    )
    AccessLogRedactor().filter(record)
    line = record.getMessage()
    assert DELIVERY not in line and "key=***&x=1" in line


def test_personalize_on_view_returns_tokens_and_auto_does_not(client: TestClient) -> None:
    headers = {"Authorization": f"Bearer {DELIVERY}"}
    body = {"visitor": {"id": "t-1"}, "entries": ["heroHome", "bannerShipping"]}
    auto = client.post("/v1/personalize", json=body, headers=headers).json()
    assert all(entry["exposure_token"] is None for entry in auto["entries"])
    on_view = client.post("/v1/personalize", json={**body, "exposures": "on_view"}, headers=headers).json()
    assert all(isinstance(entry["exposure_token"], str) for entry in on_view["entries"])
    bad = client.post("/v1/personalize", json={**body, "exposures": "later"}, headers=headers)
    assert bad.status_code == 400 and "exposures" in bad.text


def test_demo_page_carries_the_first_delivery_key_and_a_strict_csp(client: TestClient) -> None:
    response = client.get("/demo")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    csp = response.headers["content-security-policy"]
    nonce = csp.split("'nonce-")[1].split("'")[0]
    html = response.text
    assert f'"key": "{DELIVERY}"' in html and ADMIN not in html
    assert f'<script type="module" nonce="{nonce}">' in html and "__VARY_" not in html
    assert 'import { createVary } from "/v1/sdk.mjs"' in html
    for entry in ("heroHome", "bannerShipping", "bannerNewsletter"):
        assert f'data-vary-entry="{entry}"' in html
    assert client.get("/demo").headers["content-security-policy"] != csp  # a new nonce per page


def test_demo_page_is_off_when_configured(settings: Settings) -> None:
    with TestClient(create_app(msgspec.structs.replace(settings, demo_page=False))) as client:
        assert client.get("/demo").status_code == 404
        assert client.get("/v1/sdk.js").status_code == 200  # the kit itself stays


def test_demo_page_never_shows_a_hashed_key(settings: Settings) -> None:
    hashed = "sha256:" + hashlib.sha256(DELIVERY.encode()).hexdigest()
    with TestClient(create_app(msgspec.structs.replace(settings, delivery_keys=(hashed,)))) as client:
        html = client.get("/demo").text
        assert '{"key": null}' in html and hashed not in html


def test_openapi_names_the_key_schemes_and_typed_errors(client: TestClient) -> None:
    schema = client.get("/schema/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["deliveryKey"] == {**schemes["deliveryKey"], "type": "http", "scheme": "bearer"}
    assert schemes["deliveryKeyQuery"]["in"] == "query" and schemes["deliveryKeyQuery"]["name"] == "key"
    personalize = schema["paths"]["/v1/personalize"]["post"]
    assert personalize["operationId"] == "personalize"
    assert {"deliveryKey": []} in personalize["security"]
    assert personalize["responses"]["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }
    assert schema["paths"]["/v1/experiences"]["get"]["security"] == [{"adminKey": []}]
    exposures = schema["paths"]["/v1/exposures"]["post"]
    assert exposures["operationId"] == "recordExposures"
    assert exposures["responses"]["202"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ExposuresAccepted"
    }
    assert "/v1/sdk.js" not in schema["paths"] and "/demo" not in schema["paths"]
    ids = [op["operationId"] for ops in schema["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            assert any(code.startswith("2") for code in op["responses"]), (method, path)


def test_demo_page_has_a_checkout_that_asks_for_the_due_survey(client: TestClient) -> None:
    html = client.get("/demo").text
    assert 'id="place-order"' in html and "vary.survey.after(\"task\"" in html
    assert 'name: "checkout", success: true' in html  # what the demo space's checkout-csat survey waits for


# ------------------------------------------------------------------------------------------ survey prompt
# The prompt's rendering in a real Chromium, on the demo page (its strict CSP included) of a real server,
# drawn with the kit's own API (vary.survey.show); what it sends is read back from the server's Redis.

SURVEY_DELIVERY = "sdk-survey-delivery"
PROMPT = "document.querySelector('div.vary-survey')"
SUS_ITEMS = [f"Statement {i + 1} about the shop" for i in range(10)]


def _prompt(key: str, metric: str, **fields: object) -> dict[str, object]:
    scale = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7), "sus": (1, 5)}.get(metric, (None, None))
    return {"key": key, "entry_id": key, "metric": metric, "question": f"Question of {key}?", "locale": "en-US",
            "scale_min": scale[0], "scale_max": scale[1], "low_label": "Low", "high_label": "High", "items": [],
            "problem_tags": [], "experience_key": None, "variant": None, "touchpoint": "checkout",
            "trigger": "page:/demo", **fields}


@pytest.fixture(scope="module")
def survey_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VaryProcess]:
    env = {"VARY_DELIVERY_KEYS": SURVEY_DELIVERY, "VARY_ADMIN_KEYS": "sdk-survey-admin"}
    with running(env, tmp_path_factory.mktemp("sdk-survey")) as process:
        yield process


@pytest.fixture(scope="module")
def survey_store(survey_server: VaryProcess) -> Iterator[redis.Redis]:
    assert survey_server.redis_url, survey_server.output()
    store = redis.Redis.from_url(survey_server.redis_url, decode_responses=True)
    try:
        yield store
    finally:
        store.close()


def _sent(store: redis.Redis, survey: str) -> list[dict[str, Any]]:
    keys = [k for k in store.scan_iter(match="vary:events*") if store.type(k) == "stream"]
    events = [json.loads(fields["data"]) for key in keys for _, fields in store.xrange(key)]
    return [e for e in events if e.get("survey") == survey]


def _until(check: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _demo(page: Any, server: VaryProcess, width: int = 1280) -> None:
    page.set_viewport_size({"width": width, "height": 740})
    page.goto(f"{server.base}/demo")
    page.wait_for_selector("body[data-vary-ready]")
    assert page.evaluate("document.body.dataset.varyReady") == "true"


def _show(page: Any, prompt: dict[str, object]) -> None:
    """Draw ``prompt`` with the kit; its outcome lands in ``window.__outcome`` when settled."""
    page.evaluate("p => { window.__outcome = null; window.vary.survey.show(p).then(o => { window.__outcome = o; }); }", prompt)
    page.wait_for_selector("div.vary-survey")


@pytest.mark.e2e
@pytest.mark.slow
def test_sus_prompt_needs_every_statement_scrolls_inside_a_phone_and_sends_ten_answers(
    survey_server: VaryProcess, survey_store: redis.Redis, page: Any
) -> None:
    _demo(page, survey_server, width=360)
    _show(page, _prompt("sus-test", "sus", items=SUS_ITEMS, low_label="Strongly disagree", high_label="Strongly agree"))
    dialog = page.get_by_role("dialog", name="Question of sus-test?")
    for i, statement in enumerate(SUS_ITEMS):
        group = dialog.get_by_role("group", name=f"{i + 1}. {statement}")
        assert group.get_by_role("radio").count() == 5
    assert dialog.get_by_role("radio", name="1, Strongly disagree").count() == 10
    # Taller than a phone: it scrolls inside itself and stays on the screen.
    box = page.evaluate(f"(() => {{ const b = {PROMPT}.shadowRoot.querySelector('.box'); const r = b.getBoundingClientRect();"
                        " return {top: r.top, bottom: r.bottom, left: r.left, right: r.right,"
                        " scrolls: b.scrollHeight > b.clientHeight}; })()")
    assert box["top"] >= 0 and box["bottom"] <= 740 and box["left"] >= 0 and box["right"] <= 360 and box["scrolls"]
    assert page.evaluate("document.documentElement.scrollWidth") <= 360

    dialog.get_by_role("button", name="Send").click()
    assert dialog.get_by_role("alert").inner_text() == "Answer every statement first."
    answers = [(i % 5) + 1 for i in range(10)]
    for i, value in enumerate(answers):
        dialog.get_by_role("group", name=f"{i + 1}. {SUS_ITEMS[i]}").locator(f"input[value='{value}']").check()
    page.screenshot(path=str(artifacts_dir() / "survey-sus-360.png"))
    dialog.get_by_role("button", name="Send").click()
    outcome = _until(lambda: page.evaluate("window.__outcome"), "the prompt's outcome")
    assert outcome == {"outcome": "answered", "survey": "sus-test", "answers": answers}
    sent = _until(lambda: [e for e in _sent(survey_store, "sus-test") if e["type"] == "survey"], "the SUS answer")
    assert [(e["metric"], e["answers"], e["touchpoint"]) for e in sent] == [("sus", answers, "checkout")]
    assert [e["type"] for e in _sent(survey_store, "sus-test")] == ["survey_shown", "survey"]
    assert page.console_errors.messages == []


@pytest.mark.e2e
@pytest.mark.slow
def test_feedback_prompt_is_a_labelled_text_field_with_problem_tags_sent_by_keyboard(
    survey_server: VaryProcess, survey_store: redis.Redis, page: Any
) -> None:
    _demo(page, survey_server)
    _show(page, _prompt("why-not", "feedback", problem_tags=["price", "delivery time"], touchpoint=None))
    field = page.get_by_role("textbox", name="Question of why-not?")
    topic = page.get_by_label("What was it about? (optional)")
    assert topic.locator("option").all_inner_texts() == ["Choose a topic", "price", "delivery time"]
    page.keyboard.press("Tab")  # from the dialog to the text field
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")  # the Send button
    page.keyboard.press("Enter")
    assert page.get_by_role("alert").inner_text() == "Write a few words first."
    field.fill("Delivery <b>takes</b> too long")
    topic.select_option("delivery time")
    page.get_by_role("button", name="Send").focus()
    page.keyboard.press("Enter")
    sent = _until(lambda: [e for e in _sent(survey_store, "why-not") if e["type"] == "feedback"], "the feedback")
    assert len(sent) == 1 and sent[0]["text"] == "Delivery <b>takes</b> too long"
    assert sent[0]["problem"] == "delivery time" and "metric" not in sent[0] and sent[0]["touchpoint"] is None
    assert page.console_errors.messages == []


@pytest.mark.e2e
@pytest.mark.slow
def test_nps_scale_fits_a_phone_restyles_with_css_variables_and_the_close_button_dismisses(
    survey_server: VaryProcess, survey_store: redis.Redis, page: Any
) -> None:
    _demo(page, survey_server, width=360)
    page.evaluate("document.documentElement.style.setProperty('--vary-survey-bg', 'rgb(1, 2, 3)')")
    _show(page, _prompt("nps-test", "nps", low_label="Not at all likely", high_label="Extremely likely"))
    # The page sets one on :root, another on the prompt's own element (the demo themes it there too).
    page.evaluate(f"{PROMPT}.style.setProperty('--vary-survey-fg', 'rgb(250, 250, 250)')")
    radios = page.get_by_role("radio")
    assert radios.count() == 11
    assert radios.nth(0).get_attribute("aria-label") == "0, Not at all likely"
    widths = page.evaluate(f"[...{PROMPT}.shadowRoot.querySelectorAll('.opt span')].map(s => s.getBoundingClientRect().width)")
    assert len(widths) == 11 and min(widths) >= 24  # a touch target of 24 px at least (WCAG 2.5.8)
    style = page.evaluate(f"(() => {{ const s = getComputedStyle({PROMPT}.shadowRoot.querySelector('.box'));"
                          " return [s.backgroundColor, s.color]; })()")
    assert style == ["rgb(1, 2, 3)", "rgb(250, 250, 250)"]
    page.screenshot(path=str(artifacts_dir() / "survey-nps-360-restyled.png"))
    page.get_by_role("button", name="Close survey").click()
    page.wait_for_selector("div.vary-survey", state="detached")
    assert _until(lambda: page.evaluate("window.__outcome"), "the outcome")["outcome"] == "dismissed"
    sent = _until(lambda: [e["type"] for e in _sent(survey_store, "nps-test")] == ["survey_shown", "survey_dismissed"],
                  "survey_shown then survey_dismissed")
    assert sent


@pytest.mark.e2e
@pytest.mark.slow
def test_prompts_that_must_not_be_shown_are_skipped_and_exit_intent_waits(
    survey_server: VaryProcess, survey_store: redis.Redis, page: Any
) -> None:
    _demo(page, survey_server)
    skipped = page.evaluate(
        """async ([key, good, bad]) => {
            const silent = window.Vary.createVary({ key, autoPageView: false, consent: { analytics: false } });
            return [
                await silent.survey.show(good),                  // no analytics consent: cannot be recorded
                await window.vary.survey.show(bad),              // a metric the kit does not know
                await window.vary.survey.show({ ...good, key: "scale-off", scale_min: 1, scale_max: 40 }),
                document.querySelectorAll("div.vary-survey").length,
            ];
        }""",
        [SURVEY_DELIVERY, _prompt("skip-me", "csat"), _prompt("bad", "stars")],
    )
    assert skipped == [{"outcome": "skipped", "survey": "skip-me"}, {"outcome": "skipped", "survey": "bad"},
                       {"outcome": "skipped", "survey": "scale-off"}, 0]
    # Exit intent: held until the pointer leaves through the top of the window.
    page.evaluate("p => { window.__exit = window.vary.survey.show(p); }", _prompt("exit-test", "ces", trigger="exit_intent"))
    page.mouse.move(400, 300)
    time.sleep(0.3)
    assert page.evaluate("document.querySelectorAll('div.vary-survey').length") == 0
    page.evaluate("document.dispatchEvent(new MouseEvent('mouseout', { clientY: -1, relatedTarget: null }))")
    page.wait_for_selector("div.vary-survey")
    assert page.get_by_role("radio").count() == 7
    # The same survey is not drawn twice on one page, even when asked again.
    page.keyboard.press("Escape")
    page.wait_for_selector("div.vary-survey", state="detached")
    again = page.evaluate("p => window.vary.survey.show(p)", _prompt("exit-test", "ces"))
    assert again == {"outcome": "skipped", "survey": "exit-test"}
    assert not _sent(survey_store, "skip-me") and not _sent(survey_store, "bad")
    assert page.console_errors.messages == []


@pytest.mark.e2e
@pytest.mark.slow
def test_with_auto_rendering_off_the_app_gets_the_due_survey_and_shows_it_itself(
    survey_server: VaryProcess, page: Any
) -> None:
    sent: list[Any] = []
    page.on("request", lambda request: sent.append(request))
    for _ in range(8):  # a visitor served a variant of the shipping test (the checkout survey is tied to it)
        _demo(page, survey_server)
        banner = page.evaluate("window.varyDemo.answer.entries.find(e => e.entry_id === 'bannerShipping')")
        if banner["experience"] == "banner-shipping-test" and not banner["holdout"]:
            break
        page.evaluate("window.vary.reset()")
    personalize = [r for r in sent if r.url.endswith("/v1/personalize")]
    assert json.loads(personalize[-1].post_data)["surveys"] is True  # the kit asks by default
    result = page.evaluate(
        """async (key) => {
            const app = window.Vary.createVary({ key, autoSurvey: false, autoPageView: false });
            const prompt = await app.survey.after("task", { name: "checkout", success: true, touchpoint: "checkout" });
            const drawn = document.querySelectorAll("div.vary-survey").length;
            app.survey.show(prompt);
            return { prompt, drawn, open: app.survey.open && app.survey.open.key };
        }""",
        SURVEY_DELIVERY,
    )
    assert result["drawn"] == 0 and result["prompt"]["key"] == "checkout-csat" and result["open"] == "checkout-csat"
    assert result["prompt"]["variant"] == banner["variant"]
    page.wait_for_selector("div.vary-survey")
    asked = [r for r in sent if r.url.endswith("/v1/surveys/due")]
    assert len(asked) == 1 and json.loads(asked[0].post_data)["visitor"]["id"] == page.evaluate("window.vary.visitorId()")
    page.evaluate("window.Vary.createVary({ key: 'k', surveys: false, autoPageView: false }).personalize(['heroHome'])"
                  ".catch(() => null)")
    _until(lambda: len([r for r in sent if r.url.endswith("/v1/personalize")]) == len(personalize) + 1, "the request")
    assert "surveys" not in json.loads([r for r in sent if r.url.endswith("/v1/personalize")][-1].post_data)


# --- the local-evaluation SDK served for the kit's local mode (issue 25) ------------------------------

SDK_SOURCE = Path(__file__).resolve().parents[3] / "sdk" / "js" / "src" / "index.js"


def test_the_local_sdk_module_is_the_js_sdks_source_byte_for_byte(client: TestClient) -> None:
    """``/v1/sdk-local.mjs`` is ``sdk/js/src/index.js`` (a link in the package data): it cannot drift."""
    source = SDK_SOURCE.read_bytes()
    response = client.get("/v1/sdk-local.mjs", headers={"Accept-Encoding": "identity"})
    assert response.status_code == 200
    assert response.content == source and "content-encoding" not in response.headers
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["cache-control"] == "public, max-age=300"
    assert response.headers["x-content-type-options"] == "nosniff"
    etag = response.headers["etag"]
    assert etag == '"' + hashlib.sha256(source).hexdigest()[:32] + '"'
    again = client.get("/v1/sdk-local.mjs", headers={"If-None-Match": etag, "Accept-Encoding": "identity"})
    assert again.status_code == 304 and again.content == b""
    # What the wheel ships: the package-data file (setuptools copies the file behind the link).
    shipped = files("api.frontend") / "static" / "sdk-local.mjs"
    assert shipped.is_file() and shipped.read_bytes() == source
    assert '"static/*.mjs"' in (SDK_SOURCE.parents[3] / "pyproject.toml").read_text(encoding="utf-8")


@pytest.mark.parametrize("path", ["/v1/sdk.js", "/v1/sdk.mjs", "/v1/sdk-local.mjs"])
def test_the_sdk_files_are_gzipped_for_clients_that_accept_it(client: TestClient, path: str) -> None:
    plain = client.get(path, headers={"Accept-Encoding": "identity"})
    with client.stream("GET", path, headers={"Accept-Encoding": "gzip"}) as zipped:
        raw = b"".join(zipped.iter_raw())
        headers = zipped.headers
    assert headers["content-encoding"] == "gzip" and headers["vary"] == "Accept-Encoding"
    assert gzip.decompress(raw) == plain.content and len(raw) < len(plain.content) / 2.5
    assert headers["etag"] != plain.headers["etag"]  # another representation, another tag
    refusing = client.get(path, headers={"Accept-Encoding": "gzip;q=0"})
    assert "content-encoding" not in refusing.headers
    for tag in (headers["etag"], plain.headers["etag"]):  # either tag is still current
        assert client.get(path, headers={"If-None-Match": tag}).status_code == 304


def test_the_kit_imports_the_local_sdk_from_its_own_vary_only_in_local_mode(client: TestClient) -> None:
    kit = client.get("/v1/sdk.js").text
    assert '"/v1/sdk-local.mjs"' in kit and "import(" in kit
    assert "options.local ? createLocalMode(" in kit  # remote mode (the default) never loads it
    assert "export class Vary" in client.get("/v1/sdk-local.mjs").text


def test_the_local_sdk_module_is_allowed_cross_origin(settings: Settings) -> None:
    """A page on another origin imports it as a module script, which browsers fetch with CORS."""
    shop = msgspec.structs.replace(settings, cors_origins=("https://shop.example",))
    with TestClient(create_app(shop)) as client:
        response = client.get("/v1/sdk-local.mjs", headers={"Origin": "https://shop.example"})
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "https://shop.example"
        elsewhere = client.get("/v1/sdk-local.mjs", headers={"Origin": "https://other.example"})
        assert "access-control-allow-origin" not in elsewhere.headers

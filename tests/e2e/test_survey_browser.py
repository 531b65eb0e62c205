"""Surveys in the kit (issue 24) in a real browser: the demo store on the real server, Redis read from outside.

The demo space models ``checkout-csat``: a CSAT survey triggered by ``task_success:checkout``, sampling
everyone, attached to ``banner-shipping-test``. Headless Chromium opens ``/demo``, places an order with
the keyboard, and the kit shows the survey Vary says is due; it is answered with the keyboard alone
(Tab, arrow keys, Enter) and the answer must reach the experience's CX results for the variant this
visitor was served — and the survey's own report with its response rate, and its dashboard page. On a
360 px screen the prompt
fits, moves nothing on the page, and Escape dismisses it with a ``survey_dismissed`` event.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis

from tests.e2e.browser import artifacts_dir
from tests.e2e.servers import VaryProcess, running

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DELIVERY = "survey-delivery"
ADMIN = "survey-admin"
SURVEY = "checkout-csat"
EXPERIENCE = "banner-shipping-test"
HOST = "div.vary-survey"
#: The box, the page and the prompt as the tests read them (the prompt lives in an open shadow root).
BODY_BOX = (
    "(() => { const r = document.body.getBoundingClientRect();"
    " return [r.x + scrollX, r.y + scrollY, r.width, r.height, scrollX, scrollY]; })()"
)
#: The page's box with the prompt taken out of it for a moment: what the page would be without it.
BODY_BOX_WITHOUT_PROMPT = (
    "(() => { const host = document.querySelector('div.vary-survey'); host.style.display = 'none';"
    f" const box = {BODY_BOX}; host.style.display = ''; return box; }})()"
)
PROMPT_BOX = (
    "(() => { const host = document.querySelector('div.vary-survey'); if (!host) return null;"
    " const r = host.shadowRoot.querySelector('.box').getBoundingClientRect();"
    " return {left: r.left, right: r.right, top: r.top, bottom: r.bottom, width: r.width,"
    " position: getComputedStyle(host).position}; })()"
)
FOCUSED = (
    "(() => { const host = document.querySelector('div.vary-survey');"
    " const a = host && host.shadowRoot.activeElement; if (!a) return null;"
    " return {tag: a.tagName, type: a.type || null, value: a.value || null, checked: !!a.checked,"
    " label: a.getAttribute('aria-label'), role: a.getAttribute('role')}; })()"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VaryProcess]:
    env = {"VARY_DELIVERY_KEYS": DELIVERY, "VARY_ADMIN_KEYS": ADMIN}
    with running(env, tmp_path_factory.mktemp("survey-browser-data")) as process:
        yield process


def _events(store: redis.Redis) -> list[dict[str, Any]]:
    keys = [k for k in store.scan_iter(match="vary:events*") if store.type(k) == "stream"]
    return [json.loads(fields["data"]) for key in keys for _, fields in store.xrange(key)]


def _mine(store: redis.Redis, visitor: str, kind: str) -> list[dict[str, Any]]:
    return [e for e in _events(store) if e["visitor_id"] == visitor and e["type"] == kind]


def _eventually(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _open_in_experience(page: Any, server: VaryProcess) -> dict[str, Any]:
    """Open the demo as a visitor served a variant of the shipping test (not its holdout: the survey
    is tied to a variant), a new visitor until one is. Returns the shipping banner's decision."""
    for _ in range(8):
        page.goto(f"{server.base}/demo?country=DE")
        page.wait_for_selector("body[data-vary-ready]")
        assert page.evaluate("document.body.dataset.varyReady") == "true", page.locator("#status").inner_text()
        answer = page.evaluate("window.varyDemo.answer")
        banner = next(e for e in answer["entries"] if e["entry_id"] == "bannerShipping")
        if banner["experience"] == EXPERIENCE and not banner["holdout"]:
            return banner
        page.evaluate("window.vary.reset()")
    raise AssertionError("no visitor in banner-shipping-test after 8 tries")


def _checkout_with_keyboard(page: Any) -> dict[str, Any]:
    """Tab to "Place order", press Enter; the kit shows the survey that made due. Returns the prompt."""
    page.locator("#place-order").focus()
    page.keyboard.press("Enter")
    page.wait_for_selector("body[data-vary-checkout]")
    assert page.evaluate("document.body.dataset.varyCheckout") == "survey", page.locator("#status").inner_text()
    page.wait_for_selector(HOST)  # Playwright's CSS selectors pierce the open shadow root
    return page.evaluate("window.varyDemo.survey")


def test_checkout_survey_answered_with_the_keyboard_reaches_the_variants_cx(
    server: VaryProcess, store: redis.Redis, page: Any
) -> None:
    shots = artifacts_dir()
    banner = _open_in_experience(page, server)
    visitor = page.evaluate("window.vary.visitorId()")

    prompt = _checkout_with_keyboard(page)
    assert prompt["key"] == SURVEY and prompt["metric"] == "csat" and prompt["trigger"] == "task_success:checkout"
    assert prompt["experience_key"] == EXPERIENCE and prompt["variant"] == banner["variant"]
    assert (prompt["scale_min"], prompt["scale_max"]) == (1, 5)
    # Drawn as a dialog named by its question, fixed to the viewport: the page did not move.
    dialog = page.get_by_role("dialog", name=prompt["question"])
    assert dialog.is_visible()
    assert page.evaluate(PROMPT_BOX)["position"] == "fixed"
    assert page.evaluate(BODY_BOX) == page.evaluate(BODY_BOX_WITHOUT_PROMPT)  # no layout shift
    radios = page.get_by_role("radio")
    assert radios.count() == 5
    assert radios.nth(0).get_attribute("aria-label") == f"1, {prompt['low_label']}"
    assert radios.nth(4).get_attribute("aria-label") == f"5, {prompt['high_label']}"
    assert page.evaluate(FOCUSED)["role"] == "dialog"  # focus moved to the prompt: a screen reader reads it
    _eventually(lambda: _mine(store, visitor, "survey_shown"), "the survey_shown event")
    page.screenshot(path=str(shots / "survey-csat-shown.png"))

    # Keyboard only: Tab into the scale, Space picks 1, three arrows move to 4, Enter sends.
    page.keyboard.press("Tab")
    assert page.evaluate(FOCUSED)["type"] == "radio"
    page.keyboard.press("Space")
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    focused = page.evaluate(FOCUSED)
    assert focused["value"] == "4" and focused["checked"] is True
    page.keyboard.press("Enter")
    page.locator(f"{HOST} .thanks[role=status]").wait_for()
    page.screenshot(path=str(shots / "survey-csat-thanks.png"))

    answers = _eventually(lambda: _mine(store, visitor, "survey"), "the survey answer event")
    assert len(answers) == 1
    answer = answers[0]
    assert (answer["survey"], answer["metric"], answer["score"]) == (SURVEY, "csat", 4)
    assert answer["touchpoint"] == "checkout" and answer["channel"] == "web"
    assert _mine(store, visitor, "survey_dismissed") == []
    page.wait_for_selector(HOST, state="detached", timeout=10_000)  # the thanks closes by itself

    admin = {"Authorization": f"Bearer {ADMIN}"}
    variant = str(banner["variant"])

    def cx_has_the_answer() -> dict[str, Any] | None:
        response = httpx.get(f"{server.base}/v1/experiences/{EXPERIENCE}/results", headers=admin, timeout=10)
        assert response.status_code == 200, response.text
        cx = response.json()["cx"]
        return cx if variant in cx and cx[variant]["csat"]["n"] == 1 else None

    cx = _eventually(cx_has_the_answer, "the answer in the experience's CX results", timeout=40.0)
    assert cx[variant]["csat"]["score"] is not None
    assert all(arm["csat"]["n"] == 0 for name, arm in cx.items() if name != variant)

    report = httpx.get(f"{server.base}/v1/surveys/{SURVEY}/results", headers=admin, timeout=10).json()
    arm = report["by_variant"][variant]["responses"]
    assert (arm["shown"], arm["answered"], arm["dismissed"]) == (1, 1, 0)
    assert report["by_channel"]["web"]["response_rate"] == 1.0
    assert page.console_errors.messages == []

    # The dashboard's survey page shows the same, on a phone too.
    page.set_viewport_size({"width": 360, "height": 740})
    page.goto(f"{server.base}/dashboard/surveys/{SURVEY}")
    page.get_by_label("Admin key").fill(ADMIN)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{server.base}/dashboard/surveys/{SURVEY}")
    row = page.locator(f'tr[data-variant="{variant}"]')
    assert row.locator("td").nth(1).inner_text() == "1"  # answered
    assert row.locator("td.cx").inner_text().split() == ["100%", "[21%", "–", "100%]", "from", "100.0%", "of",
                                                          "those", "asked"]  # a 4 is top-two-box: 1 of 1
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    page.screenshot(path=str(shots / "dashboard-survey-360.png"), full_page=True)


def test_on_a_phone_the_prompt_fits_moves_nothing_and_escape_dismisses_it(
    server: VaryProcess, store: redis.Redis, page: Any
) -> None:
    page.set_viewport_size({"width": 360, "height": 740})
    _open_in_experience(page, server)
    visitor = page.evaluate("window.vary.visitorId()")
    _checkout_with_keyboard(page)
    box = page.evaluate(PROMPT_BOX)
    assert box["position"] == "fixed"
    assert 0 <= box["left"] and box["right"] <= 360 and box["width"] <= 360 and box["bottom"] <= 740
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    shown = page.evaluate(BODY_BOX)
    assert shown == page.evaluate(BODY_BOX_WITHOUT_PROMPT)  # no layout shift
    page.screenshot(path=str(artifacts_dir() / "survey-csat-360.png"))

    page.keyboard.press("Escape")
    page.wait_for_selector(HOST, state="detached")
    assert page.evaluate(BODY_BOX) == shown  # nor when it goes
    dismissed = _eventually(lambda: _mine(store, visitor, "survey_dismissed"), "the survey_dismissed event")
    assert [(e["survey"], e["metric"]) for e in dismissed] == [(SURVEY, "csat")]
    assert _mine(store, visitor, "survey") == []
    # Focus went back to the button that opened it.
    assert page.evaluate("document.activeElement.id") == "place-order"
    assert page.console_errors.messages == []

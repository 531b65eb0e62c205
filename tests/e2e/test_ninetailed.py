"""Issue 9's end-to-end: the real ``vary serve`` pointed at the bundled Contentful Personalization
(Ninetailed) demo space, unchanged. The same personalize calls give the expected variants for visitors
with matching and non-matching location, traits, visit history and page context; the A/B test's hidden
variant renders nothing; the merge tag greets the visitor by name."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import content
from api.embedded.valkey import EmbeddedRedis
from content import compile_snapshot
from content.sources import items_from_export
from personalization.decision.ninetailed_bucketing import assign_ninetailed
from tests.e2e.servers import VaryProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SPACE = Path(content.__file__).parent / "demo" / "ninetailed.json"
DELIVERY = "nt-delivery"
ADMIN = "nt-admin"
AUTH = {"Authorization": f"Bearer {DELIVERY}"}


@pytest.fixture(scope="module")
def base(valkey: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {
        "VARY_REDIS_URL": valkey.url,
        "VARY_CONTENT_SOURCE": str(SPACE),
        "VARY_DELIVERY_KEYS": DELIVERY,
        "VARY_ADMIN_KEYS": ADMIN,
        "VARY_TRAIN_DEMO_MODEL": "false",
        "VARY_PROFILE_TIMEOUT_S": "2",
    }
    proc = VaryProcess(env, tmp_path_factory.mktemp("nt-data"))
    try:
        proc.wait_ready()
        yield proc.base
    finally:
        proc.stop()


def visitor_id() -> str:
    return f"nt-{uuid.uuid4().hex[:12]}"


def personalize(base: str, visitor: dict[str, Any], *entries: str) -> list[dict[str, Any]]:
    body = {"visitor": {"session_id": "s-now", **visitor}, "entries": list(entries)}
    response = httpx.post(f"{base}/v1/personalize", json=body, headers=AUTH, timeout=10)
    assert response.status_code == 200, response.text
    payload = response.json()
    assert payload["degraded"] is False
    return payload["entries"]  # type: ignore[no-any-return]


def hero(base: str, **visitor: Any) -> dict[str, Any]:
    return personalize(base, {"id": visitor.pop("id", None) or visitor_id(), **visitor}, "heroHome")[0]


def returning(base: str) -> str:
    """A visitor whose earlier visit (another session, yesterday) is in their profile."""
    vid = visitor_id()
    event = {"type": "page_view", "visitor_id": vid, "session_id": "s-yesterday", "page": "/",
             "ts": time.time() - 86_400}
    response = httpx.post(f"{base}/v1/events", json={"events": [event]}, headers=AUTH, timeout=10)
    assert response.status_code == 202 and response.json()["accepted"] == 1, response.text
    return vid


def greeting(entry: dict[str, Any]) -> str:
    paragraph = entry["fields"]["greeting"]["content"][0]
    return "".join(node["value"] for node in paragraph["content"])


def test_content_is_the_ninetailed_space_without_issues(base: str) -> None:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    issues = httpx.get(f"{base}/v1/content/issues", headers=admin, timeout=10).json()
    assert issues["issues"] == []
    listed = httpx.get(f"{base}/v1/experiences", headers=admin, timeout=10).json()["experiences"]
    by_key = {e["key"]: e for e in listed}
    assert by_key["ntExpEurope"]["entries"] == ["heroHome"] and by_key["ntExpEurope"]["audience"] == "ntAudEurope"
    assert by_key["ntExpPromoTest"]["type"] == "ab_test" and by_key["ntExpPromoTest"]["variants"] == ["bannerPromoShort", ""]


def test_location_europe_or_not(base: str) -> None:
    german = hero(base, id=returning(base), country="DE")
    assert german["experience"] == "ntExpEurope" and german["variant_entry_id"] == "heroHomeEurope"
    assert german["fields"]["title"] == "Free delivery anywhere in Europe" and german["hidden"] is False
    assert "continent EU = EU" in german["reason"]
    assert hero(base, id=returning(base), country="fr")["variant_entry_id"] == "heroHomeEurope"
    american = hero(base, id=returning(base), country="US")
    assert american["experience"] is None and american["variant_entry_id"] == "heroHome"
    assert american["fields"]["title"].startswith("Furniture for every room")


def test_identify_trait(base: str) -> None:
    pro = hero(base, id=returning(base), country="US", traits={"plan": "pro"})
    assert pro["experience"] == "ntExpProPlan" and pro["variant_entry_id"] == "heroHomePro"
    free = hero(base, id=returning(base), country="US", traits={"plan": "free"})
    assert free["experience"] is None and free["variant_entry_id"] == "heroHome"


def test_new_visitor_then_returning(base: str) -> None:
    vid = visitor_id()
    first = hero(base, id=vid, country="US")
    assert first["experience"] == "ntExpNewVisitors" and first["variant_entry_id"] == "heroHomeWelcome"
    # Priority is nt_experiences order: a new visitor in Europe gets the Europe hero.
    assert hero(base, country="AT")["experience"] == "ntExpEurope"
    event = {"type": "page_view", "visitor_id": vid, "session_id": "s-last-week", "ts": time.time() - 7 * 86_400}
    assert httpx.post(f"{base}/v1/events", json={"events": [event]}, headers=AUTH, timeout=10).status_code == 202
    later = hero(base, id=vid, country="US")
    assert later["experience"] is None and later["variant_entry_id"] == "heroHome"


def test_page_context(base: str) -> None:
    def garden(**visitor: Any) -> dict[str, Any]:
        return personalize(base, {"id": visitor_id(), **visitor}, "bannerGarden")[0]

    assert garden(page="https://shop.example/garden/tables")["variant_entry_id"] == "bannerGardenSpring"
    assert garden(page="/", utm={"campaign": "spring"})["variant_entry_id"] == "bannerGardenSpring"
    elsewhere = garden(page="https://shop.example/sofas", utm={"campaign": "autumn"})
    assert elsewhere["variant_entry_id"] == "bannerGarden" and elsewhere["experience"] is None
    assert garden()["variant_entry_id"] == "bannerGarden"


def test_hidden_variant_renders_nothing(base: str) -> None:
    promo = compile_snapshot(items_from_export(json.loads(SPACE.read_text()))).experiences["ntExpPromoTest"]
    by_arm: dict[int, str] = {}
    while len(by_arm) < 3:
        vid = visitor_id()
        assigned = assign_ninetailed(promo, vid)  # nt_* experiences use Ninetailed's own bucketing
        if assigned is not None:
            by_arm.setdefault(assigned.variant, vid)

    hidden = personalize(base, {"id": by_arm[2]}, "bannerPromo")[0]
    assert hidden["experience"] == "ntExpPromoTest" and hidden["variant"] == 2
    assert hidden["hidden"] is True and hidden["fields"] is None and hidden["variant_entry_id"] == ""
    assert hidden["content_type"] == "ntBanner"
    again = httpx.get(f"{base}/v1/entries/bannerPromo", params={"visitor_id": by_arm[2]}, headers=AUTH, timeout=10)
    assert again.status_code == 200 and again.json()["hidden"] is True and again.json()["fields"] is None

    short = personalize(base, {"id": by_arm[1]}, "bannerPromo")[0]
    assert short["hidden"] is False and short["fields"]["text"] == "20% off garden furniture."
    control = personalize(base, {"id": by_arm[0]}, "bannerPromo")[0]
    assert control["is_control"] and control["fields"]["text"].startswith("Summer sale")


def test_merge_tag_greets_by_first_name(base: str) -> None:
    ada = hero(base, id=returning(base), country="US", traits={"firstname": "Ada"})
    assert greeting(ada) == "Hi Ada, good to see you."
    stranger = hero(base, id=returning(base), country="US")
    assert greeting(stranger) == "Hi there, good to see you."
    european = hero(base, id=returning(base), country="DE", traits={"firstname": "Grete"})
    assert greeting(european) == "Hallo Grete, your sofa ships free this month."
    no_consent = hero(base, id=returning(base), country="US", traits={"firstname": "Ada"},
                      consent={"personalization": False})
    assert greeting(no_consent) == "Hi there, good to see you."

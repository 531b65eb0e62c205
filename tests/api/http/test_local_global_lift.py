"""Locally decided visitors in ``GET /v1/lift``: ``POST /v1/exposures`` derives each local ``decide()``
call's ``_global`` exposure from the bundle, as ``/v1/personalize`` logs it, once per call; a ``_global``
item an SDK sends is checked against that recomputation (a forged arm is rejected and counted)."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path

import msgspec
import redis
from litestar.testing import TestClient

from personalization.decision.global_holdout import GLOBAL_EXPERIENCE, in_global_holdout
from personalization.types import EXPOSURE_DECODER, Exposure

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "sdk" / "python"))
from vary_sdk import VaryClient, exposures_payload

ENTRIES = ["heroHome", "bannerShipping", "bannerNewsletter"]
GLOBAL_SHARE = 0.05  # the demo space's global holdout


def _client(client: TestClient, delivery: dict[str, str]) -> VaryClient:
    key = client.get("/v1/bundle/key", headers=delivery).json()["public_key"]
    served = client.get("/v1/bundle", headers=delivery)
    return VaryClient(served.content, key, served.headers["x-vary-signature"])


def _visitors(prefix: str, held: int, treated: int) -> list[str]:
    """``held`` visitors in the global holdout and ``treated`` outside it (membership is a pure hash)."""
    candidates = [f"{prefix}-{i}" for i in range(5_000)]
    inside = [v for v in candidates if in_global_holdout(v, GLOBAL_SHARE)][:held]
    outside = [v for v in candidates if not in_global_holdout(v, GLOBAL_SHARE)][:treated]
    assert len(inside) == held
    return inside + outside


def _global_exposures(sync_redis: redis.Redis, visitors: set[str], expected: int) -> list[Exposure]:
    """The ``_global`` exposures of these visitors in the stream, once ``expected`` of them are there
    (the exposure writer is asynchronous), and a moment later, so that an extra one would show."""
    deadline = time.monotonic() + 10
    found: list[Exposure] = []
    while time.monotonic() < deadline:
        found = [
            e for e in (EXPOSURE_DECODER.decode(f["data"]) for _, f in sync_redis.xrange("vary:exposures"))
            if e.experience == GLOBAL_EXPERIENCE and e.visitor_id in visitors
        ]
        if len(found) >= expected:
            time.sleep(0.3)
            return [
                e for e in (EXPOSURE_DECODER.decode(f["data"]) for _, f in sync_redis.xrange("vary:exposures"))
                if e.experience == GLOBAL_EXPERIENCE and e.visitor_id in visitors
            ]
        time.sleep(0.02)
    raise AssertionError(f"only {len(found)} of {expected} _global exposures reached Redis")


def _lift(client: TestClient, admin: dict[str, str], visitors: int) -> dict[str, object]:
    deadline = time.monotonic() + 30
    body: dict[str, object] = {}
    while time.monotonic() < deadline:
        body = client.get("/v1/lift", headers=admin).json()
        if body["treated_visitors"] + body["holdout_visitors"] >= visitors:
            return body
        time.sleep(0.1)
    raise AssertionError(f"the aggregator did not count {visitors} visitors in _global: {body}")


def _post(client: TestClient, delivery: dict[str, str], decisions: list[object]) -> dict[str, object]:
    sent = client.post("/v1/exposures", json={"decisions": decisions}, headers=delivery)
    assert sent.status_code == 202, sent.text
    body: dict[str, object] = sent.json()
    return body


def test_locally_decided_visitors_are_in_the_lift_like_personalized_ones(
    client: TestClient, delivery: dict[str, str], admin: dict[str, str], sync_redis: redis.Redis
) -> None:
    vary = _client(client, delivery)
    local = _visitors("lift-local", held=3, treated=9)
    served = _visitors("lift-served", held=3, treated=9)
    for visitor in local:
        answer = vary.decide({"id": visitor, "country": "CA"}, ENTRIES)
        decisions = json.loads(exposures_payload(answer.entries))["decisions"]
        # One page view's decisions in two batches, the first sent twice: still one `_global` exposure.
        assert _post(client, delivery, decisions[:1]) == {"accepted": 1, "duplicates": 0, "rejected": []}
        assert _post(client, delivery, decisions[1:])["accepted"] == 2
        assert _post(client, delivery, decisions[:1])["duplicates"] == 1
    for visitor in served:
        body = {"visitor": {"id": visitor, "country": "CA"}, "entries": ENTRIES}
        assert client.post("/v1/personalize", json=body, headers=delivery).status_code == 200

    # One `_global` exposure per page view, local or served; the arm is the visitor's global holdout.
    recorded = _global_exposures(sync_redis, set(local + served), len(local) + len(served))
    assert Counter(e.visitor_id for e in recorded) == Counter(local + served)
    for exposure in recorded:
        held = in_global_holdout(str(exposure.visitor_id), GLOBAL_SHARE)
        assert (exposure.variant, exposure.holdout) == ((0, True) if held else (1, False))
        assert exposure.propensity == (GLOBAL_SHARE if held else 1 - GLOBAL_SHARE)
        assert exposure.entry_id == ENTRIES[0]

    lift = _lift(client, admin, len(local) + len(served))
    assert (lift["treated_visitors"], lift["holdout_visitors"]) == (18, 6)

    # Field for field what /v1/personalize logs for the same visitor and request (its id and time aside).
    by_visitor = {e.visitor_id: e for e in recorded}
    for visitor in (local[0], local[-1]):  # one held out, one treated
        body = {"visitor": {"id": visitor, "country": "CA"}, "entries": ENTRIES}
        assert client.post("/v1/personalize", json=body, headers=delivery).status_code == 200
    again = _global_exposures(sync_redis, {local[0], local[-1]}, 4)
    for visitor in (local[0], local[-1]):
        mine, servers = sorted((e for e in again if e.visitor_id == visitor), key=lambda e: not e.id.startswith("l"))
        assert mine == by_visitor[visitor] and mine.id.startswith("l") and not servers.id.startswith("l")
        assert msgspec.structs.replace(mine, id="", ts=0.0) == msgspec.structs.replace(servers, id="", ts=0.0)


def test_a_global_item_must_match_the_recomputed_arm(
    client: TestClient, delivery: dict[str, str], sync_redis: redis.Redis
) -> None:
    vary = _client(client, delivery)
    visitor = _visitors("global-item", held=0, treated=1)[0]
    answer = vary.decide({"id": visitor, "country": "US"}, ENTRIES)
    assert answer.global_holdout is not None and answer.global_holdout.variant == 1
    entry = msgspec.to_builtins(answer.entries[0].decision)
    arm = {**entry, "experience": GLOBAL_EXPERIENCE, "variant": 1, "propensity": 1 - GLOBAL_SHARE}
    forged_arm = {**arm, "variant": 0, "propensity": GLOBAL_SHARE}
    forged_propensity = {**arm, "propensity": 0.5}
    no_consent = {**arm, "visitor": {**arm["visitor"], "consent": {"personalization": False, "analytics": True}}}
    body = _post(client, delivery, [entry, arm, forged_arm, forged_propensity, no_consent])
    assert body["accepted"] == 2
    rejected = {r["key"]: r["message"] for r in body["rejected"]}
    assert set(rejected) == {"decisions[2]", "decisions[3]", "decisions[4]"}
    assert rejected["decisions[2]"] == (
        "inconsistent: the bundle puts this visitor in '_global' variant 1 (treated), not 0"
    )
    assert rejected["decisions[3]"].startswith("inconsistent") and "propensity" in rejected["decisions[3]"]
    assert rejected["decisions[4]"].startswith("inconsistent: the bundle logs no '_global' exposure")
    # The sent arm and the derived one are the same exposure: recorded once.
    recorded = _global_exposures(sync_redis, {visitor}, 1)
    assert [(e.variant, e.holdout) for e in recorded] == [(1, False)]

    # A batch of forged arms alone: 400, each item named.
    refused = client.post("/v1/exposures", json={"decisions": [forged_arm]}, headers=delivery)
    assert refused.status_code == 400 and "decisions[0]" in refused.text and "'_global' variant 1" in refused.text
    ready = client.get("/ready").json()
    assert ready["local_exposures_accepted"] == 2
    assert ready["local_exposures_rejected"] == {"inconsistent": 4}

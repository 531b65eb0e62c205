"""``POST /v1/exposures`` with ``decisions``: decisions the Python SDK made from the served bundle are
recomputed and recorded like server exposures; stale, edited or inconsistent ones are rejected and counted."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import msgspec
from litestar.testing import TestClient

from personalization.store.keys import profile_key
from personalization.types import EXPOSURE_DECODER, Exposure

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "sdk" / "python"))
from vary_sdk import VaryClient, exposures_payload

ENTRIES = ["heroHome", "bannerShipping", "bannerNewsletter"]


def _client(client: TestClient, delivery: dict[str, str]) -> VaryClient:
    key = client.get("/v1/bundle/key", headers=delivery).json()["public_key"]
    served = client.get("/v1/bundle", headers=delivery)
    return VaryClient(served.content, key, served.headers["x-vary-signature"])


def _recorded(sync_redis, ids: set[str]) -> dict[str, Exposure]:
    """The exposures with these ids, once all of them are in the stream (the writer is asynchronous)."""
    deadline = time.monotonic() + 10
    found: dict[str, Exposure] = {}
    while time.monotonic() < deadline:
        found = {
            e.id: e for e in (EXPOSURE_DECODER.decode(f["data"]) for _, f in sync_redis.xrange("vary:exposures"))
            if e.id in ids
        }
        if found.keys() == ids:
            return found
        time.sleep(0.02)
    raise AssertionError(f"exposures {sorted(ids - found.keys())} never reached Redis")


def test_local_decisions_are_recorded_like_server_exposures_once(
    client: TestClient, delivery: dict[str, str], sync_redis
) -> None:
    vary = _client(client, delivery)
    answer = vary.decide({"id": "local-visitor-1", "country": "CA", "session_id": "s-9"}, ENTRIES)
    sent = client.post("/v1/exposures", content=exposures_payload(answer.entries),
                       headers={**delivery, "Content-Type": "application/json"})
    assert sent.status_code == 202, sent.text
    assert sent.json() == {"accepted": 3, "duplicates": 0, "rejected": []}
    recorded = _recorded(sync_redis, {entry.exposure_id for entry in answer.entries})
    for entry in answer.entries:
        exposure = recorded[entry.exposure_id]
        assert (exposure.entry_id, exposure.experience, exposure.variant, exposure.variant_entry_id,
                exposure.propensity, exposure.holdout) == (
            entry.entry_id, entry.experience, entry.variant, entry.variant_entry_id, entry.propensity, entry.holdout)
        assert (exposure.visitor_id, exposure.session_id, exposure.country) == ("local-visitor-1", "s-9", "CA")
        assert exposure.segments == answer.segments and exposure.model_version == answer.model_version
    # the SDK's sticky assignments are reconciled into the visitor's profile
    stored = sync_redis.hgetall(profile_key("local-visitor-1"))
    assert {f"a:{key}" for _, key, _ in answer.assignments} <= set(stored)

    again = client.post("/v1/exposures", content=exposures_payload(answer.entries), headers=delivery)
    assert again.json() == {"accepted": 0, "duplicates": 3, "rejected": []}


def test_forged_stale_and_unknown_decisions_are_rejected_and_counted(
    client: TestClient, delivery: dict[str, str]
) -> None:
    vary = _client(client, delivery)
    answer = vary.decide({"id": "local-visitor-2", "country": "US"}, ENTRIES)
    decisions = json.loads(exposures_payload(answer.entries))["decisions"]
    good, forged_variant, forged_propensity = decisions
    forged_variant = {**forged_variant, "variant": forged_variant["variant"] + 1}
    forged_propensity = {**forged_propensity, "propensity": 0.999}
    stale = {**good, "ts": time.time() - 3 * 86_400}
    unknown = {**good, "bundle_version": "0123456789abcdef0123"}
    batch = [good, forged_variant, forged_propensity, stale, unknown]
    sent = client.post("/v1/exposures", json={"decisions": batch}, headers=delivery)
    assert sent.status_code == 202, sent.text
    body = sent.json()
    assert body["accepted"] == 1
    rejected = {r["key"]: r["message"] for r in body["rejected"]}
    assert set(rejected) == {"decisions[1]", "decisions[2]", "decisions[3]", "decisions[4]"}
    assert rejected["decisions[1]"].startswith("inconsistent: the bundle decides")
    assert rejected["decisions[2]"].startswith("inconsistent") and "propensity" in rejected["decisions[2]"]
    assert rejected["decisions[3]"].startswith("stale")
    assert rejected["decisions[4]"].startswith("unknown bundle version")

    # nothing valid at all: 400, each item named
    refused = client.post("/v1/exposures", json={"decisions": [forged_variant]}, headers=delivery)
    assert refused.status_code == 400
    assert "decisions[0]" in refused.text and "inconsistent" in refused.text
    nothing = client.post("/v1/exposures", json={}, headers=delivery)
    assert nothing.status_code in (400, 422) and "tokens" in nothing.text
    malformed = client.post("/v1/exposures", json={"decisions": [{**good, "variant": "one"}]}, headers=delivery)
    assert malformed.status_code == 400 and "variant" in malformed.text

    ready = client.get("/ready").json()
    assert ready["local_exposures_accepted"] == 1
    assert ready["local_exposures_rejected"] == {"inconsistent": 3, "stale": 1, "unknown_version": 1}


def test_a_decision_from_an_edited_profile_or_visitor_does_not_pass_for_another(
    client: TestClient, delivery: dict[str, str]
) -> None:
    """The inputs travel with the decision: changing them (to claim a variant for a visitor the bundle
    gives another) is caught, while a consistent decision for the same inputs passes."""
    vary = _client(client, delivery)
    checked = 0
    for i in range(40):
        answer = vary.decide({"id": f"local-edit-{i}"}, ["bannerShipping"])
        decision = msgspec.to_builtins(answer.entries[0].decision)
        other = vary.decide({"id": f"local-edit-{i}-x"}, ["bannerShipping"]).entries[0]
        if other.variant == answer.entries[0].variant:
            continue
        claimed = {**decision, "variant": other.variant, "propensity": other.propensity,
                   "experience": other.experience}
        sent = client.post("/v1/exposures", json={"decisions": [decision, claimed]}, headers=delivery)
        assert sent.status_code == 202
        assert sent.json()["accepted"] == 1
        assert [r["key"] for r in sent.json()["rejected"]] == ["decisions[1]"]
        checked += 1
    assert checked >= 10

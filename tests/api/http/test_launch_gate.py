"""The launch gate and shadow mode over HTTP, with the real app and Valkey, on logs with known truth.

The logs come from :mod:`personalization.demo.logged_bandit`'s seeded world (3 variants, 3 context
features carried as segment scores), so each candidate's TRUE value is known: a policy trained on the
rewards beats the (deliberately bad) logging policy, one trained on the flipped rewards loses to it.
The gate must say the same from the logs alone.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import numpy as np
import pytest
from litestar.testing import TestClient

from api.app import create_app
from api.settings import Settings
from content import demo_space_path
from personalization.decision.features import policy_context
from personalization.decision.global_holdout import in_global_holdout
from personalization.decision.policy import action_probabilities
from personalization.demo.logged_bandit import BanditWorld, make_world
from personalization.measurement.events import Conversion
from personalization.models.files import dump_bytes
from personalization.models.policy import compile_policy, train_reward_model
from personalization.types import EXPOSURE_DECODER, Exposure, new_exposure_id
from tests.api.logs import store_logs
from tests.content.spaces import set_field

EXPERIENCE = "banner-shipping-test"  # on entry bannerShipping; goals signup, purchase; 3 variants
ENTRY = "bannerShipping"
DAY = 86_400.0
GLOBAL_SHARE = 0.05  # the demo space's global holdout


@pytest.fixture
def bandit_settings(settings: Settings, tmp_path: Path) -> Settings:
    export = json.loads(demo_space_path().read_text(encoding="utf-8"))
    set_field(export, "bannerShippingTest", "type", "bandit")
    path = tmp_path / "space.json"
    path.write_text(json.dumps(export), encoding="utf-8")
    return msgspec.structs.replace(settings, content_source=str(path))


@pytest.fixture
def client(bandit_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(bandit_settings)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def world() -> BanditWorld:
    return make_world(3, 3, seed=2)


def _contexts(x: np.ndarray) -> list[dict[str, float | str]]:
    return [policy_context("web", "US", "mobile", {f"f{j}": float(v) for j, v in enumerate(row)}) for row in x]


def _policy(world: BanditWorld, *, flipped: bool, created_at: float) -> tuple[bytes, bytes, str, float]:
    """A policy trained on one logged sample (flipped: on 1 − reward, so it prefers the worst
    variants); its skops bytes, card, version and TRUE value on fresh contexts."""
    sample = world.log(3000, seed=11)
    rewards = (1 - sample.rewards) if flipped else sample.rewards
    pipeline, card = train_reward_model(
        _contexts(sample.contexts), sample.actions.tolist(), rewards.tolist(), 3, experience=EXPERIENCE,
        propensities=sample.propensities.tolist(), created_at=created_at,
    )
    compiled = compile_policy(pipeline, card)
    fresh = world.contexts(4000, seed=99)
    served = np.array([action_probabilities(compiled.predict(x)) for x in _contexts(fresh)])
    return dump_bytes(pipeline), msgspec.json.encode(card), card.version, world.value(fresh, served)


def _store_world_logs(redis_url: str, world: BanditWorld, n: int = 3000) -> float:
    """n decisions of the world's logging policy as exposures (ten days ago) and their conversions;
    returns the logging policy's TRUE value."""
    sample = world.log(n, seed=12)
    base = time.time() - 10 * DAY
    exposures, events = [], []
    for i, (x, a, p, r) in enumerate(zip(sample.contexts, sample.actions, sample.propensities, sample.rewards)):
        ts = base + i * 30.0
        exposures.append(
            Exposure(
                id=new_exposure_id(), ts=ts, visitor_id=f"w{i}", session_id=None, channel="web",
                entry_id=ENTRY, variant_entry_id="x", experience=EXPERIENCE, variant=int(a),
                is_control=int(a) == 0, holdout=False, propensity=float(p),
                segments={f"f{j}": float(v) for j, v in enumerate(x)}, country="US", device="mobile",
            )
        )
        if r:
            events.append(Conversion(visitor_id=f"w{i}", goal="signup", ts=ts + DAY))
    store_logs(redis_url, exposures, events)
    fresh = world.contexts(4000, seed=99)
    return world.value(fresh, world.logging_probabilities(fresh))


def _upload(client: TestClient, admin: dict[str, str], model: bytes, card: bytes) -> str:
    response = client.post(
        "/v1/models",
        files={"model": ("m.skops", model, "application/octet-stream"), "card": ("c.json", card, "application/json")},
        headers=admin,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["version"])


def _verdict(client: TestClient, admin: dict[str, str], version: str) -> dict:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        gate = client.get(f"/v1/models/{version}/gate", headers=admin)
        assert gate.status_code == 200, gate.text
        verdict = gate.json()["verdict"]
        if verdict is not None and verdict["status"] != "pending":
            return verdict
        time.sleep(0.1)
    raise AssertionError(f"no verdict for {version}")


def test_a_better_candidate_passes_a_worse_one_gets_409_and_force_is_recorded(
    client: TestClient, admin: dict[str, str], redis_url: str, world: BanditWorld
) -> None:
    logging_value = _store_world_logs(redis_url, world)
    good_model, good_card, good, good_value = _policy(world, flipped=False, created_at=1e9)
    bad_model, bad_card, bad, bad_value = _policy(world, flipped=True, created_at=1e9 + 1)
    assert good_value > logging_value > bad_value  # the known truth the gate must find from the logs

    assert _upload(client, admin, good_model, good_card) == good  # the gate starts in the background
    passed = _verdict(client, admin, good)
    assert passed["status"] == "pass" and passed["n"] == 3000 and passed["experience"] == EXPERIENCE
    assert passed["lower_bound"] == passed["dr"]["interval"][0] >= passed["logged"]["value"]
    assert passed["n_bootstrap"] == 500 and passed["seed"] == 0
    activated = client.put("/v1/models/active", json={"version": good}, headers=admin)
    assert activated.status_code == 200 and activated.json()["active"] is True

    assert _upload(client, admin, bad_model, bad_card) == bad
    refused = client.put("/v1/models/active", json={"version": bad}, headers=admin)
    assert refused.status_code == 409, refused.text
    body = refused.json()
    gate = body["extra"]["gate"]
    assert gate["status"] == "fail" and gate["version"] == bad
    assert gate["lower_bound"] < gate["logged"]["value"]
    assert gate["dr"]["value"] < gate["logged"]["value"]  # the estimate, not only its bound, is worse
    assert "did not pass its launch gate" in body["detail"] and '"force": true' in body["detail"]
    assert client.get("/v1/models", headers=admin).json()["policies"][EXPERIENCE] == good  # still live

    forced = client.put("/v1/models/active", json={"version": bad, "force": True}, headers=admin)
    assert forced.status_code == 200 and forced.json()["active"] is True
    record = client.get(f"/v1/models/{bad}/gate", headers=admin).json()
    assert record["forced"]["by"].startswith("admin key sha256:") and len(record["forced"]["by"]) == 29
    assert abs(record["forced"]["at"] - time.time()) < 60 and record["forced"]["status"] == "fail"
    assert record["verdict"]["status"] == "fail"  # forcing does not rewrite the verdict
    assert client.get("/v1/models", headers=admin).json()["policies"][EXPERIENCE] == bad

    page = client.get("/dashboard/models", headers=admin)
    assert page.status_code == 200
    assert "Launch gate" in page.text and "forced by admin key sha256:" in page.text
    assert f"{passed['dr']['value']:.4f}" in page.text  # the good candidate's DR estimate is shown


def test_a_policy_with_no_logs_is_judged_on_activation_and_refused_unless_forced(
    client: TestClient, admin: dict[str, str], world: BanditWorld
) -> None:
    model, card, version, _ = _policy(world, flipped=False, created_at=1e9 + 2)
    assert _upload(client, admin, model, card) == version
    refused = client.put("/v1/models/active", json={"version": version}, headers=admin)
    assert refused.status_code == 409
    gate = refused.json()["extra"]["gate"]
    assert gate["status"] == "error" and "no logged exposures" in gate["detail"]
    assert "could not be judged" in refused.json()["detail"]
    assert client.put("/v1/models/active", json={"version": version, "force": "yes"}, headers=admin).status_code == 400
    assert client.put("/v1/models/active", json={"version": version, "force": True}, headers=admin).status_code == 200
    assert client.get(f"/v1/models/{version}/gate", headers=admin).json()["forced"]["status"] == "error"
    assert client.get("/v1/models/pol-nope/gate", headers=admin).status_code == 404
    segments = client.get("/v1/models", headers=admin).json()["active"]
    assert client.put("/v1/models/active", json={"version": segments}, headers=admin).status_code == 200  # no gate


def _personalize(client: TestClient, delivery: dict[str, str], visitors: list[str]) -> list[tuple[int, float]]:
    """What each visitor (no analytics consent, so no sticky assignment) is served on the entry."""
    served = []
    for visitor in visitors:
        body = {"visitor": {"id": visitor, "consent": {"analytics": False}}, "entries": [ENTRY]}
        response = client.post("/v1/personalize", json=body, headers=delivery)
        assert response.status_code == 200, response.text
        entry = response.json()["entries"][0]
        assert entry["experience"] == EXPERIENCE
        served.append((entry["variant"], entry["propensity"]))
    return served


def _bandit_exposures(sync_redis, n: int) -> list[Exposure]:
    deadline = time.monotonic() + 5
    while True:
        found = [EXPOSURE_DECODER.decode(f["data"]) for _, f in sync_redis.xrange("vary:exposures")]
        found = [e for e in found if e.experience == EXPERIENCE]
        if len(found) >= n or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


def test_a_shadow_policy_is_logged_beside_the_live_one_and_changes_nothing_served(
    client: TestClient, admin: dict[str, str], delivery: dict[str, str], sync_redis, world: BanditWorld
) -> None:
    live_model, live_card, live, _ = _policy(world, flipped=False, created_at=1e9 + 3)
    shadow_model, shadow_card, shadow, _ = _policy(world, flipped=True, created_at=1e9 + 4)
    _upload(client, admin, live_model, live_card)
    _upload(client, admin, shadow_model, shadow_card)
    assert client.put("/v1/models/active", json={"version": live, "force": True}, headers=admin).status_code == 200
    visitors = [f"s{i}" for i in range(400) if not in_global_holdout(f"s{i}", GLOBAL_SHARE)][:60]

    before = _personalize(client, delivery, visitors)
    assert all(e.shadow_version is None for e in _bandit_exposures(sync_redis, len(visitors)))

    started = client.put("/v1/models/shadow", json={"version": shadow}, headers=admin)
    assert started.status_code == 200, started.text
    assert started.json() == {"shadows": {EXPERIENCE: shadow}, "live": {EXPERIENCE: live}}
    after = _personalize(client, delivery, visitors)
    assert after == before  # the live policy still serves, variant and propensity alike

    logged = _bandit_exposures(sync_redis, 2 * len(visitors))[len(visitors):]
    assert len(logged) == len(visitors)
    assert all(e.shadow_version == shadow and e.shadow_variant in (0, 1, 2) for e in logged)
    assert all(e.shadow_propensity is not None and 0.0 < e.shadow_propensity <= 1.0 for e in logged)
    assert any(e.shadow_variant != e.variant for e in logged)  # it prefers what the live one avoids
    assert [(e.variant, e.propensity) for e in logged] == before

    page = client.get("/dashboard/models", headers=admin).text
    agreed = sum(e.shadow_variant == e.variant for e in logged)
    assert "Shadow policies" in page and f"{agreed / len(logged):.1%}" in page

    # The live policy in its own shadow agrees on every decision: both draw with the same uniform.
    assert client.put("/v1/models/shadow", json={"version": live}, headers=admin).status_code == 200
    _personalize(client, delivery, visitors)
    same = _bandit_exposures(sync_redis, 3 * len(visitors))[2 * len(visitors):]
    assert [(e.shadow_variant, e.shadow_propensity) for e in same] == [(e.variant, e.propensity) for e in same]

    stopped = client.delete(f"/v1/models/shadow/{EXPERIENCE}", headers=admin)
    assert stopped.status_code == 200 and stopped.json()["shadows"] == {}
    assert client.delete(f"/v1/models/shadow/{EXPERIENCE}", headers=admin).status_code == 404
    _personalize(client, delivery, visitors[:5])
    assert all(e.shadow_version is None for e in _bandit_exposures(sync_redis, 3 * len(visitors) + 5)[-5:])

    segments = client.get("/v1/models", headers=admin).json()["active"]
    assert client.put("/v1/models/shadow", json={"version": segments}, headers=admin).status_code == 400
    assert client.put("/v1/models/shadow", json={"version": "pol-nope"}, headers=admin).status_code == 404
    assert client.put("/v1/models/shadow", json={"version": live}, headers=delivery).status_code == 403


def test_every_worker_follows_the_shadow(
    client: TestClient, bandit_settings: Settings, admin: dict[str, str], world: BanditWorld
) -> None:
    model, card, version, _ = _policy(world, flipped=True, created_at=1e9 + 5)
    _upload(client, admin, model, card)
    with TestClient(create_app(bandit_settings)) as other:  # running before the shadow starts: pub/sub
        assert client.put("/v1/models/shadow", json={"version": version}, headers=admin).status_code == 200
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and EXPERIENCE not in other.app.state.runtime.policies.shadows:
            time.sleep(0.02)
        assert other.app.state.runtime.policies.shadows[EXPERIENCE].version == version
        assert client.delete(f"/v1/models/shadow/{EXPERIENCE}", headers=admin).status_code == 200
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and EXPERIENCE in other.app.state.runtime.policies.shadows:
            time.sleep(0.02)
        assert EXPERIENCE not in other.app.state.runtime.policies.shadows
    assert client.put("/v1/models/shadow", json={"version": version}, headers=admin).status_code == 200
    with TestClient(create_app(bandit_settings)) as started_later:  # reads the shadow hash at start
        assert started_later.app.state.runtime.policies.shadows[EXPERIENCE].version == version

"""``POST /v1/models/{version}/evaluate``: a registered policy judged on the logged traffic of its
bandit experience (the demo space with its shipping-banner test turned into a bandit)."""

from __future__ import annotations

import asyncio
import csv
import json
import random
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from litestar.testing import TestClient
from redis.asyncio import Redis

from api.app import create_app
from api.settings import Settings
from content import demo_space_path
from personalization.models.evaluation import NoLoggedTraffic, NotAPolicyError, evaluate_candidate
from personalization.measurement.events import Conversion, Purchase
from personalization.types import new_exposure_id
from personalization.decision.features import policy_context
from personalization.models.files import dump_bytes
from personalization.models.registry import ModelRegistry, UnknownModelVersion
from personalization.models.policy import train_reward_model
from personalization.types import Experience, Exposure
from tests.api.logs import store_logs
from tests.content.spaces import set_field

EXPERIENCE = "banner-shipping-test"  # goals: signup, purchase; control + 2 variants
DAY = 86_400.0


@pytest.fixture
def bandit_space(tmp_path: Path) -> Path:
    export = json.loads(demo_space_path().read_text(encoding="utf-8"))
    set_field(export, "bannerShippingTest", "type", "bandit")
    path = tmp_path / "space.json"
    path.write_text(json.dumps(export), encoding="utf-8")
    return path


@pytest.fixture
def client(settings: Settings, bandit_space: Path) -> Iterator[TestClient]:
    bandit_settings = msgspec.structs.replace(settings, delivery_keys=("d",), content_source=str(bandit_space))
    with TestClient(create_app(bandit_settings)) as test_client:
        yield test_client


def _context(rng: random.Random) -> dict[str, float | str]:
    return policy_context(
        rng.choice(["web", "ios"]), rng.choice(["US", "DE"]), "mobile", {"price_sensitive": rng.random()}
    )


def _reward_p(context: dict[str, float | str], action: int) -> float:
    best = 2 if context["channel"] == "ios" else 1
    return 0.5 if action == best else 0.1


def _policy(experience: str, seed: int = 3) -> tuple[bytes, bytes, str]:
    """A reward model trained on simulated decisions: skops bytes, card JSON, version."""
    rng = random.Random(seed)
    contexts, actions, rewards = [], [], []
    for _ in range(600):
        context = _context(rng)
        action = rng.randrange(3)
        contexts.append(context)
        actions.append(action)
        rewards.append(int(rng.random() < _reward_p(context, action)))
    pipeline, card = train_reward_model(contexts, actions, rewards, 3, experience=experience, created_at=1e9 + seed)
    return dump_bytes(pipeline), msgspec.json.encode(card), card.version


def _upload(client: TestClient, admin: dict[str, str], model: bytes, card: bytes) -> str:
    response = client.post(
        "/v1/models",
        files={"model": ("m.skops", model, "application/octet-stream"), "card": ("c.json", card, "application/json")},
        headers=admin,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["version"])


def _log_traffic(redis_url: str, n: int = 300, seed: int = 4) -> None:
    """Uniformly logged decisions of the bandit ten days ago, and the conversions they led to."""
    rng = random.Random(seed)
    base = time.time() - 10 * DAY

    exposures, events = [], []
    for i in range(n):
        context = _context(rng)
        action = rng.randrange(3)
        ts = base + i * 60.0
        exposures.append(
            Exposure(
                id=new_exposure_id(), ts=ts, visitor_id=f"v{i}", session_id=None,
                channel=str(context["channel"]), entry_id="bannerShipping", variant_entry_id="x",
                experience=EXPERIENCE, variant=action, is_control=action == 0, holdout=False,
                propensity=1 / 3, segments={"price_sensitive": float(context["segment_price_sensitive"])},
                country=str(context["country"]), device="mobile",
            )
        )
        if rng.random() < _reward_p(context, action):
            if i % 2:
                events.append(Conversion(visitor_id=f"v{i}", goal="signup", ts=ts + DAY))
            else:
                events.append(Purchase(visitor_id=f"v{i}", order_id=f"o{i}", value=20.0, ts=ts + DAY))
    store_logs(redis_url, exposures, events)


def test_unknown_version_is_404_and_a_segment_model_is_400(client: TestClient, admin: dict[str, str]) -> None:
    missing = client.post("/v1/models/pol-nope/evaluate", headers=admin)
    assert missing.status_code == 404
    segments = client.get("/v1/models", headers=admin).json()["active"]
    refused = client.post(f"/v1/models/{segments}/evaluate", headers=admin)
    assert refused.status_code == 400
    assert "only bandit policies" in refused.json()["detail"]
    assert client.post("/v1/models/pol-nope/evaluate").status_code == 401


def test_evaluate_a_policy_on_the_logged_traffic(client: TestClient, admin: dict[str, str], redis_url: str) -> None:
    model, card, version = _policy(EXPERIENCE)
    assert _upload(client, admin, model, card) == version

    empty = client.post(f"/v1/models/{version}/evaluate", headers=admin)
    assert empty.status_code == 422
    assert "no logged exposures" in empty.json()["detail"]

    _log_traffic(redis_url)
    response = client.post(f"/v1/models/{version}/evaluate", json={"n_bootstrap": 200}, headers=admin)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["version"] == version and body["experience"] == EXPERIENCE
    assert body["n"] == 300 and body["n_bootstrap"] == 200 and body["clip"] is None
    for name in ("ips", "snips", "dr", "logged"):
        low, high = body[name]["interval"]
        assert low <= body[name]["value"] <= high
    # The learned policy picks the better variant per channel: it beats uniform logging.
    assert body["dr"]["value"] > body["logged"]["value"]
    assert 0 < body["ess"] <= 300

    default = client.post(f"/v1/models/{version}/evaluate", headers=admin)  # no body: defaults
    assert default.status_code == 200 and default.json()["n_bootstrap"] == 500
    clipped = client.post(f"/v1/models/{version}/evaluate", json={"clip": 1.5, "n_bootstrap": 50}, headers=admin)
    assert clipped.status_code == 200 and clipped.json()["clipped"] > 0
    assert client.post(f"/v1/models/{version}/evaluate", json={"n_bootstrap": 2001}, headers=admin).status_code == 400
    assert client.post(f"/v1/models/{version}/evaluate", json={"clip": 0}, headers=admin).status_code == 400


def test_a_policy_for_an_experience_not_in_the_content_is_422(client: TestClient, admin: dict[str, str]) -> None:
    model, card, version = _policy("gone-experience", seed=5)
    _upload(client, admin, model, card)
    response = client.post(f"/v1/models/{version}/evaluate", headers=admin)
    assert response.status_code == 422
    assert "not in the current content" in response.json()["detail"]


def test_evaluate_candidate_directly_on_streams_and_on_a_file(redis_url: str, tmp_path: Path) -> None:
    model, card, version = _policy(EXPERIENCE)
    experience = Experience(
        id="e", key=EXPERIENCE, name="banner", type="bandit", variants=("a", "b"),
        weights=(1 / 3, 1 / 3, 1 / 3), goals=("signup", "purchase"), bandit_method="epsilon_greedy", epsilon=0.3,
    )
    path = tmp_path / "logged.csv"
    rng = random.Random(9)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ts", "channel", "country", "segment_price_sensitive", "action", "propensity", "reward"])
        for i in range(200):
            context = _context(rng)
            action = rng.randrange(3)
            reward = int(rng.random() < _reward_p(context, action))
            writer.writerow([i, context["channel"], context["country"], context["segment_price_sensitive"], action, 1 / 3, reward])

    async def body() -> None:
        redis = Redis.from_url(redis_url)
        registry = ModelRegistry(redis)
        with pytest.raises(UnknownModelVersion):
            await evaluate_candidate(redis, registry, version, experience)
        await registry.register(model, card)
        with pytest.raises(NoLoggedTraffic):
            await evaluate_candidate(redis, registry, version, experience)
        from_file = await evaluate_candidate(None, registry, version, None, data_path=path, n_bootstrap=100)
        assert from_file.n == 200 and from_file.dr.value > from_file.logged.value
        greedy = await evaluate_candidate(None, registry, version, experience, data_path=path, n_bootstrap=100)
        assert greedy.ips.value != from_file.ips.value  # the experience's bandit settings are used
        await redis.aclose()

    asyncio.run(body())
    _log_traffic(redis_url, n=200)

    async def streams() -> None:
        redis = Redis.from_url(redis_url)
        registry = ModelRegistry(redis)
        estimate = await evaluate_candidate(redis, registry, version, experience, n_bootstrap=100)
        assert estimate.n == 200
        segments = await _segment_version(registry)
        with pytest.raises(NotAPolicyError):
            await evaluate_candidate(redis, registry, segments, experience)
        await redis.aclose()

    asyncio.run(streams())


async def _segment_version(registry: ModelRegistry) -> str:
    from personalization.demo.data import DEMO_CSV, read_training_csv
    from personalization.models.segment_model import train_segment_model

    rows, labels, timestamps = read_training_csv(DEMO_CSV)
    pipeline, card = train_segment_model(rows[:600], {k: v[:600] for k, v in labels.items()}, timestamps[:600])
    registered = await registry.register(dump_bytes(pipeline), msgspec.json.encode(card))
    return registered.version

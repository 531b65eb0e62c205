"""Backup and restore (docs/operations.md "Backup and restore"), done exactly as the doc says.

Real traffic through the app into a real Valkey (the embedded one, AOF on, as ``vary serve`` runs it):
personalize (sticky assignments, exposures, profiles), events (counters, conversions), a second model
registered and activated. Then the backup — ``BGSAVE``, wait for it, copy ``<dir>/<dbfilename>`` —
and the restore into a *fresh* server with a fresh data dir: the RDB placed in its ``dir``, started
with ``appendonly no``, ``CONFIG SET appendonly yes`` to write the AOF from the loaded data, then
restarted as ``vary serve`` runs it (AOF on). Every key's value, the results of every experience,
each visitor's assignments (served again: same variants), the profiles and the model registry are
identical.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from litestar.testing import TestClient

from api.app import create_app
from api.embedded.valkey import EmbeddedRedis
from api.settings import Settings
from personalization.demo.data import DEMO_CSV, read_training_csv
from personalization.models.segment_model import save_model, train_segment_model

pytestmark = pytest.mark.slow

ADMIN = {"Authorization": "Bearer backup-admin"}
DELIVERY = {"Authorization": "Bearer backup-delivery"}
EXPERIENCES = ("hero-sale", "banner-shipping-test")
ENTRIES = ["heroHome", "bannerShipping"]
VISITORS = [f"backup-{i}" for i in range(60)]


def _settings(redis_url: str, data_dir: Path) -> Settings:
    return Settings(
        redis_url=redis_url, data_dir=data_dir, delivery_keys=("backup-delivery",), admin_keys=("backup-admin",),
        train_demo_model=False,
    )


def _logical(client: redis.Redis) -> dict[bytes, Any]:
    """Every key's type, value and whether it expires: what "identical data" means, independent of
    the server's internal encoding (a hash's field order may change when an RDB is loaded)."""
    state: dict[bytes, Any] = {}
    for key in client.scan_iter(count=1000):
        ttl = client.pttl(key)
        if 0 <= ttl < 60_000:  # rate-limit windows (1 s) and the like: they may expire while the test runs
            continue
        kind = client.type(key)
        if kind == b"string":
            value: Any = client.get(key)
        elif kind == b"hash":
            value = client.hgetall(key)
        elif kind == b"set":
            value = sorted(client.smembers(key))
        elif kind == b"zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == b"list":
            value = client.lrange(key, 0, -1)
        elif kind == b"stream":
            value = (client.xrange(key), [(g["name"], g["last-delivered-id"], g["pending"])
                                           for g in client.xinfo_groups(key)])
        else:
            raise AssertionError(f"{key!r}: a key type this test does not compare: {kind!r}")
        state[key] = (kind, value, ttl > 0)
    return state


def _backup(client: redis.Redis, into: Path) -> Path:
    """The doc's backup: BGSAVE, wait until it finished (LASTSAVE moved, status ok), copy the file."""
    before = client.lastsave()
    client.bgsave()
    deadline = time.monotonic() + 30
    while True:
        persistence = client.info("persistence")
        if not persistence["rdb_bgsave_in_progress"] and client.lastsave() != before:
            break
        assert time.monotonic() < deadline, "BGSAVE did not finish"
        time.sleep(0.1)
    assert persistence["rdb_last_bgsave_status"] == "ok"
    directory = client.config_get("dir")["dir"]
    name = client.config_get("dbfilename")["dbfilename"]
    into.mkdir(parents=True)
    return Path(shutil.copy2(Path(directory) / name, into / name))


def _restore(backup: Path, data_dir: Path) -> None:
    """The doc's restore into a fresh server: the RDB in its ``dir``, AOF off for the first start,
    then ``CONFIG SET appendonly yes`` (Valkey writes the AOF from what it loaded) and wait for it."""
    (data_dir / "redis").mkdir(parents=True)
    shutil.copy2(backup, data_dir / "redis" / "dump.rdb")
    with EmbeddedRedis(data_dir, appendonly=False) as server:
        client = redis.Redis.from_url(server.url)
        assert client.dbsize() > 0, "the fresh server did not load the RDB"
        client.config_set("appendonly", "yes")
        deadline = time.monotonic() + 30
        while True:
            persistence = client.info("persistence")
            if persistence["aof_enabled"] and not persistence["aof_rewrite_in_progress"] and not persistence.get(
                "aof_rewrite_scheduled"
            ):
                break
            assert time.monotonic() < deadline, "the AOF was not written"
            time.sleep(0.1)
        assert persistence["aof_last_bgrewrite_status"] == "ok"
        client.close()


def _results(client: TestClient) -> dict[str, Any]:
    return {key: client.get(f"/v1/experiences/{key}/results", headers=ADMIN).json() for key in EXPERIENCES}


def _served(client: TestClient) -> dict[str, list[tuple[str | None, int]]]:
    """Each visitor's variants, served again (a sticky assignment decides them)."""
    served = {}
    for visitor in VISITORS:
        body = client.post("/v1/personalize", json={"visitor": {"id": visitor}, "entries": ENTRIES}, headers=DELIVERY)
        assert body.status_code == 200, body.text
        served[visitor] = [(e["experience"], e["variant"]) for e in body.json()["entries"]]
    return served


@pytest.fixture
def source(tmp_path: Path, model_dir: Path) -> Iterator[tuple[EmbeddedRedis, Path]]:
    data_dir = tmp_path / "source"
    shutil.copytree(model_dir, data_dir)
    server = EmbeddedRedis(data_dir)  # AOF on, as `vary serve` runs it
    server.start()
    try:
        yield server, data_dir
    finally:
        server.stop()


def test_a_backup_restored_into_a_fresh_server_gives_identical_results_assignments_profiles_and_models(
    source: tuple[EmbeddedRedis, Path], tmp_path: Path
) -> None:
    server, data_dir = source
    rows, labels, timestamps = read_training_csv(DEMO_CSV)
    pipeline, card = train_segment_model(rows, labels, timestamps, random_state=3, created_at=2_000_000_000.0)
    save_model(pipeline, card, tmp_path / "second-model")

    with TestClient(create_app(_settings(server.url, data_dir))) as app:
        served = _served(app)
        for i, visitor in enumerate(VISITORS):
            events: list[dict[str, Any]] = [
                {"type": "page_view", "visitor_id": visitor, "session_id": f"s-{visitor}", "channel": "web"}
            ]
            if i % 3 == 0:
                events.append({"type": "conversion", "visitor_id": visitor, "goal": "purchase", "event_id": f"c-{i}"})
            answer = app.post("/v1/events", json={"events": events}, headers=DELIVERY)
            assert answer.status_code == 202 and answer.json()["accepted"] == len(events), answer.text
        model = (tmp_path / "second-model" / f"{card.version}.skops").read_bytes()
        card_bytes = (tmp_path / "second-model" / f"{card.version}.json").read_bytes()
        registered = app.post(
            "/v1/models",
            files={"model": ("model.skops", model, "application/octet-stream"),
                   "card": ("card.json", card_bytes, "application/json")},
            headers=ADMIN,
        )
        assert registered.status_code == 201, registered.text
        assert app.put("/v1/models/active", json={"version": card.version}, headers=ADMIN).status_code == 200

        entered = sum(1 for decided in served.values() for experience, _ in decided if experience in EXPERIENCES)
        assert entered >= len(VISITORS) // 2  # audiences leave some entries without an experience
        deadline = time.monotonic() + 30
        previous: dict[str, Any] | None = None
        while True:  # the in-process aggregator counts every exposure and conversion; then nothing moves
            results = _results(app)
            counted = sum(sum(r["visitors"]) + r.get("holdout_visitors", 0) for r in results.values())
            conversions = sum(v["conversions"] for r in results.values() for v in r["goals"]["purchase"]["variants"])
            if counted == entered and conversions > 0 and results == previous:
                break
            previous = results
            assert time.monotonic() < deadline, f"not aggregated: {counted} visitors, {conversions} conversions"
            time.sleep(0.5)
        models = app.get("/v1/models", headers=ADMIN).json()
        assert models["active"] == card.version and len(models["models"]) == 2
    assert all(len(s) == len(ENTRIES) for s in served.values())

    original = redis.Redis.from_url(server.url)
    before = _logical(original)
    assert any(b":p" in key for key in before) and any(b"exposures" in key for key in before)
    backup = _backup(original, tmp_path / "backups")
    original.close()
    server.stop()  # the source is gone: only the file remains

    fresh_dir = tmp_path / "restored"
    _restore(backup, fresh_dir)
    (fresh_dir / "models").mkdir()  # a fresh data dir: no model files, the registry is in Redis
    with EmbeddedRedis(fresh_dir) as restored:  # AOF on, loaded from the AOF written at restore
        client = redis.Redis.from_url(restored.url)
        assert _logical(client) == before
        client.close()
        with TestClient(create_app(_settings(restored.url, fresh_dir))) as app:
            assert _results(app) == results
            assert app.get("/v1/models", headers=ADMIN).json() == models
            assert _served(app) == served

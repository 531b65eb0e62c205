"""A worker migrates stored data at start (``Runtime.start`` → ``personalization/store/migrate.py``):
a profile written by the previous version under the raw-id key is served after the upgrade."""

from __future__ import annotations

import redis
from litestar.testing import TestClient

from api.app import create_app
from api.settings import Settings
from personalization.store.keys import SCHEMA_KEY, profile_key


def test_the_app_migrates_schema_1_keys_before_serving(settings: Settings, sync_redis: redis.Redis) -> None:
    sync_redis.hset("vary:v:{}lead-brace}:p", mapping={"visits": 4, "a:hero": 1})  # the old builder's string
    with TestClient(create_app(settings)):
        assert sync_redis.get(SCHEMA_KEY) == "2"
        assert sync_redis.hgetall(profile_key("}lead-brace")) == {"visits": "4", "a:hero": "1"}
        assert not sync_redis.exists("vary:v:{}lead-brace}:p")

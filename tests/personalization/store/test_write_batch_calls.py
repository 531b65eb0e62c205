"""write_batch v3 (one HMGET and one HSET per run of a visitor's profile hash) against v2 (a call per pair).

Issue 22: v3 cuts the script's nested Redis calls per request from ~7.5 to 2 (and counts repeated stamps
once); it must leave Redis exactly as v2 did. v2's text is kept under ``data/`` (``write_batch_v2.lua`` and
the ``exposure_count_v2.lua`` it was prepended with). Both run the same randomized batches against the real
Valkey, v2 in db 0 and v3 in db 1: runs of one profile hash, a field twice in a run, counters stored from an
older, the same or a newer day and week, malformed stored values and stamps, assignments already present,
bounded and unbounded streams, a replayed batch. Every key, hash (in HGETALL order), stream entry's fields
and return value must be the same. The cluster's lone-counter script (``COUNT_ONE``) is compared the same way.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from personalization.store.exposures import COUNT_ONE, WRITE_BATCH, WRITE_BATCH_SHA
from personalization.store.keys import EXPOSURES, batch_marker, profile_key

DATA = Path(__file__).parent / "data"
OLD_COUNT = (DATA / "exposure_count_v2.lua").read_text()
OLD_WRITE_BATCH = OLD_COUNT + (DATA / "write_batch_v2.lua").read_text()
OLD_COUNT_ONE = OLD_COUNT + (Path(__file__).parents[3] / "personalization/store/scripts/exposure_count_one.lua").read_text()

DAY, WEEK = 20_000, 2_857  # the batch's "today"; stored values and stamps fall around it
BAD_STAMPS = ["", "x", "1", "1 2 3", "1  2", "-1 2", "1.5 2", " 1 2", "1 2 "]
BAD_STORED = ["", "garbage", "1 2 3", "1 x 2 3 4 5", "1 2 3 4 5 6", "0x10 1 2 3 4", "1.5 2 3 4 5", "  20000 1 2857 1 1  "]


def _stamp(rng: random.Random) -> str:
    if rng.random() < 0.08:
        return rng.choice(BAD_STAMPS)
    return f"{DAY + rng.choice((-1, 0, 0, 0, 1))} {WEEK + rng.choice((-1, 0, 0, 0, 1))}"


def _stored_counter(rng: random.Random) -> str:
    if rng.random() < 0.2:
        return rng.choice(BAD_STORED)
    d, w = DAY + rng.choice((-2, -1, 0, 1)), WEEK + rng.choice((-1, 0, 1))
    return f"{d} {rng.randint(0, 5)} {w} {rng.randint(0, 9)} {rng.randint(0, 40)}"


def _seed_profiles(rng: random.Random, visitors: list[str], experiences: list[str]) -> dict[str, dict[str, str]]:
    """What the profile hashes hold before the batches: counters, assignments, other fields, or nothing."""
    profiles: dict[str, dict[str, str]] = {}
    for visitor in visitors:
        if rng.random() < 0.3:
            continue  # a new visitor: no hash at all
        fields = {"t:country": "DE"} if rng.random() < 0.5 else {}
        for experience in experiences:
            if rng.random() < 0.4:
                fields[f"f:{experience}"] = _stored_counter(rng)
            if rng.random() < 0.3:
                fields[f"a:{experience}"] = rng.choice(("0", "1", "2", ""))
        if fields:
            profiles[profile_key(visitor)] = fields
    return profiles


def _batch(rng: random.Random, serial: int, visitors: list[str], experiences: list[str]) -> tuple[object, ...]:
    """One script call as ExposureWriter._send_prepared lays it out: per request its exposures' counters,
    then its assignments; a visitor's requests are sometimes adjacent (one run, fields repeated)."""
    payloads: list[str] = []
    keys: list[str] = []
    pairs: list[str] = []
    visitor = rng.choice(visitors)
    for _ in range(rng.randint(0, 12)):
        if rng.random() < 0.6:
            visitor = rng.choice(visitors)  # else: the same visitor again, adjacent
        key, stamp = profile_key(visitor), _stamp(rng)
        shown = rng.sample(experiences, rng.randint(0, min(4, len(experiences))))
        if rng.random() < 0.15 and shown:
            shown.append(shown[0])  # the same experience twice in one request
        for experience in shown:
            payloads.append(f'{{"v":"{visitor}","x":"{experience}"}}')
            if rng.random() < 0.9:
                keys.append(key)
                pairs += [f"f:{experience}", stamp if rng.random() < 0.9 else _stamp(rng)]
        for experience in shown:
            if rng.random() < 0.6:
                keys.append(key)
                pairs += [f"a:{experience}", str(rng.randint(0, 2))]
        payloads += ['{"anonymous":true}'] * rng.randint(0, 1)
    maxlen = rng.choice(("", "", "5", "30"))
    marker = batch_marker(EXPOSURES, f"b{serial}")
    return (2 + len(keys), EXPOSURES, marker, *keys, 86_400, maxlen, len(payloads), *payloads, *pairs)


def _state(client: redis.Redis) -> dict[bytes, object]:
    """Every key's content: hashes as HGETALL pairs in order, streams as their entries' fields."""
    state: dict[bytes, object] = {}
    for key in sorted(client.scan_iter(count=1000)):
        kind = client.type(key)
        if kind == b"hash":
            state[key] = list(client.hgetall(key).items())  # (field, value) pairs in HGETALL order
        elif kind == b"stream":
            state[key] = [fields for _, fields in client.xrange(key)]
        else:
            state[key] = (kind, client.get(key), client.ttl(key) > 0)
    return state


@pytest.fixture
def dbs(redis_url: str) -> Iterator[tuple[redis.Redis, redis.Redis]]:
    """db 0 for v2, db 1 for v3 (the fixture flushes all dbs before each test)."""
    old, new = redis.Redis.from_url(redis_url, db=0), redis.Redis.from_url(redis_url, db=1)
    try:
        yield old, new
    finally:
        old.close()
        new.close()


def test_v3_is_a_new_script_and_v2_is_the_previous_text() -> None:
    assert WRITE_BATCH.count("-- vary write_batch v3:") == 1 and "-- vary write_batch v2:" in OLD_WRITE_BATCH
    assert WRITE_BATCH_SHA == hashlib.sha1(WRITE_BATCH.encode()).hexdigest() != hashlib.sha1(OLD_WRITE_BATCH.encode()).hexdigest()
    assert WRITE_BATCH.count("'v', '2'") == OLD_WRITE_BATCH.count("'v', '2'") == 2  # record format 2, unchanged


@pytest.mark.parametrize("seed", range(60))
def test_v3_leaves_redis_as_v2_did(dbs: tuple[redis.Redis, redis.Redis], seed: int) -> None:
    old, new = dbs
    rng = random.Random(seed)
    visitors = [f"visitor-{seed}-{i}" for i in range(rng.randint(1, 6))]
    experiences = [f"exp-{i}" for i in range(rng.randint(1, 5))]
    for key, fields in _seed_profiles(rng, visitors, experiences).items():
        old.hset(key, mapping=fields)
        new.hset(key, mapping=fields)
    old_sha, new_sha = old.script_load(OLD_WRITE_BATCH), new.script_load(WRITE_BATCH)
    calls = [_batch(rng, serial, visitors, experiences) for serial in range(rng.randint(2, 6))]
    calls.append(rng.choice(calls))  # a replayed batch: -1 from both, nothing written
    results = [(old.evalsha(old_sha, *call), new.evalsha(new_sha, *call)) for call in calls]  # type: ignore[arg-type]
    assert [r[0] for r in results] == [r[1] for r in results]
    assert results[-1] == (-1, -1)
    assert _state(old) == _state(new)


def test_runs_longer_than_one_hmget_and_one_field_many_times(dbs: tuple[redis.Redis, redis.Redis]) -> None:
    """A run past 256 pairs is split (Lua's unpack limit), and a counter 300 times in one run counts 300."""
    old, new = dbs
    key = profile_key("busy")
    pairs = []
    for i in range(300):
        pairs += ["f:exp", f"{DAY} {WEEK}", f"a:exp-{i % 7}", str(i % 3)]
    call = (2 + 600, EXPOSURES, batch_marker(EXPOSURES, "long"), *[key] * 600, 60, "", 0, *pairs)
    assert old.evalsha(old.script_load(OLD_WRITE_BATCH), *call) == new.evalsha(new.script_load(WRITE_BATCH), *call) == 0
    assert _state(old) == _state(new)
    assert new.hget(key, "f:exp") == f"{DAY} 300 {WEEK} 300 300".encode() and new.hget(key, "a:exp-1") == b"1"


def test_a_lone_counter_counts_as_before(dbs: tuple[redis.Redis, redis.Redis]) -> None:
    """COUNT_ONE (a cluster's counter, outside the batch) over the same stored values and stamps."""
    old, new = dbs
    rng = random.Random(7)
    old_sha, new_sha = old.script_load(OLD_COUNT_ONE), new.script_load(COUNT_ONE)
    for i in range(400):
        key = profile_key(f"lone-{i % 40}")
        if rng.random() < 0.1:
            stored = _stored_counter(rng)
            old.hset(key, "f:exp", stored)
            new.hset(key, "f:exp", stored)
        stamp = _stamp(rng)
        assert old.evalsha(old_sha, 1, key, "f:exp", stamp) == new.evalsha(new_sha, 1, key, "f:exp", stamp) == 1
    assert _state(old) == _state(new)

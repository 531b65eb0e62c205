"""A rolling upgrade: the previous version's and this version's exposure records in one Redis, and
events a newer version wrote read by this version's aggregator.

The previous version (record format 1, :mod:`personalization.store.formats`) wrote every field of an
exposure and an entry with only ``data``; this one leaves default-valued fields out and adds
``v: 2``. Both kinds of worker run side by side while a deployment rolls, so:

* records of both formats in one stream are counted alike by the aggregator (results),
* the previous version's reader (its ``Exposure`` Struct, copied below as it was) decodes this
  version's records to the same values,
* the previous version's batch script and this one's coexist in Redis's script cache (each worker
  calls its own by SHA), and each writes its own format.

Events go the other way round: while the deployment rolls, *this* version's aggregator reads events
the *next* version's API wrote — a field this version does not know, a kind it does not know. The
known fields count; the unknown kind is skipped and counted apart, not poison
(:mod:`personalization.measurement.stored_events`); the API's own input check stays strict.

``OLD_RECORD`` is the exact bytes format 1 wrote — captured with the previous encoder, kept as a
literal — with only the values (visitor, id, time) substituted per record.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis
from litestar.testing import TestClient
from redis.asyncio import Redis as AsyncRedis

from api.app import create_app
from api.settings import Settings
from personalization.measurement.aggregation import Aggregator
from personalization.measurement.events import EVENT_DECODER, EVENT_ENCODER, EVENT_STREAM, Conversion, decode_events
from personalization.measurement.stored_events import STORED_EVENT_DECODER, UnknownEventKind
from personalization.store.exposures import EXPOSURE_STREAM, WRITE_BATCH
from personalization.store.formats import EXPOSURE_FORMAT, record_format
from personalization.store.keys import agg_key
from personalization.types import EXPOSURE_DECODER, EXPOSURE_ENCODER, Exposure

pytestmark = pytest.mark.slow

ADMIN = {"Authorization": "Bearer mixed-admin"}
DELIVERY = {"Authorization": "Bearer mixed-delivery"}
EXPERIENCE = "hero-sale"
ENTRIES = ["heroHome", "bannerShipping", "bannerNewsletter"]

#: Format 1, byte for byte as the previous version's ``EXPOSURE_ENCODER`` wrote a hero-sale exposure.
OLD_RECORD = (
    b'{"entry_id":"heroHome","experience":"hero-sale","variant":1,"variant_entry_id":"heroHomeSale",'
    b'"is_control":false,"holdout":false,"propensity":0.45,"id":"0a1b2c3d4e5f1","ts":1700000000.25,'
    b'"visitor_id":"old-0","session_id":"old-s-0","channel":"web","model_version":"seg-demo",'
    b'"segments":{"price_sensitive":0.8},"country":null,"device":null,"phase":1,"shadow_version":null,'
    b'"shadow_variant":null,"shadow_propensity":null}'
)
#: The previous version's batch script: this one's without its version header and without ``v``.
OLD_WRITE_BATCH = WRITE_BATCH.replace(", 'v', '2'", "").replace("-- vary write_batch v3", "--")


class OldServedVariant(msgspec.Struct, frozen=True, kw_only=True):
    """The previous version's ``ServedVariant``, as it was."""

    entry_id: str
    experience: str | None
    variant: int
    variant_entry_id: str
    is_control: bool
    holdout: bool
    propensity: float


class OldExposure(OldServedVariant, frozen=True, kw_only=True):
    """The previous version's ``Exposure``, as it was (no ``omit_defaults``)."""

    id: str
    ts: float
    visitor_id: str | None
    session_id: str | None
    channel: str
    model_version: str | None = None
    segments: dict[str, float] = {}
    country: str | None = None
    device: str | None = None
    phase: int = 1
    shadow_version: str | None = None
    shadow_variant: int | None = None
    shadow_propensity: float | None = None


OLD_ENCODER = msgspec.json.Encoder()
OLD_DECODER = msgspec.json.Decoder(OldExposure)


def _old_record(i: int, ts: float) -> bytes:
    return (
        OLD_RECORD.replace(b'"old-0"', f'"old-{i}"'.encode())
        .replace(b'"old-s-0"', f'"old-s-{i}"'.encode())
        .replace(b'"0a1b2c3d4e5f1"', f'"0a1b2c3d4e{i:04x}"'.encode())
        .replace(b"1700000000.25", repr(ts).encode())
    )


def test_the_literal_is_what_the_old_struct_writes_and_this_version_writes_less() -> None:
    old = OLD_DECODER.decode(OLD_RECORD)
    assert OLD_ENCODER.encode(old) == OLD_RECORD  # the copied Struct is the previous version's, exactly
    new = EXPOSURE_DECODER.decode(OLD_RECORD)  # format 1 read by this version
    assert msgspec.structs.asdict(new) == msgspec.structs.asdict(old)
    compact = EXPOSURE_ENCODER.encode(new)
    assert b'"country"' not in compact and b'"phase"' not in compact and b'"shadow_' not in compact
    assert len(compact) < len(OLD_RECORD) - 100
    assert msgspec.structs.asdict(OLD_DECODER.decode(compact)) == msgspec.structs.asdict(old)  # format 2, old reader
    served = msgspec.structs.replace(new, phase=3, country="DE", shadow_version="pol-2", shadow_variant=0,
                                     shadow_propensity=0.25)
    assert msgspec.structs.asdict(OLD_DECODER.decode(EXPOSURE_ENCODER.encode(served))) == msgspec.structs.asdict(served)


def test_records_of_both_formats_in_one_redis_are_counted_and_read_by_both_readers(
    redis_url: str, model_dir: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(model_dir, data_dir)
    settings = Settings(redis_url=redis_url, data_dir=data_dir, delivery_keys=("mixed-delivery",),
                        admin_keys=("mixed-admin",), train_demo_model=False)
    store = redis.Redis.from_url(redis_url)
    old_count = 25
    with TestClient(create_app(settings)) as app:
        # The previous version's worker: its own script (by its own SHA), its own bytes.
        old_sha = store.script_load(OLD_WRITE_BATCH)
        now = time.time()
        payloads = [_old_record(i, now + i / 1000) for i in range(old_count)]
        written = store.evalsha(old_sha, 2, EXPOSURE_STREAM, "{vary:exposures}:batch:old-worker-1", 86_400, "",
                                len(payloads), *payloads)
        assert written == old_count
        # This version's worker, through the API.
        entered: Counter[str] = Counter()
        for i in range(30):
            answer = app.post("/v1/personalize", json={"visitor": {"id": f"new-{i}"}, "entries": ENTRIES},
                              headers=DELIVERY)
            assert answer.status_code == 200, answer.text
            entered.update(e["experience"] for e in answer.json()["entries"] if e["experience"])
        assert entered, "the demo served no experience"
        expected = {EXPERIENCE: old_count + entered[EXPERIENCE], **{k: n for k, n in entered.items() if k != EXPERIENCE}}
        deadline = time.monotonic() + 30
        while True:
            counted = {}
            for key in expected:
                body: dict[str, Any] = app.get(f"/v1/experiences/{key}/results", headers=ADMIN).json()
                counted[key] = sum(body["visitors"]) + body["holdout_visitors"]
            if counted == expected:
                break
            assert time.monotonic() < deadline, f"counted {counted}, expected {expected} ({old_count} old records)"
            time.sleep(0.2)
        new_sha = store.script_load(WRITE_BATCH)
        assert new_sha != old_sha and store.script_exists(old_sha, new_sha) == [True, True]

    entries = store.xrange(EXPOSURE_STREAM)
    store.close()
    formats = [record_format(fields) for _, fields in entries]
    assert formats.count(1) == old_count and formats.count(EXPOSURE_FORMAT) == len(entries) - old_count > 0
    for _, fields in entries:
        data = fields[b"data"]
        new_view = msgspec.structs.asdict(EXPOSURE_DECODER.decode(data))
        old_view = msgspec.structs.asdict(OLD_DECODER.decode(data))  # the previous version reading it
        assert old_view == new_view
        if record_format(fields) == EXPOSURE_FORMAT:
            assert b'"shadow_version"' not in data  # format 2 leaves defaults out
    visitors = {EXPOSURE_DECODER.decode(f[b"data"]).visitor_id for _, f in entries}
    assert {f"old-{i}" for i in range(old_count)} <= visitors and "new-0" in visitors
    assert isinstance(EXPOSURE_DECODER.decode(entries[0][1][b"data"]), Exposure)


#: Events as a *newer* version's API would store them: a conversion with a field this version does
#: not have, and a kind this version does not know.
NEWER_CONVERSION = b'{"type":"conversion","visitor_id":"next-0","goal":"signup","ts":%r,"coupon":"SPRING"}'
NEWER_KIND = b'{"type":"scroll_depth","visitor_id":"next-1","ts":%r,"depth":0.75}'


def test_events_a_newer_version_wrote_are_counted_or_skipped_by_this_aggregator(redis_url: str, sync_redis) -> None:  # noqa: ANN001
    t0 = time.time() - 60
    exposures = [
        Exposure(id=f"x-next-{i}", ts=t0 + i, visitor_id=f"next-{i}", session_id=None, channel="web",
                 entry_id="heroHome", variant_entry_id="heroHomeSale", experience=EXPERIENCE, variant=1,
                 is_control=False, holdout=False, propensity=0.5)
        for i in range(3)
    ]
    known = Conversion(visitor_id="next-2", goal="signup", ts=t0 + 30)
    newer = NEWER_CONVERSION % (t0 + 20)

    # The API's input check is strict: the same bytes are refused at the door, naming the field.
    with pytest.raises(msgspec.ValidationError, match="coupon"):
        EVENT_DECODER.decode(newer)
    _, refused = decode_events([msgspec.json.decode(newer)])
    assert [e.index for e in refused] == [0] and "unknown field `coupon`" in refused[0].message
    # The stored-record reader takes what it knows, and names the unknown kind.
    assert STORED_EVENT_DECODER.decode(newer) == Conversion(visitor_id="next-0", goal="signup", ts=t0 + 20)
    with pytest.raises(UnknownEventKind) as unknown:
        STORED_EVENT_DECODER.decode(NEWER_KIND % (t0 + 25))
    assert unknown.value.kind == "scroll_depth"

    async def body() -> Aggregator:
        client = AsyncRedis.from_url(redis_url)
        try:
            pipe = client.pipeline(transaction=False)
            for x in exposures:
                pipe.xadd(EXPOSURE_STREAM, {"data": EXPOSURE_ENCODER.encode(x)})
            pipe.xadd(EVENT_STREAM, {"data": newer})
            pipe.xadd(EVENT_STREAM, {"data": NEWER_KIND % (t0 + 25)})
            pipe.xadd(EVENT_STREAM, {"data": EVENT_ENCODER.encode(known)})
            await pipe.execute()
            aggregator = Aggregator(client, consumer="old-aggregator", exposure_grace_s=0.0)
            total = 0
            while (got := await aggregator.run_once()) or aggregator.held:
                total += got
            assert total == len(exposures) + 3
            assert (await client.xpending(EVENT_STREAM, aggregator.group))["pending"] == 0
            return aggregator
        finally:
            await client.aclose()

    aggregator = asyncio.run(body())
    assert aggregator.unknown_kinds == 1  # skipped and counted ...
    assert aggregator.skipped == aggregator.poisoned == aggregator.failed == 0  # ... not poison
    overall = sync_redis.hgetall(agg_key(EXPERIENCE, "all"))
    assert int(overall["1:visitors"]) == len(exposures)
    assert int(overall["1:conv:signup"]) == 2  # the newer conversion and this version's

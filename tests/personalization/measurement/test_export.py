"""``export_streams`` against the real Valkey server: date partitions, row counts, schema, bounds."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from redis.asyncio import Redis

from personalization.measurement.events import (
    EVENT_ENCODER,
    EVENT_STREAM,
    Conversion,
    Event,
    Identify,
    PageView,
    Purchase,
    Survey,
    Task,
)
from personalization.measurement.export import (
    ExportReport,
    event_schema,
    export_streams,
    exposure_schema,
)
from personalization.store.exposures import EXPOSURE_STREAM
from personalization.types import EXPOSURE_ENCODER, Exposure

D1, D2, D3 = date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)


def _ts(day: date, hour: float) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() + hour * 3600.0


def _exposure(i: int, ts: float, *, segments: dict[str, float] | None = None) -> Exposure:
    return Exposure(
        id=f"x{i}", ts=ts, visitor_id=None if i % 10 == 9 else f"v{i}", session_id=f"s{i}", channel="web",
        entry_id="bannerShipping", variant_entry_id="bannerShippingFree", experience="banner-shipping-test",
        variant=i % 3, is_control=i % 3 == 0, holdout=False, propensity=0.33, model_version="seg-1",
        segments={"price_sensitive": 0.8, "loyal": 0.1} if segments is None else segments,
        country="US", device="mobile",
    )


async def _push(redis: Redis, exposures: list[Exposure], events: list[Event]) -> None:
    """XADD with stream ids at each record's ts, as if written when it happened."""
    for seq, x in enumerate(exposures):
        await redis.xadd(EXPOSURE_STREAM, {"data": EXPOSURE_ENCODER.encode(x)}, id=f"{int(x.ts * 1000)}-{seq + 1}")
    for seq, e in enumerate(events):
        assert e.ts is not None
        await redis.xadd(EVENT_STREAM, {"data": EVENT_ENCODER.encode(e)}, id=f"{int(e.ts * 1000)}-{seq + 1}")


def _export(redis_url: str, out: Path, since: date, until: date, **kw: int) -> ExportReport:
    async def run() -> ExportReport:
        redis = Redis.from_url(redis_url)
        try:
            return await export_streams(redis, out, since, until, **kw)
        finally:
            await redis.aclose()

    return asyncio.run(run())


def _seed(redis_url: str) -> tuple[list[Exposure], list[Event]]:
    # 5 exposures on D1 (the last one a second before midnight), 3 on D2, 2 on D3.
    times = [_ts(D1, h) for h in (1, 2, 3, 4, 23.9997)] + [_ts(D2, h) for h in (0, 5, 6)] + [_ts(D3, h) for h in (1, 2)]
    exposures = [_exposure(i, ts) for i, ts in enumerate(times)]
    events: list[Event] = [
        PageView(visitor_id="v0", ts=_ts(D1, 1.5), touchpoint="home", page="/", channel="web"),
        Conversion(visitor_id="v0", ts=_ts(D1, 2.0), goal="signup"),
        Purchase(visitor_id="v1", ts=_ts(D1, 3.0), order_id="o1", value=42.5, currency="USD"),
        Task(visitor_id="v2", ts=_ts(D2, 1.0), name="checkout", success=True, duration_ms=91_000),
        Survey(visitor_id="v2", ts=_ts(D2, 1.1), metric="sus", answers=[4, 2, 4, 2, 4, 2, 4, 2, 4, 2]),
        Survey(visitor_id="v3", ts=_ts(D2, 1.2), metric="nps", score=9),
        Identify(visitor_id="v3", ts=_ts(D3, 0.5), traits={"plan": "pro", "seats": 3.0, "trial": False}),
    ]

    async def push() -> None:
        redis = Redis.from_url(redis_url)
        try:
            await _push(redis, exposures, events)
        finally:
            await redis.aclose()

    asyncio.run(push())
    return exposures, events


def test_partitions_by_utc_date_with_row_counts(redis_url: str, tmp_path: Path) -> None:
    _seed(redis_url)
    report = _export(redis_url, tmp_path, D1, D3)
    assert report.exposures.rows_by_date == {D1: 5, D2: 3, D3: 2}
    assert report.events.rows_by_date == {D1: 3, D2: 3, D3: 1}
    assert report.skipped == 0
    for table, days in (("exposures", (D1, D2, D3)), ("events", (D1, D2, D3))):
        for day in days:
            assert (tmp_path / table / f"date={day.isoformat()}" / "part-0.parquet").is_file()
    assert not list(tmp_path.rglob("*.inprogress"))

    exposures = ds.dataset(tmp_path / "exposures", format="parquet", partitioning="hive").to_table()
    assert exposures.num_rows == 10
    per_day = {str(d): n for d, n in zip(*_counts(exposures, "date"))}
    assert per_day == {"2026-03-01": 5, "2026-03-02": 3, "2026-03-03": 2}
    # The partition value agrees with each row's own ts (UTC), including a second before midnight.
    for ts, day in zip(exposures.column("ts").to_pylist(), exposures.column("date").to_pylist()):
        assert ts.date().isoformat() == str(day)


def _counts(table: pa.Table, column: str) -> tuple[list[object], list[int]]:
    grouped = table.group_by(column).aggregate([([], "count_all")]).sort_by(column)
    return grouped.column(column).to_pylist(), grouped.column("count_all").to_pylist()


def test_schema_types_and_values(redis_url: str, tmp_path: Path) -> None:
    exposures_in, _ = _seed(redis_url)
    _export(redis_url, tmp_path, D1, D3)
    x = pq.read_table(tmp_path / "exposures" / "date=2026-03-01" / "part-0.parquet")
    assert x.schema.equals(exposure_schema())
    assert x.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert x.schema.field("segments").type == pa.map_(pa.string(), pa.float64())
    assert x.schema.field("variant").type == pa.int64()
    assert x.schema.field("is_control").type == pa.bool_()
    assert x.column_names == list(Exposure.__struct_fields__)  # every Exposure field, in order
    first = x.to_pylist()[0]
    assert first["id"] == "x0" and first["visitor_id"] == "v0" and first["variant"] == 0
    assert dict(first["segments"]) == {"price_sensitive": 0.8, "loyal": 0.1}
    assert first["ts"].timestamp() == pytest.approx(exposures_in[0].ts, abs=1e-6)
    anonymous = pq.read_table(tmp_path / "exposures" / "date=2026-03-03" / "part-0.parquet").to_pylist()[-1]
    assert anonymous["id"] == "x9" and anonymous["visitor_id"] is None  # no analytics consent stays null

    events = ds.dataset(tmp_path / "events", format="parquet", partitioning="hive").to_table()
    assert events.schema.field("type").type == pa.string()
    schema = event_schema()
    for name in ("type", "visitor_id", "ts", "goal", "value", "order_id", "success", "duration_ms",
                 "metric", "score", "answers", "traits", "page", "target", "problem"):
        assert name in schema.names, name
    assert schema.field("value").type == pa.float64()
    assert schema.field("success").type == pa.bool_()
    assert schema.field("duration_ms").type == pa.int64()
    assert schema.field("answers").type == pa.string() and schema.field("traits").type == pa.string()
    rows = {r["type"] + (r["metric"] or ""): r for r in events.to_pylist()}
    assert set(rows) == {"page_view", "conversion", "purchase", "task", "surveysus", "surveynps", "identify"}
    assert rows["page_view"]["page"] == "/" and rows["page_view"]["goal"] is None
    assert rows["purchase"]["value"] == 42.5 and rows["purchase"]["order_id"] == "o1"
    assert rows["task"]["success"] is True and rows["task"]["duration_ms"] == 91_000
    assert json.loads(rows["surveysus"]["answers"]) == [4, 2, 4, 2, 4, 2, 4, 2, 4, 2]
    assert rows["surveynps"]["score"] == 9.0 and rows["surveynps"]["answers"] is None
    assert json.loads(rows["identify"]["traits"]) == {"plan": "pro", "seats": 3.0, "trial": False}


def test_range_bounds_and_empty_range(redis_url: str, tmp_path: Path) -> None:
    _seed(redis_url)
    only_d2 = _export(redis_url, tmp_path / "d2", D2, D2)
    assert only_d2.exposures.rows == 3 and only_d2.events.rows == 3
    assert sorted(p.name for p in (tmp_path / "d2" / "exposures").iterdir()) == ["date=2026-03-02"]

    empty = _export(redis_url, tmp_path / "empty", date(2025, 1, 1), date(2025, 12, 31))
    assert empty.exposures.rows == 0 and empty.events.rows == 0
    assert empty.exposures.files == [] and empty.events.files == []
    assert not (tmp_path / "empty").exists() or not list((tmp_path / "empty").rglob("*.parquet"))

    with pytest.raises(ValueError, match="after"):
        _export(redis_url, tmp_path / "bad", D2, D1)


def test_row_group_per_chunk_and_bounded_open_files(redis_url: str, tmp_path: Path) -> None:
    """Small chunks give one row group per chunk; with one file open at a time, a date that comes back
    after its file was closed continues in part-1 — and readers still see every row once."""
    day_a = [_exposure(i, _ts(D1, 1 + i / 100)) for i in range(7)]
    back_to_a = [_exposure(100, _ts(D1, 5)), _exposure(101, _ts(D2, 1)), _exposure(102, _ts(D1, 6))]

    async def push() -> None:
        redis = Redis.from_url(redis_url)
        try:
            await _push(redis, day_a, [])
            # written later than their ts (stream ids increase): D1, D2, then D1 again
            for seq, x in enumerate(back_to_a):
                await redis.xadd(EXPOSURE_STREAM, {"data": EXPOSURE_ENCODER.encode(x)},
                                 id=f"{int(_ts(D2, 2) * 1000)}-{seq + 1}")
        finally:
            await redis.aclose()

    asyncio.run(push())
    report = _export(redis_url, tmp_path, D1, D2, chunk=3, max_open=1)
    assert report.exposures.rows_by_date == {D1: 9, D2: 1}
    d1 = tmp_path / "exposures" / "date=2026-03-01"
    parts = sorted(p.name for p in d1.iterdir())
    assert parts == ["part-0.parquet", "part-1.parquet"]
    assert pq.ParquetFile(d1 / "part-0.parquet").metadata.num_row_groups == 3  # chunks of 3, 3 and 2 rows of D1
    table = ds.dataset(tmp_path / "exposures", format="parquet", partitioning="hive").to_table()
    assert sorted(table.column("id").to_pylist()) == sorted(x.id for x in day_a + back_to_a)


def test_re_export_replaces_the_range_and_keeps_other_dates(redis_url: str, tmp_path: Path) -> None:
    _seed(redis_url)
    _export(redis_url, tmp_path, D1, D3)
    stale = tmp_path / "exposures" / "date=2026-03-02" / "part-7.parquet"
    stale.write_bytes((tmp_path / "exposures" / "date=2026-03-02" / "part-0.parquet").read_bytes())
    again = _export(redis_url, tmp_path, D2, D2)
    assert again.replaced == 3  # D2's exposure part-0 + the stale part-7, and D2's event part-0
    assert not stale.exists()
    table = ds.dataset(tmp_path / "exposures", format="parquet", partitioning="hive").to_table()
    assert table.num_rows == 10  # D1 and D3 kept, D2 rewritten once

    async def trim() -> None:
        redis = Redis.from_url(redis_url)
        try:
            await redis.delete(EXPOSURE_STREAM, EVENT_STREAM)
        finally:
            await redis.aclose()

    asyncio.run(trim())
    emptied = _export(redis_url, tmp_path, D3, D3)
    assert emptied.replaced == 2 and emptied.exposures.rows == 0
    assert not (tmp_path / "exposures" / "date=2026-03-03").exists()
    assert (tmp_path / "exposures" / "date=2026-03-01" / "part-0.parquet").exists()


def test_erase_rewrites_exports_here_and_in_noted_directories(redis_url: str, tmp_path: Path) -> None:
    """#17.4: the exported files kept an erased visitor's rows; now every file holding them is
    rewritten without them (a date left empty goes), in ``<data dir>/exports`` and in every
    directory ``vary export --out`` noted, and the other visitors' rows stay as they were."""
    from personalization.measurement.export_erasure import (
        EXPORT_DIRS_FILE,
        erase_from_exports,
        export_roots,
        remember_export_dir,
    )

    _seed(redis_url)
    data_dir, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    _export(redis_url, data_dir / "exports", D1, D3)
    _export(redis_url, elsewhere, D1, D3)
    remember_export_dir(data_dir, elsewhere)
    remember_export_dir(data_dir, elsewhere)  # noted once
    assert (data_dir / EXPORT_DIRS_FILE).read_text().splitlines() == [str(elsewhere.resolve())]

    def rows(root: Path, table: str) -> list[str | None]:
        return ds.dataset(root / table, format="parquet", partitioning="hive").to_table().column("visitor_id").to_pylist()

    before = {root: (rows(root, "exposures"), rows(root, "events")) for root in (data_dir / "exports", elsewhere)}
    # v3: one exposure (D1), a survey (D2) and an identify (D3, the only event that day), in each root.
    assert erase_from_exports(export_roots(data_dir), "v3") == (6, 6)
    for root, (exposures, events) in before.items():
        assert rows(root, "exposures") == [v for v in exposures if v != "v3"]
        assert rows(root, "events") == [v for v in events if v != "v3"]
        assert not (root / "events" / f"date={D3.isoformat()}").exists()
        assert (root / "exposures" / f"date={D3.isoformat()}" / "part-0.parquet").is_file()
        assert not list(root.rglob(".*"))  # no temporary file left
        assert pq.read_schema(root / "events" / f"date={D2.isoformat()}" / "part-0.parquet").equals(event_schema())
    assert erase_from_exports(export_roots(data_dir), "v3") == (0, 0)

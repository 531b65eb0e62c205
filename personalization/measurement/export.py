"""``vary export``: the exposure and event streams as Parquet, partitioned by UTC date.

Vary's own results cover the questions it was built for; everything else — joins with orders in a
warehouse, a custom funnel, a notebook — needs the raw records. Parquet with Hive-style partitions
is what DuckDB, Spark, pandas/pyarrow, BigQuery, Snowflake and Athena all read without a schema
file::

    out/exposures/date=2026-03-01/part-0.parquet
    out/events/date=2026-03-01/part-0.parquet

    -- DuckDB
    SELECT experience, variant, count(DISTINCT visitor_id)
    FROM read_parquet('out/exposures/*/*.parquet', hive_partitioning = true)
    WHERE date BETWEEN '2026-03-01' AND '2026-03-07' GROUP BY ALL;

Columns
-------
* **exposures**: every :class:`~personalization.types.Exposure` field. ``ts`` is a
  ``TIMESTAMP`` (µs, UTC); ``segments`` is a ``MAP<VARCHAR, DOUBLE>`` (DuckDB:
  ``segments['price_sensitive']``, Spark: ``segments['price_sensitive']``; a typed map reads better
  than a JSON string and keeps the scores as numbers).
* **events**: ``type`` (``page_view``, ``purchase`` …) and then the union of the fields of every
  event kind, each nullable (a ``page_view`` row has no ``goal``). Scalars keep their types
  (``value`` DOUBLE, ``success`` BOOLEAN, ``duration_ms`` BIGINT, ``ts`` TIMESTAMP); nested values
  whose shape varies — ``answers`` (SUS) and ``traits`` (identify) — are JSON text
  (DuckDB: ``traits::JSON ->> 'plan'``).
* ``date`` is the partition column (``YYYY-MM-DD`` of ``ts`` in UTC), in the directory name only,
  as Hive partitioning expects.

The columns are derived from the msgspec types, so a field added to an event or to ``Exposure``
appears in the next export without a change here.

Bounds and memory
-----------------
``since`` and ``until`` are UTC dates, both included, and select records by their own ``ts``. The
streams are read with :func:`~personalization.models.streams.read_stream` (``XRANGE`` in chunks); every
``chunk`` records the rows in hand are written as one row group per date, so memory holds one chunk
— not a partition, not the stream. At most ``max_open`` partition files are open at once; a date
that comes back after its file was closed (records are only nearly in ``ts`` order) gets the next
``part-N.parquet``. Events are read with no upper stream-id bound, because an app may send events
long after their ``ts``; exposures are written by Vary itself and read up to a day past ``until``.

Re-exporting replaces
---------------------
Files are written under hidden ``.part-N.parquet.inprogress`` names (no reader globbing
``*.parquet`` sees them, and Spark skips dot files) and only renamed when the whole export
succeeded; then the ``part-*.parquet`` files that were in ``[since, until]`` are removed. So
exporting the same range twice gives the same files, a daily export of "yesterday" into one
directory builds up a history, and a failed export leaves the previous files as they were.
"""

from __future__ import annotations

import contextlib
import os
import re
import typing
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
from redis.asyncio import Redis

from personalization.errors import NotConfigured
from personalization.measurement.events import EVENT_STREAM, Event, EventBase
from personalization.measurement.stored_events import STORED_EVENT_DECODER
from personalization.store.exposures import EXPOSURE_STREAM
from personalization.models.streams import read_streams
from personalization.store.partitions import all_streams
from personalization.types import EXPOSURE_DECODER, Exposure

if typing.TYPE_CHECKING:  # pyarrow is imported when an export runs, so importing this module is free
    import pyarrow as pa

__all__ = [
    "EXPOSURES_TABLE",
    "EVENTS_TABLE",
    "PARTITION_COLUMN",
    "ExportReport",
    "TableReport",
    "exposure_schema",
    "event_schema",
    "export_streams",
    "describe",
    "ParquetUnavailable",
    "require_pyarrow",
]

EXPOSURES_TABLE = "exposures"
EVENTS_TABLE = "events"
PARTITION_COLUMN = "date"
_PART = re.compile(r"^part-\d+\.parquet$")
_INPROGRESS = ".inprogress"
_JSON = msgspec.json.Encoder()
_DAY_S = 86_400


#: What to run when pyarrow is missing: `make run` (``pip install -e .``) leaves it out (~150 MB).
INSTALL_HINT = "pip install 'vary[export]'"


class ParquetUnavailable(NotConfigured):
    """pyarrow is not installed, so there is no Parquet to write: the lean install leaves it out."""

    def __init__(self) -> None:
        super().__init__(f"exporting Parquet needs pyarrow, which is not installed: {INSTALL_HINT}")


def require_pyarrow() -> None:
    """Raise :class:`ParquetUnavailable` unless pyarrow imports (checked before any work; the import
    is paid once, by the first export, never by importing this module)."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ParquetUnavailable from None


# ------------------------------------------------------------------------------------------ schema


@dataclass(frozen=True, slots=True)
class _Column:
    """One output column: its Arrow type and how a record's value becomes an Arrow value."""

    name: str
    type: pa.DataType
    convert: Callable[[Any], Any]


def _identity(value: Any) -> Any:
    return value


def _to_json(value: Any) -> str | None:
    return None if value is None else _JSON.encode(value).decode()


def _to_micros(value: Any) -> int | None:
    return None if value is None else round(value * 1_000_000)


def _to_pairs(value: Any) -> list[tuple[str, float]] | None:
    return None if value is None else list(value.items())


def _bare(info: msgspec.inspect.Type) -> msgspec.inspect.Type:
    """``info`` without its ``Meta`` wrapper (a described or constrained field): the column follows the type."""
    while isinstance(info, msgspec.inspect.Metadata):
        info = info.type
    return info


def _column(name: str, info: msgspec.inspect.Type) -> _Column:
    """The column for a msgspec field type: scalars typed, ``dict[str, float]`` a map, the rest JSON."""
    import pyarrow as pa

    info = _bare(info)
    if isinstance(info, msgspec.inspect.UnionType):
        members = [_bare(t) for t in info.types if not isinstance(_bare(t), msgspec.inspect.NoneType)]
        if len(members) == 1:
            info = members[0]
        elif name == "ts" and any(isinstance(t, msgspec.inspect.FloatType) for t in members):
            info = next(t for t in members if isinstance(t, msgspec.inspect.FloatType))  # ISO input, float stored
    if name == "ts" and isinstance(info, msgspec.inspect.FloatType):
        return _Column(name, pa.timestamp("us", tz="UTC"), _to_micros)
    if isinstance(info, msgspec.inspect.StrType):
        return _Column(name, pa.string(), _identity)
    if isinstance(info, msgspec.inspect.LiteralType) and all(isinstance(v, str) for v in info.values):
        return _Column(name, pa.string(), _identity)
    if isinstance(info, msgspec.inspect.BoolType):
        return _Column(name, pa.bool_(), _identity)
    if isinstance(info, msgspec.inspect.IntType):
        return _Column(name, pa.int64(), _identity)
    if isinstance(info, msgspec.inspect.FloatType):
        return _Column(name, pa.float64(), _identity)
    if (
        isinstance(info, msgspec.inspect.DictType)
        and isinstance(info.key_type, msgspec.inspect.StrType)
        and isinstance(info.value_type, msgspec.inspect.FloatType)
    ):
        return _Column(name, pa.map_(pa.string(), pa.float64()), _to_pairs)
    return _Column(name, pa.string(), _to_json)


def _struct_columns(cls: type[msgspec.Struct]) -> list[_Column]:
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    return [_column(f.name, f.type) for f in info.fields]


def _exposure_columns() -> list[_Column]:
    return _struct_columns(Exposure)


def _event_columns() -> list[_Column]:
    """``type``, then the base fields in declaration order, then each kind's own fields by first use.

    A field two kinds declare with different types (none today) becomes JSON text, so it never
    fails a write.
    """
    import pyarrow as pa

    columns: dict[str, _Column] = {"type": _Column("type", pa.string(), _identity)}
    base = list(EventBase.__struct_fields__)
    by_kind = [_struct_columns(kind) for kind in typing.get_args(Event)]
    ordered = [c for name in base for c in by_kind[0] if c.name == name]
    ordered += [c for kind in by_kind for c in kind if c.name not in base]
    for column in ordered:
        seen = columns.get(column.name)
        if seen is None:
            columns[column.name] = column
        elif seen.type != column.type:
            columns[column.name] = _Column(column.name, pa.string(), _to_json)
    return list(columns.values())


def exposure_schema() -> pa.Schema:
    """The Arrow schema of the exposure files (without the ``date`` partition column)."""
    import pyarrow as pa

    return pa.schema([pa.field(c.name, c.type) for c in _exposure_columns()])


def event_schema() -> pa.Schema:
    """The Arrow schema of the event files (without the ``date`` partition column)."""
    import pyarrow as pa

    return pa.schema([pa.field(c.name, c.type) for c in _event_columns()])


def _event_value(record: Any, name: str) -> Any:
    if name == "type":
        return type(record).__struct_config__.tag
    return getattr(record, name, None)


# ------------------------------------------------------------------------------------------ writing


@dataclass(slots=True)
class TableReport:
    """One table's export: rows per date written, and the final files."""

    rows_by_date: dict[date, int] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(self.rows_by_date.values())


@dataclass(slots=True)
class ExportReport:
    """What :func:`export_streams` wrote. ``skipped`` counts records without a ``ts`` (Vary stamps
    every record it stores, so this stays 0 unless something else wrote to the streams)."""

    out_dir: Path
    since: date
    until: date
    exposures: TableReport = field(default_factory=TableReport)
    events: TableReport = field(default_factory=TableReport)
    skipped: int = 0
    #: Old ``part-*.parquet`` files in the range that the export replaced.
    replaced: int = 0


class _PartitionedWriter:
    """Row groups into ``<root>/date=<day>/`` files, with a bounded number of files open."""

    def __init__(self, root: Path, columns: Sequence[_Column], max_open: int, report: TableReport) -> None:
        import pyarrow as pa

        self._root = root
        self._columns = list(columns)
        self._schema = pa.schema([pa.field(c.name, c.type) for c in self._columns])
        self._max_open = max_open
        self._report = report
        self._open: OrderedDict[date, Any] = OrderedDict()  # day → ParquetWriter, least recently used first
        self._parts: dict[date, int] = {}
        self.written: list[Path] = []  # in-progress paths, renamed on commit

    def write(self, day: date, records: list[Any], value: Callable[[Any, str], Any]) -> None:
        """Write ``records`` (all of ``day``) as one row group."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        arrays = [
            pa.array([c.convert(value(r, c.name)) for r in records], type=c.type) for c in self._columns
        ]
        table = pa.Table.from_arrays(arrays, schema=self._schema)
        writer = self._open.get(day)
        if writer is None:
            while len(self._open) >= self._max_open:
                _, oldest = self._open.popitem(last=False)
                oldest.close()
            part = self._parts.get(day, -1) + 1
            self._parts[day] = part
            directory = self._root / f"{PARTITION_COLUMN}={day.isoformat()}"
            directory.mkdir(parents=True, exist_ok=True)
            path = directory / f".part-{part}.parquet{_INPROGRESS}"
            writer = pq.ParquetWriter(path, self._schema)
            self.written.append(path)
        else:
            self._open.move_to_end(day)
        self._open[day] = writer
        writer.write_table(table)
        self._report.rows_by_date[day] = self._report.rows_by_date.get(day, 0) + len(records)

    def close(self) -> None:
        while self._open:
            _, writer = self._open.popitem()
            writer.close()


def _day_of(ts: float) -> date:
    return date.fromordinal(date(1970, 1, 1).toordinal() + int(ts // _DAY_S))


def _start_of(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


async def _export_table(
    records: typing.AsyncIterator[Any],
    writer: _PartitionedWriter,
    value: Callable[[Any, str], Any],
    since: date,
    until: date,
    chunk: int,
) -> int:
    """Stream ``records`` into ``writer``, a row group per date every ``chunk`` records; returns the
    number of records skipped for lack of a ``ts``."""
    pending: dict[date, list[Any]] = {}
    held = skipped = 0

    def flush() -> None:
        for day in sorted(pending):
            writer.write(day, pending[day], value)
        pending.clear()

    async for record in records:
        ts = getattr(record, "ts", None)
        if ts is None:
            skipped += 1
            continue
        day = _day_of(ts)
        if not since <= day <= until:  # read_stream bounds by ts already; this pins the UTC date
            continue
        pending.setdefault(day, []).append(record)
        held += 1
        if held >= chunk:
            flush()
            held = 0
    flush()
    return skipped


def _old_parts(root: Path, since: date, until: date) -> Iterable[Path]:
    """The final ``part-*.parquet`` files of ``root``'s partitions within ``[since, until]``."""
    if not root.is_dir():
        return
    for directory in root.iterdir():
        name, sep, text = directory.name.partition("=")
        if not sep or name != PARTITION_COLUMN or not directory.is_dir():
            continue
        try:
            day = date.fromisoformat(text)
        except ValueError:
            continue
        if since <= day <= until:
            yield from (p for p in directory.iterdir() if _PART.match(p.name))


def _commit(root: Path, written: list[Path], since: date, until: date, report: TableReport) -> int:
    """Replace the range's old files by the new ones; returns how many old files were removed."""
    old = list(_old_parts(root, since, until))
    for path in old:
        path.unlink()
    for path in written:
        final = path.with_name(path.name.removeprefix(".").removesuffix(_INPROGRESS))
        os.replace(path, final)
        report.files.append(final)
    for path in old:  # a date that has no rows any more: drop its empty directory
        try:
            path.parent.rmdir()
        except OSError:
            pass
    report.files.sort()
    return len(old)


async def export_streams(
    redis: Redis,
    out_dir: Path | str,
    since: date,
    until: date,
    *,
    chunk: int = 5000,
    max_open: int = 16,
    exposure_stream: str = EXPOSURE_STREAM,
    event_stream: str = EVENT_STREAM,
    partitions: int = 1,
) -> ExportReport:
    """Write the exposures and events whose ``ts`` falls on a UTC date in ``[since, until]`` as Parquet.

    Layout, columns, memory bounds and the replace-on-re-export rule are in the module docstring.
    A date without records gets no files (readers see no partition rather than an empty one); a
    range without any records writes nothing. Needs ``pyarrow``. Every one of the ``partitions``
    streams of each kind is read, merged in stream-id order (:func:`~personalization.models.streams.read_streams`).
    """
    if since > until:
        raise ValueError(f"since ({since}) is after until ({until})")
    if chunk < 1 or max_open < 1:
        raise ValueError("chunk and max_open must be >= 1")
    require_pyarrow()
    out = Path(out_dir)
    report = ExportReport(out_dir=out, since=since, until=until)
    since_ts = _start_of(since)
    until_ts = _start_of(until + timedelta(days=1)) - 1e-6
    tables: list[tuple[str, list[_Column], TableReport, Callable[[Any, str], Any], Callable[[], Any]]] = [
        (
            EXPOSURES_TABLE, _exposure_columns(), report.exposures, getattr,
            lambda: read_streams(
                redis, all_streams(exposure_stream, partitions), EXPOSURE_DECODER, since_ts, until_ts, chunk
            ),
        ),
        (
            EVENTS_TABLE, _event_columns(), report.events, _event_value,
            lambda: read_streams(
                redis, all_streams(event_stream, partitions), STORED_EVENT_DECODER, since_ts, until_ts, chunk,
                late_s=None,
            ),
        ),
    ]
    writers: list[tuple[Path, _PartitionedWriter, TableReport]] = []
    try:
        for name, columns, table_report, value, reader in tables:
            writer = _PartitionedWriter(out / name, columns, max_open, table_report)
            writers.append((out / name, writer, table_report))
            try:
                async with contextlib.aclosing(reader()) as records:
                    report.skipped += await _export_table(records, writer, value, since, until, chunk)
            finally:
                writer.close()
    except BaseException:
        for _, writer, _ in writers:
            for path in writer.written:
                path.unlink(missing_ok=True)
        raise
    for root, writer, table_report in writers:
        report.replaced += _commit(root, writer.written, since, until, table_report)
    return report


def describe(report: ExportReport) -> str:
    """The lines ``vary export`` prints."""
    lines = [f"exported {report.since} … {report.until} to {report.out_dir}"]
    for name, table in ((EXPOSURES_TABLE, report.exposures), (EVENTS_TABLE, report.events)):
        days = len(table.rows_by_date)
        lines.append(f"  {name}: {table.rows:,} rows in {days} date partition{'s' if days != 1 else ''}, "
                     f"{len(table.files)} file{'s' if len(table.files) != 1 else ''}")
    if report.replaced:
        lines.append(f"  replaced {report.replaced} earlier file(s) in the range")
    if report.skipped:
        lines.append(f"  skipped {report.skipped} record(s) without a ts")
    if not report.exposures.rows and not report.events.rows:
        lines.append("  nothing in the range: no files written")
    lines.append(
        f"  read with DuckDB: SELECT * FROM read_parquet('{report.out_dir}/{EXPOSURES_TABLE}/*/*.parquet', "
        "hive_partitioning = true)"
    )
    return "\n".join(lines)

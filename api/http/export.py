"""``POST /v1/export`` (admin): what ``vary export`` does, over the API.

The exposure and event streams for a UTC date range are written as Parquet under
``<data_dir>/exports/`` (the layout of :mod:`personalization.measurement.export`); the answer lists the files,
relative to the data dir, and the rows per table. Re-exporting a range replaces its files.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from litestar import Controller
from litestar.datastructures import State
from litestar.params import JSONBody
from msgspec import Struct

from api.http.auth import requires_admin
from api.http.common import runtime_of
from api.http.handlers import post
from personalization.errors import InvalidPeriod
from personalization.measurement.export import TableReport, export_streams

__all__ = ["ExportController", "ExportRequest", "ExportResult", "TableExport"]

#: The longest range one request may export (a year): bounds the work an admin call starts.
MAX_EXPORT_DAYS = 366


class ExportRequest(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """UTC dates, both included; ``until`` defaults to today."""

    since: date
    until: date | None = None


class TableExport(Struct, frozen=True, kw_only=True):
    rows: int
    files: list[str]


class ExportResult(Struct, frozen=True, kw_only=True):
    since: date
    until: date
    #: Relative to the data dir.
    out_dir: str
    exposures: TableExport
    events: TableExport
    replaced: int
    skipped: int


def _table(report: TableReport, root: Path) -> TableExport:
    return TableExport(rows=report.rows, files=[str(path.relative_to(root)) for path in report.files])


class ExportController(Controller):
    path = "/v1/export"
    guards = [requires_admin]
    tags = ["data"]

    @post("/", status_code=200, summary="Export exposures and events as Parquet (like `vary export`)")
    async def export(self, state: State, data: JSONBody[ExportRequest]) -> ExportResult:
        until = data.until or datetime.now(UTC).date()
        if data.since > until:
            raise InvalidPeriod(f"since ({data.since}) is after until ({until})")
        if (until - data.since).days >= MAX_EXPORT_DAYS:
            raise InvalidPeriod(f"export at most {MAX_EXPORT_DAYS} days per request")
        runtime = runtime_of(state)
        root = Path(runtime.settings.data_dir).resolve()
        report = await export_streams(
            runtime.redis, root / "exports", data.since, until, partitions=runtime.settings.stream_partitions
        )
        return ExportResult(
            since=data.since,
            until=until,
            out_dir=str(report.out_dir.relative_to(root)),
            exposures=_table(report.exposures, root),
            events=_table(report.events, root),
            replaced=report.replaced,
            skipped=report.skipped,
        )

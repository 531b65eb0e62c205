"""``POST /v1/export`` (admin): what ``vary export`` does, over the API.

The exposure and event streams for a UTC date range are written as Parquet under
``<data_dir>/exports/`` (the layout of :mod:`personalization.measurement.export`); the answer lists the files,
relative to the data dir, and the rows per table. Re-exporting a range replaces its files.

Each export gets an ``id``; ``GET /v1/export/{id}`` streams its files as one zip (paths inside as under
``<data_dir>/exports/``), so a client off the server's disk gets the Parquet too
(:mod:`personalization.measurement.export_downloads`: what a download holds after a re-export or an
erasure). Without pyarrow (the lean ``make run`` install) both answer 400 naming
``pip install 'vary[export]'``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

from litestar import Controller
from litestar.datastructures import State
from litestar.params import FromPath, JSONBody
from litestar.response import Stream
from msgspec import Meta, Struct

from api.http.auth import requires_admin
from api.http.common import runtime_of
from api.http.handlers import get, post
from personalization.errors import InvalidPeriod
from personalization.measurement.export import (
    TableReport,
    export_streams,
    require_pyarrow,
)
from personalization.measurement.export_downloads import (
    export_files,
    new_export_id,
    save_manifest,
    zip_chunks,
)

__all__ = ["ExportController", "ExportRequest", "ExportResult", "TableExport"]

#: The longest range one request may export (a year): bounds the work an admin call starts.
MAX_EXPORT_DAYS = 366


class ExportRequest(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """UTC dates, both included; ``until`` defaults to today."""

    since: Annotated[date, Meta(description="The first UTC date to export (`YYYY-MM-DD`), included.")]
    until: (
        Annotated[
            date,
            Meta(
                description="The last UTC date to export (`YYYY-MM-DD`), included; null: today (UTC). At most 366 "
                "dates per request, both ends included."
            ),
        ]
        | None
    ) = None


class TableExport(Struct, frozen=True, kw_only=True):
    """One table of an export: its rows and the Parquet files they were written to."""

    rows: Annotated[int, Meta(description="Records written to this table over the whole range.")]
    files: Annotated[
        list[str],
        Meta(description="The Parquet files written, relative to the data dir (`exports/<table>/date=YYYY-MM-DD/part-N.parquet`)."),
    ]


class ExportResult(Struct, frozen=True, kw_only=True):
    """What ``POST /v1/export`` wrote, and where to download it."""

    id: Annotated[str, Meta(description="The export's id: `GET /v1/export/{id}` downloads its files as a zip.")]
    download: Annotated[str, Meta(description="The download's path (`/v1/export/<id>`).")]
    since: Annotated[date, Meta(description="The first UTC date exported, included.")]
    until: Annotated[date, Meta(description="The last UTC date exported, included (today when the request left it out).")]
    out_dir: Annotated[str, Meta(description="The directory the files were written under, relative to the data dir.")]
    exposures: Annotated[TableExport, Meta(description="The exposures table: rows and files.")]
    events: Annotated[TableExport, Meta(description="The events table: rows and files.")]
    replaced: Annotated[
        int, Meta(description="Earlier `part-*.parquet` files in the range that this export replaced.")
    ]
    skipped: Annotated[
        int,
        Meta(
            description="Records left out for lack of a `ts` (Vary stamps every record it stores, so 0 unless "
            "something else wrote to the streams)."
        ),
    ]


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
        require_pyarrow()  # before touching Redis: a lean install answers 400 at once
        runtime = runtime_of(state)
        root = Path(runtime.settings.data_dir).resolve()
        report = await export_streams(
            runtime.redis, root / "exports", data.since, until, partitions=runtime.settings.stream_partitions
        )
        export_id = new_export_id()
        save_manifest(
            root, export_id, data.since.isoformat(), until.isoformat(),
            [*report.exposures.files, *report.events.files],
        )
        return ExportResult(
            id=export_id,
            download=f"/v1/export/{export_id}",
            since=data.since,
            until=until,
            out_dir=str(report.out_dir.relative_to(root)),
            exposures=_table(report.exposures, root),
            events=_table(report.events, root),
            replaced=report.replaced,
            skipped=report.skipped,
        )

    @get(
        "/{export_id:str}",
        summary="Download an export's Parquet files as a zip",
        description="The files of the export `POST /v1/export` answered with this `id`, as they are on the "
        "server's disk now (a later export of the same dates replaced them; erasing a visitor rewrote "
        "them), in one zip: `exposures/date=YYYY-MM-DD/part-N.parquet`, `events/…`. 400 for a malformed "
        "id, 404 for an unknown one.",
        media_type="application/zip",
    )
    async def download(self, state: State, export_id: FromPath[str]) -> Stream:
        files = export_files(Path(runtime_of(state).settings.data_dir).resolve(), export_id)
        return Stream(
            zip_chunks(files),
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="vary-export-{export_id}.zip"'},
        )

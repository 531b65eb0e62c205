"""POST /v1/export reads every stream partition, as `vary export` does.

With ``VARY_STREAM_PARTITIONS > 1`` exposures live in ``vary:exposures:{<p>}``; the route used to read
only the unpartitioned stream and exported nothing.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pyarrow.parquet as pq
from litestar.testing import TestClient

from api.app import create_app
from api.settings import Settings


def test_export_route_reads_every_partition(
    settings: Settings, tmp_path: Path, delivery: dict[str, str], admin: dict[str, str]
) -> None:
    partitioned = msgspec.structs.replace(settings, data_dir=tmp_path, stream_partitions=4)
    visitors = [f"export-{i}" for i in range(12)]
    with TestClient(create_app(partitioned)) as client:
        for visitor in visitors:
            answer = client.post(
                "/v1/personalize", json={"visitor": {"id": visitor}, "entries": ["bannerShipping"]}, headers=delivery
            )
            assert answer.status_code == 200, answer.text
        deadline = time.monotonic() + 10
        while True:  # exposures are written off the request path, in batches
            exported = client.post("/v1/export", json={"since": datetime.now(UTC).date().isoformat()}, headers=admin)
            assert exported.status_code == 200, exported.text
            root = tmp_path / "exports" / "exposures"
            rows = set(pq.read_table(root).column("visitor_id").to_pylist()) if root.exists() else set()
            if rows >= set(visitors) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert rows >= set(visitors), f"exported {len(rows)} of {len(visitors)} visitors"

"""POST /v1/export reads every stream partition, as `vary export` does; GET /v1/export/{id} downloads it.

With ``VARY_STREAM_PARTITIONS > 1`` exposures live in ``vary:exposures:{<p>}``; the route used to read
only the unpartitioned stream and exported nothing.
"""

from __future__ import annotations

import io
import subprocess
import sys
import time
import zipfile
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


def _personalize_and_export(
    client: TestClient, visitors: list[str], delivery: dict[str, str], admin: dict[str, str]
) -> dict:
    for visitor in visitors:
        answer = client.post(
            "/v1/personalize", json={"visitor": {"id": visitor}, "entries": ["bannerShipping"]}, headers=delivery
        )
        assert answer.status_code == 200, answer.text
        sent = client.post(
            "/v1/events",
            json={"events": [{"type": "page_view", "visitor_id": visitor, "session_id": f"s-{visitor}", "channel": "web"}]},
            headers=delivery,
        )
        assert sent.status_code == 202, sent.text
    deadline = time.monotonic() + 10
    while True:  # exposures are written off the request path, in batches
        exported = client.post("/v1/export", json={"since": datetime.now(UTC).date().isoformat()}, headers=admin)
        assert exported.status_code == 200, exported.text
        body = exported.json()
        if body["exposures"]["rows"] >= len(visitors) or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


def test_an_export_downloads_as_a_zip_whose_parquet_reads_back(
    settings: Settings, tmp_path: Path, delivery: dict[str, str], admin: dict[str, str]
) -> None:
    data_dir = tmp_path / "data"
    local = msgspec.structs.replace(settings, data_dir=data_dir, stream_partitions=2)
    visitors = [f"download-{i}" for i in range(7)]
    with TestClient(create_app(local)) as client:
        body = _personalize_and_export(client, visitors, delivery, admin)
        assert body["download"] == f"/v1/export/{body['id']}"
        answer = client.get(body["download"], headers=admin)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "application/zip"
        assert body["id"] in answer.headers["content-disposition"]

        unknown = client.get("/v1/export/" + "0" * 32, headers=admin)
        assert unknown.status_code == 404, unknown.text
        assert "0" * 32 in unknown.json()["detail"]
        for bad in ("..%2F..%2Fetc%2Fpasswd", "ABCDEF", "0" * 31, "..", "%2E%2E"):
            refused = client.get(f"/v1/export/{bad}", headers=admin)
            assert refused.status_code in (400, 404), (bad, refused.status_code, refused.text)
            assert refused.status_code != 200
        malformed = client.get("/v1/export/not-an-id", headers=admin)
        assert malformed.status_code == 400 and "id" in malformed.json()["detail"], malformed.text
        assert client.get(body["download"], headers=delivery).status_code in (401, 403)
        assert client.get(body["download"]).status_code == 401

    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(io.BytesIO(answer.content)) as archive:
        names = sorted(archive.namelist())
        assert archive.testzip() is None
        archive.extractall(unpacked)
    listed = sorted([*body["exposures"]["files"], *body["events"]["files"]])
    assert names == sorted(name.removeprefix("exports/") for name in listed)
    # Rows equal: what the download holds is what the server wrote, row for row.
    for table in ("exposures", "events"):
        downloaded = pq.read_table(unpacked / table).sort_by("id" if table == "exposures" else "ts")
        on_disk = pq.read_table(data_dir / "exports" / table).sort_by("id" if table == "exposures" else "ts")
        assert downloaded.num_rows == body[table]["rows"] > 0
        assert downloaded.to_pylist() == on_disk.to_pylist()
    exposed = set(pq.read_table(unpacked / "exposures").column("visitor_id").to_pylist())
    assert exposed == set(visitors)
    viewed = set(pq.read_table(unpacked / "events").column("visitor_id").to_pylist())
    assert viewed == set(visitors)


_WITHOUT_PYARROW = """
import sys
sys.modules["pyarrow"] = None  # how Python spells "not installed": `import pyarrow` raises ImportError
from litestar.testing import TestClient
from api.app import create_app
from api.settings import Settings
from pathlib import Path
settings = Settings(redis_url=sys.argv[1], data_dir=Path(sys.argv[2]), admin_keys=("a",), delivery_keys=("d",),
                    train_demo_model=False)
with TestClient(create_app(settings)) as client:
    answer = client.post("/v1/export", json={"since": "2026-01-01"}, headers={"Authorization": "Bearer a"})
    print(answer.status_code)
    print(answer.json()["detail"])
print("pyarrow" in sys.modules and sys.modules["pyarrow"] is not None)
import os
from api.cli.main import main
os.environ.update(VARY_REDIS_URL=sys.argv[1], VARY_DATA_DIR=sys.argv[2])
print("exit", main(["export", "--since", "2026-01-01", "--out", sys.argv[2] + "/cli-out"]))
"""


def test_without_pyarrow_export_answers_how_to_install_it(redis_url: str, model_dir: Path, tmp_path: Path) -> None:
    """The lean install (`make run`) has no pyarrow: the app still starts, and export says what to install."""
    import shutil

    data_dir = tmp_path / "data"
    shutil.copytree(model_dir, data_dir)
    run = subprocess.run(
        [sys.executable, "-c", _WITHOUT_PYARROW, redis_url, str(data_dir)],
        cwd=Path(__file__).resolve().parents[3], capture_output=True, text=True, timeout=120, check=False,
    )
    assert run.returncode == 0, run.stderr
    status, detail, loaded, cli_exit = run.stdout.strip().splitlines()[-4:]
    assert status == "400"
    assert "pip install 'vary[export]'" in detail and "pyarrow" in detail
    assert loaded == "False"
    assert cli_exit == "exit 2"  # `vary export` says the same on stderr
    assert "exporting Parquet needs pyarrow, which is not installed: pip install 'vary[export]'" in run.stderr

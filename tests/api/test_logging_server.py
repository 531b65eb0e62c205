"""A real ``vary serve`` (two workers, output a pipe): every line it writes is one JSON object, the lines
about the whole service come once, each worker's carry its pid, and the access log has the route
template, status and duration of each request — never a visitor id or a key."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import ADMIN, DELIVERY
from tests.e2e.servers import VaryProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

VISITOR = "zz-raw-visitor-5be1d2"


def test_every_line_of_a_real_server_is_json_and_start_lines_come_once(tmp_path: Path) -> None:
    env = {"VARY_WORKERS": "2", "VARY_DELIVERY_KEYS": DELIVERY, "VARY_ADMIN_KEYS": ADMIN}  # no VARY_LOG_FORMAT
    server = VaryProcess(env, tmp_path / "data")
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.base, timeout=10) as http:
            for _ in range(6):  # spread over both workers
                assert http.get(f"/v1/entries/heroHome?visitor_id={VISITOR}&key={DELIVERY}").status_code == 200
            for i in range(2):  # answered by the server's direct path (api/http/direct.py), logged the same
                body = {"visitor": {"id": f"{VISITOR}-{i}"}, "entries": ["heroHome"]}
                answer = http.post("/v1/personalize", json=body, headers={"Authorization": f"Bearer {DELIVERY}"})
                assert answer.status_code == 200
            erased = http.delete(f"/v1/visitors/{VISITOR}", headers={"Authorization": f"Bearer {ADMIN}"})
            assert erased.status_code == 200
    finally:
        assert server.stop() == 0
    lines = [line for line in server.log if line.strip()]
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON line: {line!r}")
    assert all({"ts", "level", "logger", "msg", "pid"} <= set(r) for r in records)
    messages = Counter(r["msg"].split(" (")[0].split(" http")[0] for r in records if r["logger"] in ("vary", "uvicorn.error"))
    assert messages["serving on"] == 1 and messages["Uvicorn running on"] == 1
    assert sum(1 for r in records if r["msg"].startswith("embedded Valkey at")) == 1
    parent = {r["pid"] for r in records if r["msg"].startswith("serving on")}
    started = [r["pid"] for r in records if r["msg"] == "Application startup complete."]
    assert len(started) == 2 and len(set(started)) == 2 and not parent & set(started)  # once per worker
    access = [r for r in records if r["logger"] == "vary.access"]
    entries = [r for r in access if r["method"] == "GET" and r["path"].startswith("/v1/entries/{")]
    assert len(entries) == 6 and all(r["status"] == 200 and r["duration_ms"] >= 0 for r in entries)
    assert [r["path"] for r in access if r["method"] == "DELETE"] == ["/v1/visitors/{visitor_id}"]
    personalized = [r for r in access if r["method"] == "POST" and r["path"] == "/v1/personalize"]
    assert len(personalized) == 2 and all(r["status"] == 200 and r["duration_ms"] >= 0 for r in personalized)
    assert not [r for r in records if r["logger"] == "uvicorn.access"]  # vary.access replaces it
    output = "".join(lines)
    assert VISITOR not in output and DELIVERY not in output and ADMIN not in output

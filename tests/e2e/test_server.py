"""End to end: the real ``vary serve`` process, its embedded Valkey, HTTP from outside.

personalize → exposure in the stream → event → profile updated → next decision sees the profile.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from personalization.store.keys import profile_key

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DELIVERY = "e2e-delivery"
ADMIN = "e2e-admin"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, process: subprocess.Popen[str], base: str, redis_url: str, log: list[str]) -> None:
        self.process, self.base, self.redis_url, self.log = process, base, redis_url, log


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    port = _free_port()
    data_dir = tmp_path_factory.mktemp("e2e-data")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("VARY_")},
        "VARY_PORT": str(port),
        "VARY_DATA_DIR": str(data_dir),
        "VARY_DELIVERY_KEYS": DELIVERY,
        "VARY_ADMIN_KEYS": ADMIN,
    }
    vary = Path(sys.executable).with_name("vary")
    process = subprocess.Popen(
        [str(vary), "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    log: list[str] = []
    redis_url = ""
    deadline = time.monotonic() + 90
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        log.append(line)
        match = re.search(r"embedded Valkey at (redis://\S+)", line)
        if match:
            redis_url = match.group(1)
        if "Application startup complete" in line:
            break
    base = f"http://127.0.0.1:{port}"
    # keep draining output so the pipe never fills
    reader = threading.Thread(target=lambda: log.extend(process.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        assert redis_url, "".join(log)
        yield Server(process, base, redis_url, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        reader.join(timeout=5)
        process.stdout.close()


def test_ready_then_personalize_logs_exposure_and_events_update_profile(server: Server) -> None:
    with httpx.Client(base_url=server.base, timeout=10) as http:
        ready = http.get("/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["model"].startswith("seg-")
        auth = {"Authorization": f"Bearer {DELIVERY}"}
        body = {"visitor": {"id": "e2e-visitor", "country": "US", "channel": "ios"}, "entries": ["heroHome"]}
        response = http.post("/v1/personalize", json=body, headers=auth)
        assert response.status_code == 200, response.text
        entry = response.json()["entries"][0]
        assert entry["fields"]["title"] and entry["reason"]

        store = redis.Redis.from_url(server.redis_url, decode_responses=True)
        deadline = time.monotonic() + 5
        ids: list[str] = []
        while time.monotonic() < deadline:
            ids = [f["data"] for _, f in store.xrange("vary:exposures")]
            if any(entry["exposure_id"] in data for data in ids):
                break
            time.sleep(0.05)
        assert any(entry["exposure_id"] in data for data in ids), ids

        events = {"events": [
            {"type": "page_view", "visitor_id": "e2e-visitor", "channel": "ios", "session_id": "s1"},
            {"type": "conversion", "visitor_id": "e2e-visitor", "goal": "signup", "channel": "ios"},
        ]}
        accepted = http.post("/v1/events", json=events, headers=auth)
        assert accepted.status_code == 202 and accepted.json()["accepted"] == 2
        profile = store.hgetall(profile_key("e2e-visitor"))
        assert profile["page_views"] == "1" and profile["conversions"] == "1" and profile["ch:ios"] == "1"
        if entry["experience"]:  # the sticky assignment was stored with the exposure
            assert profile[f"a:{entry['experience']}"] == str(-1 if entry["holdout"] else entry["variant"])
        store.close()


def test_sigterm_stops_server_and_embedded_valkey(tmp_path: Path, server: Server) -> None:
    # The module server is stopped by its fixture; here check that the first one shuts down cleanly.
    store = redis.Redis.from_url(server.redis_url)
    assert store.ping()
    store.close()
    server.process.terminate()
    assert server.process.wait(timeout=20) == 0
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(server.redis_url, socket_connect_timeout=1).ping()

"""``vary sinks``: the sink runners as their own process, against the real Valkey and a local receiver."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from personalization.sinks import verify_signature
from tests.personalization.sinks.test_sinks import SECRET, Receiver, _write, receiver  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow


def test_vary_sinks_delivers_the_streams_to_the_webhook(redis_url: str, sync_redis, receiver: Receiver) -> None:  # noqa: ANN001, F811
    env = {k: v for k, v in os.environ.items() if not k.startswith("VARY_")}
    env.update(VARY_REDIS_URL=redis_url, VARY_SINK_WEBHOOK_URL=receiver.url, VARY_SINK_WEBHOOK_SECRET=SECRET)
    vary = Path(sys.executable).with_name("vary")
    process = subprocess.Popen([str(vary), "sinks", "--consumer", "cli-1"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # printed once the groups exist
        assert "vary sinks: consumer cli-1 running webhook" in line, line
        _write(sync_redis, exposures=3, events=1)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(receiver.records()) < 4:
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=20)
        if process.stdout is not None:
            process.stdout.close()
    assert code == 0
    assert sorted(r["kind"] for r in receiver.records()) == ["event", "exposure", "exposure", "exposure"]
    assert all(verify_signature(SECRET, r.body, r.headers["X-Vary-Timestamp"], r.headers["X-Vary-Signature"])
               for r in receiver.requests)


def test_vary_sinks_without_a_sink_says_what_to_set(redis_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VARY_")}
    env.update(VARY_REDIS_URL=redis_url)
    vary = Path(sys.executable).with_name("vary")
    result = subprocess.run([str(vary), "sinks"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "VARY_SINK_WEBHOOK_URL" in result.stderr

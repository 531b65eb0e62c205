"""The benchmark never trips Vary's own limits (issue 22): it sets the rate limit explicitly, far above
its rate, and keeps the limiter on; a non-2xx answer is still a failed benchmark."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.settings import load_settings
from bench.http import WrkError, run_wrk
from bench.servers import RATE_LIMIT_PER_S, _env


def test_the_bench_sets_every_rate_limit_above_its_reach_with_the_limiter_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _env(tmp_path, "redis://127.0.0.1:1")
    for name, value in env.items():
        if name.startswith("VARY_"):
            monkeypatch.setenv(name, value)
    settings = load_settings()
    # The echo app, which does nothing, serves about 11,000 req/s on 2 cores: 100x that is out of reach.
    assert RATE_LIMIT_PER_S >= 1_000_000
    assert settings.rate_limit_delivery_per_s == RATE_LIMIT_PER_S  # > 0: the limiter runs
    assert settings.rate_limit_admin_per_s == RATE_LIMIT_PER_S


def test_a_non_2xx_answer_fails_the_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    output = (
        "Running 1s test @ http://127.0.0.1:1/\n  1 threads and 1 connections\n"
        "  Latency Distribution\n     50%    1.00ms\n     99%    2.00ms\n"
        "  100 requests in 1.00s, 10.00KB read\n  Non-2xx or 3xx responses: 3\n"
        "Requests/sec:    100.00\nTransfer/sec:     10.00KB\n"
    )

    class Done:
        returncode = 0
        stdout = output
        stderr = ""

    monkeypatch.setattr("bench.http.ensure_wrk", lambda: "wrk")
    monkeypatch.setattr("bench.http.subprocess.run", lambda *a, **k: Done())
    with pytest.raises(WrkError, match="3 non-2xx"):
        run_wrk("http://127.0.0.1:1/", tmp_path / "s.lua", 1, 1.0)

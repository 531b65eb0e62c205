"""The benchmark report's arithmetic of what the machine's cores allow (issue 22)."""

from __future__ import annotations

import pytest

from bench.report import cores_bound, render


def _http(vary_server: float, valkey: float, vary_client: float, echo_server: float, echo_client: float) -> dict:
    return {
        "vary": {"server_cpu_ms_per_request": vary_server, "valkey_cpu_ms_per_request": valkey,
                 "client_cpu_ms_per_request": vary_client},
        "baseline": {"server_cpu_ms_per_request": echo_server, "client_cpu_ms_per_request": echo_client},
    }


def test_each_side_is_capped_by_the_cpu_all_its_processes_spend_per_request() -> None:
    bound = cores_bound(_http(0.30, 0.08, 0.02, 0.15, 0.05), cores=2)
    assert bound is not None
    assert bound["vary_ms"] == pytest.approx(0.40)
    assert bound["echo_ms"] == pytest.approx(0.20)
    assert bound["vary_max_rps"] == pytest.approx(5_000)
    assert bound["echo_max_rps"] == pytest.approx(10_000)
    assert bound["max_ratio"] == pytest.approx(0.5)


def test_no_bound_without_the_figures() -> None:
    http = _http(0.30, 0.08, 0.02, 0.15, 0.05)
    del http["vary"]["client_cpu_ms_per_request"]  # a result written before wrk's CPU was measured
    assert cores_bound(http, cores=2) is None
    assert cores_bound(_http(0.30, 0.08, 0.02, 0.15, 0.05), cores=0) is None


def test_the_report_states_the_cap() -> None:
    http = {
        **_http(0.30, 0.08, 0.02, 0.15, 0.05),
        "server": "vary-serve", "workers": 2, "connections": 64, "rounds": 3, "duration_s": 4.0,
        "sizes": {"vary": {"request_bytes": 552, "response_bytes": 2622}, "baseline": {"response_bytes": 2145}},
    }
    http["vary"].update({"rps": {"spread": 0.1, "median": 4000}, "p99_ms": {"median": 30.0}, "requests": 40_000,
                         "exposures_written": 160_000, "exposures_expected_at_least": 120_000, "degraded": 0})
    http["baseline"].update({"rps": {"spread": 0.1, "median": 9000}, "p99_ms": {"median": 10.0}})
    text = render({"machine": {"cpu_count": 2, "cpu_model": "test", "python": "3.11"}, "comparisons": [], "http": http,
                   "quick": True, "measured_at": "2026-12-04T00:00:00Z"})
    assert "caps Vary at 5,000 req/s and the echo app at 10,000 req/s" in text
    assert "a throughput ratio of at most 0.50× on this machine" in text

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


def _report(**extra: object) -> str:
    """The markdown report of one HTTP comparison (with ``extra`` fields, e.g. a curve)."""
    http = {
        **_http(0.30, 0.08, 0.02, 0.15, 0.05),
        "server": "vary-serve", "workers": 2, "connections": 64, "rounds": 3, "duration_s": 4.0,
        "sizes": {"vary": {"request_bytes": 552, "response_bytes": 2622}, "baseline": {"response_bytes": 2145}},
        **extra,
    }
    http["vary"].update({"rps": {"spread": 0.1, "median": 4000}, "p99_ms": {"median": 30.0}, "requests": 40_000,
                         "exposures_written": 160_000, "exposures_expected_at_least": 120_000, "degraded": 0})
    http["baseline"].update({"rps": {"spread": 0.1, "median": 9000}, "p99_ms": {"median": 10.0}})
    return render({"machine": {"cpu_count": 2, "cpu_model": "test", "python": "3.11"}, "comparisons": [], "http": http,
                   "quick": True, "measured_at": "2026-12-04T00:00:00Z"})


def test_the_report_states_the_cap() -> None:
    text = _report()
    assert "caps Vary at 5,000 req/s and the echo app at 10,000 req/s" in text
    assert "a throughput ratio of at most 0.50× on this machine" in text


def _row(connections: int, p50: float, p99: float, ratio: float | None = None) -> dict:
    row = {"connections": connections, "rounds": 3, "rps": 5000.0, "p50_ms": p50, "p99_ms": p99,
           "server_cpu_ms_per_request": 0.25, "degraded": 0}
    if ratio is not None:
        row["p99_over_p50"] = ratio
    return row


def test_the_tail_target_takes_each_rows_median_of_its_rounds_ratios() -> None:
    from bench.run import _tail_comparisons

    # 8 connections: the medians of p50 and p99 come from different rounds (ratio 5.0), but each
    # round's own ratio had a median of 2.5; 1 and 128 connections are not judged.
    curve = [_row(1, 0.5, 5.0, 10.0), _row(8, 2.0, 10.0, 2.5), _row(32, 6.0, 18.0, 3.1), _row(128, 16.0, 80.0, 5.0)]
    (tail,) = _tail_comparisons(curve)
    assert tail["vary"] == pytest.approx(3.1)
    assert "(32 connections)" in tail["name"]
    assert tail["met"] is True


def test_a_result_file_without_round_ratios_still_reads() -> None:
    from bench.run import _tail_comparisons

    (tail,) = _tail_comparisons([_row(8, 2.0, 9.0), _row(64, 10.0, 25.0)])
    assert tail["vary"] == pytest.approx(4.5)
    assert tail["met"] is False


def test_the_curve_table_says_how_many_rounds_and_shows_the_median_ratio() -> None:
    text = _report(curve=[_row(8, 2.0, 10.0, 2.5)])
    assert "each figure the median of 3 rounds" in text
    assert "| 8 | 5,000 | 2.00 | 10.0 | 2.5× | 0.25 | 0 |" in text

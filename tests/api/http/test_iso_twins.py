"""Epoch times in responses gain an ISO 8601 UTC twin: journeys ``since``/``until``, ready's ``last_sync_at``."""

from __future__ import annotations

from datetime import datetime

from litestar.testing import TestClient


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def test_journey_times_have_iso_twins(client: TestClient, admin: dict[str, str]) -> None:
    body = client.get(
        "/v1/journeys/shopping", params={"since": "2025-06-01T12:00:00+02:00", "until": "2025-06-03"}, headers=admin
    ).json()
    assert body["since_iso"] == "2025-06-01T10:00:00Z" and _epoch(body["since_iso"]) == body["since"]
    assert body["until_iso"].endswith("Z") and abs(_epoch(body["until_iso"]) - body["until"]) < 1e-3
    assert body["until_iso"].startswith("2025-06-0")  # a bare until date includes that day


def test_ready_last_sync_has_an_iso_twin(client: TestClient) -> None:
    sync = client.get("/ready").json()["content_sync"]
    assert "last_sync_at" in sync  # the old field stays
    if sync["last_sync_at"] is None:
        assert sync["last_sync_at_iso"] is None
    else:
        assert sync["last_sync_at_iso"].endswith("Z")
        assert abs(_epoch(sync["last_sync_at_iso"]) - sync["last_sync_at"]) < 1e-3

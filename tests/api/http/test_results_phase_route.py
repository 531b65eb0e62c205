"""``GET /v1/experiences/{key}/results?phase=N``: the response says its phase and lists the phases; a phase
that does not exist is a 400 that names ``phase``."""

from __future__ import annotations

from litestar.testing import TestClient

URL = "/v1/experiences/hero-sale/results"


def test_results_carry_phase_and_phases_and_reject_unknown_phases(client: TestClient, admin: dict[str, str]) -> None:
    body = client.get(URL, headers=admin).json()
    assert body["phase"] >= 1 and isinstance(body["phases"], list)
    assert all({"phase", "started_at", "started_at_iso", "changes"} <= set(p) for p in body["phases"])
    explicit = client.get(URL, params={"phase": 1}, headers=admin)
    assert explicit.status_code == 200 and explicit.json()["phase"] == 1
    for bad in (99, 0, "two"):
        response = client.get(URL, params={"phase": bad}, headers=admin)
        assert response.status_code == 400, response.text
        assert "phase" in response.text

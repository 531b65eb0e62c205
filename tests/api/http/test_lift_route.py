"""``GET /v1/lift`` (admin): the ``_global`` experience's aggregates as the program lift, typed in OpenAPI."""

from __future__ import annotations

import redis
from litestar.testing import TestClient

from personalization.measurement.stats import relative_uplift
from personalization.store.keys import agg_key


def test_lift_reads_the_global_experience(client: TestClient, sync_redis: redis.Redis, admin: dict[str, str],
                                          delivery: dict[str, str]) -> None:
    sync_redis.hset(agg_key("_global", "all"), mapping={
        "1:visitors": 900, "h:visitors": 100, "1:conv:purchase": 180, "h:conv:purchase": 12,
        "1:returning": 300, "h:returning": 25, "1:csat:5": 40, "1:csat:2": 10, "h:csat:5": 5, "h:csat:1": 5,
    })
    assert client.get("/v1/lift", headers=delivery).status_code in (401, 403)
    response = client.get("/v1/lift", headers=admin)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["experience"] == "_global" and (body["treated_visitors"], body["holdout_visitors"]) == (900, 100)
    purchase = body["goals"]["purchase"]
    assert purchase["lift"] == relative_uplift(12, 100, 180, 900)[0]
    assert purchase["treated"]["rate"] == 0.2 and purchase["holdout"]["rate"] == 0.12
    assert body["csat"]["difference"] == 100 * (40 / 50 - 5 / 10)
    assert body["retention"]["lift"] == relative_uplift(25, 100, 300, 900)[0]
    assert 0.0 <= body["share"] <= 0.5
    assert (body["share"] == 0.0) == any("no global holdout" in n for n in body["notes"])

    schemas = client.get("/schema/openapi.json").json()["components"]["schemas"]
    program = next(s for name, s in schemas.items() if name.endswith("ProgramLift"))
    assert {"goals", "nps", "csat", "ces", "retention", "notes", "share"} <= set(program["properties"])

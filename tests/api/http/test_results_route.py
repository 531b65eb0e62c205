"""``GET /v1/experiences/{key}/results`` over HTTP: the personalization lift, notes and the new row fields."""

from __future__ import annotations

from litestar.testing import TestClient

from personalization.measurement.stats import relative_uplift
from tests.api.http.lift_traffic import plant_lift


def test_results_json_carries_personalization_lift_notes_and_visitors(
    client: TestClient, redis_url: str, admin: dict[str, str]
) -> None:
    body = plant_lift(client, redis_url, admin)

    lift = body["personalization_lift"]["purchase"]
    assert set(lift) >= {"treated", "holdout", "lift", "lift_interval", "p_value", "sequential_interval",
                         "chance_to_beat_holdout"}
    for arm in ("treated", "holdout"):
        assert set(lift[arm]) == {"visitors", "conversions", "rate", "interval"}
    assert lift["treated"]["visitors"] == sum(body["visitors"]) and lift["holdout"]["visitors"] == body["holdout_visitors"]
    point, interval = relative_uplift(lift["holdout"]["conversions"], lift["holdout"]["visitors"],
                                      lift["treated"]["conversions"], lift["treated"]["visitors"])
    assert lift["lift"] == point and lift["lift_interval"] == list(interval)
    assert lift["sequential_interval"][0] < lift["lift_interval"][0] < lift["lift_interval"][1] < lift["sequential_interval"][1]
    assert 0.0 <= lift["chance_to_beat_holdout"] <= 1.0 and 0.0 <= lift["p_value"] <= 1.0

    # Control of a personalization experience is empty: null comparisons and a note, never a prior.
    control, personalized = body["goals"]["purchase"]["variants"]
    assert control["visitors"] == control["exposures"] == 0
    assert personalized["visitors"] == personalized["exposures"] == lift["treated"]["visitors"]
    for field in ("uplift", "uplift_interval", "p_value", "adjusted_p_value", "chance_to_beat_control"):
        assert personalized[field] is None, field
    assert any("personalization_lift" in note for note in body["notes"])


def test_openapi_documents_the_new_fields(client: TestClient) -> None:
    schemas = client.get("/schema/openapi.json").json()["components"]["schemas"]
    results = next(s for name, s in schemas.items() if name.endswith("ExperimentResults"))
    assert {"personalization_lift", "notes"} <= set(results["properties"])
    variant = next(s for name, s in schemas.items() if name.endswith("VariantResult"))
    assert {"visitors", "adjusted_p_value"} <= set(variant["properties"])
    assert "alias" in variant["properties"]["exposures"]["description"]

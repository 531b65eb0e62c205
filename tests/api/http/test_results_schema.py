"""The results' new blocks are typed, so the OpenAPI schema documents them."""

from __future__ import annotations

from litestar.testing import TestClient


def _schemas(client: TestClient) -> dict:
    return client.get("/schema/openapi.json").json()["components"]["schemas"]


def _named(schemas: dict, suffix: str) -> dict:
    return next(s for name, s in schemas.items() if name.endswith(suffix))


def test_range_is_a_typed_optional_field(client: TestClient) -> None:
    schemas = _schemas(client)
    results = _named(schemas, "ExperimentResults")
    assert "range" in results["properties"] and "range" not in results.get("required", [])
    ranged = _named(schemas, "RangeCounts")
    assert {"since", "until", "days", "visitors", "converters", "conversions", "note"} <= set(ranged["properties"])


def test_breakdowns_cuped_cupac_currencies_and_phases_are_documented(client: TestClient) -> None:
    schemas = _schemas(client)
    results = _named(schemas, "ExperimentResults")["properties"]
    assert {"breakdowns", "value_by_currency", "phase", "phases"} <= set(results)
    variant = _named(schemas, "VariantResult")["properties"]
    assert {"cuped", "cupac"} <= set(variant)
    adjusted = _named(schemas, "AdjustedRate")["properties"]
    assert {"theta", "rate", "variance_reduction", "difference_interval", "uplift_interval", "p_value"} <= set(adjusted)
    currency = _named(schemas, "CurrencyVariant")["properties"]
    assert {"revenue_per_visitor", "average_order_value", "buyers", "orders"} <= set(currency)
    # The breakdowns keep one type (kind → cell → goal → result); their warning is a field beside them.
    assert results["breakdowns"]["additionalProperties"].get("type") == "object"
    assert "breakdowns_warning" in results

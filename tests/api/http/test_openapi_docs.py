"""The API reference: hand-chosen operation ids, descriptions and examples, every property described,
the event union typed, every status, and pages that need no CDN."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import jsonschema_rs
from litestar.testing import TestClient

from api.http.openapi_docs import ASSETS_DIR, OPERATIONS, event_kinds

METHODS = ("get", "put", "post", "delete", "patch")
#: What Litestar makes up from the path and handler name: ``V1ExperiencesKeyResultsResults``.
FRAMEWORK_ID = re.compile(r"^[A-Z]")


def _document(client: TestClient) -> dict:
    response = client.get("/schema/openapi.json")
    assert response.status_code == 200
    return response.json()


def _operations(client: TestClient) -> dict[tuple[str, str], dict]:
    schema = _document(client)
    return {
        (method.upper(), path): operation
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def test_every_operation_has_its_hand_chosen_id_and_a_description(client: TestClient) -> None:
    operations = _operations(client)
    missing = sorted(set(operations) - set(OPERATIONS))
    assert not missing, f"add these routes to api/http/openapi_docs.py OPERATIONS: {missing}"
    assert not sorted(set(OPERATIONS) - set(operations)), "OPERATIONS names routes that no longer exist"
    ids = [operation["operationId"] for operation in operations.values()]
    assert len(ids) == len(set(ids))
    for key, operation in operations.items():
        assert operation["operationId"] == OPERATIONS[key].operation_id, key
        assert not FRAMEWORK_ID.match(operation["operationId"]), key
        description = operation.get("description", "")
        assert len(description) >= 20, key
        assert "``" not in description and ":func:" not in description, (key, description)  # Markdown, not reST
    assert operations[("GET", "/v1/experiences/{key}/results")]["operationId"] == "getExperienceResults"


def test_statuses_each_route_can_answer_are_documented(client: TestClient) -> None:
    operations = _operations(client)

    def statuses(method: str, path: str) -> set[str]:
        return set(operations[(method, path)]["responses"])

    assert {"200", "400", "401", "403", "413", "429", "503"} <= statuses("POST", "/v1/personalize")
    assert {"202", "400", "413", "429", "503"} <= statuses("POST", "/v1/events")
    assert {"202", "400", "413", "429", "503"} <= statuses("POST", "/v1/exposures")
    assert {"200", "400", "404", "429", "503"} <= statuses("GET", "/v1/experiences/{key}/results")  # a bad `since`
    assert {"400"} <= statuses("POST", "/v1/webhooks/contentful")
    assert statuses("GET", "/health") == {"200"}  # nothing to get wrong
    assert {"201", "409", "413", "422", "503"} <= statuses("POST", "/v1/models")
    assert {"409", "503"} <= statuses("PUT", "/v1/models/active")
    assert {"404", "409"} <= statuses("POST", "/v1/experiences/{key}/resume")
    assert {"422"} <= statuses("POST", "/v1/models/{version}/evaluate")
    assert {"401", "413", "503"} <= statuses("POST", "/v1/webhooks/contentful")
    assert "413" not in statuses("GET", "/v1/experiences")  # no body, no body limit
    ready = operations[("GET", "/ready")]["responses"]["503"]
    assert ready["content"]["application/json"]["schema"]["$ref"].endswith("/Readiness")
    error = operations[("POST", "/v1/personalize")]["responses"]["503"]
    assert error["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")


def test_every_operation_has_request_and_response_examples(client: TestClient) -> None:
    for key, operation in _operations(client).items():
        for media_type, media in operation.get("requestBody", {}).get("content", {}).items():
            assert media.get("examples"), (key, "request", media_type)
        answers = [
            (status, media_type, media)
            for status, response in operation["responses"].items()
            for media_type, media in response.get("content", {}).items()
            if media.get("schema") not in ({}, None)  # a stream (a zip, server-sent events): no document to show
        ]
        streams = all(media.get("schema") in ({}, None)
                      for status, response in operation["responses"].items() if status.startswith("2")
                      for media in response.get("content", {}).values())
        assert streams or any(status.startswith("2") for status, _, _ in answers), key
        for status, media_type, media in answers:
            assert media.get("examples"), (key, status, media_type)
    events = _operations(client)[("POST", "/v1/events")]
    sent = events["requestBody"]["content"]["application/json"]["examples"]["example"]["value"]["events"]
    assert {event["type"] for event in sent} >= {"page_view", "conversion", "purchase"}
    answer = events["responses"]["202"]["content"]["application/json"]["examples"]["example"]["value"]
    assert answer["rejected"][0]["key"] == "events[3].currency"
    error = events["responses"]["429"]["content"]["application/json"]["examples"]["example"]["value"]
    assert error["status_code"] == 429 and set(error["extra"]) == {"limit", "window_s", "scope"}


def test_examples_validate_against_their_schemas(client: TestClient) -> None:
    """A hand-written example that drifts from its schema would teach clients the wrong shape."""
    document = _document(client)
    checked = 0
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            bodies = [operation.get("requestBody", {})] + list(operation["responses"].values())
            for body in bodies:
                media = body.get("content", {}).get("application/json")
                if not media or "examples" not in media:
                    continue
                validator = _validator(document, media["schema"])
                for example in media["examples"].values():
                    errors = [error.message for error in validator.iter_errors(example["value"])]
                    assert not errors, (method.upper(), path, errors)
                    checked += 1
    assert checked > 100


def _validator(document: dict, schema: dict) -> jsonschema_rs.Validator:
    """A JSON Schema 2020-12 validator (what OpenAPI 3.1 schemas are) with the document's components
    beside ``schema``, so its ``#/components/schemas/...`` references resolve."""
    return jsonschema_rs.Draft202012Validator({**schema, "components": document["components"]})


def test_every_property_of_every_schema_has_a_description(client: TestClient) -> None:
    schemas = _document(client)["components"]["schemas"]
    missing = {
        name: sorted(p for p, spec in schema.get("properties", {}).items() if not spec.get("description"))
        for name, schema in schemas.items()
    }
    missing = {name: properties for name, properties in missing.items() if properties}
    assert not missing, ("describe these fields: Annotated[T, Meta(description=...)] on the Struct field", missing)
    described = sum(len(schema.get("properties", {})) for schema in schemas.values())
    assert described > 500


def test_the_events_of_a_batch_are_a_union_discriminated_on_type(client: TestClient) -> None:
    schemas = _document(client)["components"]["schemas"]
    items = schemas["EventBatch"]["properties"]["events"]["items"]
    kinds = event_kinds()
    assert len(items["oneOf"]) == len(kinds) >= 11
    assert items["discriminator"]["propertyName"] == "type"
    mapping = items["discriminator"]["mapping"]
    assert set(mapping) == set(kinds) >= {"page_view", "purchase", "survey_shown", "survey_dismissed"}
    assert sorted(ref["$ref"] for ref in items["oneOf"]) == sorted(mapping.values())
    for tag, ref in mapping.items():
        schema = schemas[ref.removeprefix("#/components/schemas/")]
        assert schema["properties"]["type"]["enum"] == [tag]
        assert "type" in schema["required"] and "visitor_id" not in schema["required"]  # user_id may stand in
        assert {"visitor_id", "ts", "event_id", "analytics", "user_id", "identity_token"} <= set(schema["properties"])
        assert schema["additionalProperties"] is False
        assert all(spec.get("description") for spec in schema["properties"].values()), tag
    purchase = schemas[mapping["purchase"].removeprefix("#/components/schemas/")]
    assert {"order_id", "value"} <= set(purchase["required"])


def test_the_documented_union_accepts_what_the_route_accepts(client: TestClient, delivery: dict[str, str]) -> None:
    """The document and the decoder agree: each example event validates against its kind's schema and is recorded."""
    document = _document(client)
    validator = _validator(document, document["components"]["schemas"]["EventBatch"])
    good = {"events": [{"type": "task", "visitor_id": "doc-1", "name": "checkout", "success": True, "duration_ms": 900}]}
    assert validator.is_valid(good)
    bad = {"events": [{"type": "task", "visitor_id": "doc-1", "name": "checkout"}]}  # no `success`
    assert not validator.is_valid(bad)
    assert not validator.is_valid({"events": [{**good["events"][0], "type": "teleport"}]})  # no such kind
    response = client.post("/v1/events", json={"events": good["events"] + bad["events"]}, headers=delivery)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["accepted"] == 1
    assert body["rejected"] == [
        {"index": 1, "key": "events[1].success", "message": "Object missing required field `success`", "field": "success"}
    ]


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)


def test_reference_pages_load_only_local_assets_that_are_served(client: TestClient) -> None:
    for path in ("/schema", "/schema/swagger"):
        page = client.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "cdn." not in page.text and "https://" not in page.text.split("<body", 1)[0]
        parser = _Assets()
        parser.feed(page.text)
        assert len(parser.urls) == 4, parser.urls  # the bundle, the preset, the stylesheet, the icon
        for url in parser.urls:
            assert url.startswith("/schema/assets/"), url
            asset = client.get(url)
            assert asset.status_code == 200, url
            assert asset.content == (ASSETS_DIR / url.rsplit("/", 1)[-1]).read_bytes()
    assert client.get("/schema/assets/swagger-ui-bundle.js").headers["content-type"].split(";")[0] in (
        "application/javascript",
        "text/javascript",
    )
    assert client.get("/schema/assets/swagger-ui.css").headers["content-type"].startswith("text/css")
    assert "Apache License" in (ASSETS_DIR / "LICENSE").read_text()  # the vendored release's licence ships with it
    assert client.get("/schema/openapi.yaml").status_code == 200

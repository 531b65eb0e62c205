"""The API reference: hand-chosen operation ids and descriptions, every status, and pages that need no CDN."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from litestar.testing import TestClient

from api.http.openapi_docs import ASSETS_DIR, OPERATIONS

METHODS = ("get", "put", "post", "delete", "patch")
#: What Litestar makes up from the path and handler name: ``V1ExperiencesKeyResultsResults``.
FRAMEWORK_ID = re.compile(r"^[A-Z]")


def _operations(client: TestClient) -> dict[tuple[str, str], dict]:
    schema = client.get("/schema/openapi.json").json()
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

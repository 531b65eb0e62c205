"""The API reference renders in a real browser with the network to every other host cut.

``/schema`` is Swagger UI served from files installed with Vary (api/http/openapi_docs.py): a
self-hosted service's reference must not go blank offline. Chromium is allowed to reach only the
Vary server; any request elsewhere is aborted and fails the test.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.e2e.browser import artifacts_dir
from tests.e2e.servers import VaryProcess, running

pytestmark = [pytest.mark.e2e]


@pytest.fixture
def server(redis_url: str, model_dir: Path, tmp_path: Path) -> Iterator[VaryProcess]:
    data_dir = tmp_path / "data"
    shutil.copytree(model_dir / "models", data_dir / "models")  # the session's demo model: no training here
    env = {"VARY_REDIS_URL": redis_url, "VARY_DELIVERY_KEYS": "docs-delivery", "VARY_ADMIN_KEYS": "docs-admin"}
    with running(env, data_dir) as process:
        yield process


def test_reference_renders_the_operations_with_the_network_cut(server: VaryProcess, page) -> None:
    outside: list[str] = []
    local: list[str] = []

    def only_vary(route) -> None:
        url = route.request.url
        if urlsplit(url).netloc == f"127.0.0.1:{server.port}":
            local.append(url)
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    page.route("**/*", only_vary)
    page.goto(f"{server.base}/schema", wait_until="networkidle")
    page.wait_for_selector(".opblock-summary-path", timeout=20_000)
    text = page.inner_text("body")
    page.screenshot(path=str(artifacts_dir() / "api-reference.png"))
    assert outside == [], outside
    assert any(url.endswith("/schema/assets/swagger-ui-bundle.js") for url in local), local
    for expected in ("/v1/personalize", "Personalized content for one visitor", "/v1/experiences/{key}/results", "/ready"):
        assert expected in text, expected
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert len(paths) >= 25, paths
    assert page.console_errors.messages == []

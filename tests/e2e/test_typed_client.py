"""A typed client generated from the live OpenAPI document talks to the real server.

``openapi-python-client`` (in the ``test`` extra) turns ``/schema/openapi.json`` into a package; the test
imports it and calls ``/v1/personalize``, ``/v1/exposures`` and ``/v1/events`` through its typed
functions and models. The generator must finish without a warning: a warning means a piece of the
API (a response, a model) was left out of the client.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.servers import VaryProcess, running

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DELIVERY = "typed-delivery"
ADMIN = "typed-admin"
PACKAGE = "vary_typed_client"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VaryProcess]:
    with running({"VARY_DELIVERY_KEYS": DELIVERY, "VARY_ADMIN_KEYS": ADMIN}, tmp_path_factory.mktemp("typed-data")) as process:
        yield process


@pytest.fixture(scope="module")
def client_package(server: VaryProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """The generated package, importable for the duration of the module."""
    root = tmp_path_factory.mktemp("typed-client")
    schema = root / "openapi.json"
    schema.write_bytes(httpx.get(f"{server.base}/schema/openapi.json", timeout=10).content)
    config = root / "config.yaml"
    # No ruff/formatter runs on the generated code; the export download (a zip) is read as a file.
    config.write_text("post_hooks: []\ncontent_type_overrides:\n  application/zip: application/octet-stream\n")
    generator = Path(sys.executable).with_name("openapi-python-client")
    result = subprocess.run(
        [str(generator), "generate", "--path", str(schema), "--meta", "none",
         "--output-path", str(root / PACKAGE), "--config", str(config)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Warning" not in output and "WARNING" not in output, output
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def test_personalize_exposures_and_events_through_the_generated_client(
    server: VaryProcess, client_package: object
) -> None:
    client_mod = importlib.import_module(f"{PACKAGE}.client")
    models = importlib.import_module(f"{PACKAGE}.models")
    personalize = importlib.import_module(f"{PACKAGE}.api.delivery.personalize")
    record_exposures = importlib.import_module(f"{PACKAGE}.api.delivery.record_exposures")
    record_events = importlib.import_module(f"{PACKAGE}.api.delivery.record_events")

    with client_mod.AuthenticatedClient(base_url=server.base, token=DELIVERY) as client:
        request = models.PersonalizeRequest(
            visitor=models.Visitor(id="typed-1", country="CA", channel=models.VisitorChannel.WEB),
            entries=["heroHome", "bannerShipping"],
            locale="en-US",
            exposures=models.PersonalizeRequestExposures.ON_VIEW,
        )
        response = personalize.sync_detailed(client=client, body=request)
        assert response.status_code == 200, response.content
        answer = response.parsed
        assert isinstance(answer, models.PersonalizeResponse)
        assert answer.visitor_id == "typed-1" and answer.locale == "en-US" and answer.degraded is False
        assert set(answer.segments.additional_properties) == {"price_sensitive", "high_intent", "loyal"}
        hero, banner = answer.entries
        assert isinstance(hero, models.PersonalizedEntry)
        assert (hero.entry_id, hero.content_type, banner.entry_id) == ("heroHome", "hero", "bannerShipping")
        assert isinstance(hero.variant, int) and isinstance(hero.propensity, float) and hero.reason
        if answer.segments["price_sensitive"] < 0.6:
            assert hero.variant_entry_id == "heroHomeCanada" and hero.experience == "hero-north-america"
        assert isinstance(hero.exposure_token, str)

        seen = record_exposures.sync_detailed(
            client=client, body=models.ExposureBatch(tokens=[hero.exposure_token, "not-a-token"])
        )
        assert seen.status_code == 202, seen.content
        assert isinstance(seen.parsed, models.ExposuresAccepted)
        assert (seen.parsed.accepted, seen.parsed.duplicates) == (1, 0)
        assert [(r.index, r.reason) for r in seen.parsed.rejected] == [(1, "malformed")]

        event = models.ConversionEvent(  # one model per event kind: the document's oneOf on `type`
            type_=models.ConversionEventType.CONVERSION, visitor_id="typed-1", goal="purchase", value=42.0, event_id="t-1"
        )
        sent = record_events.sync_detailed(client=client, body=models.EventBatch(events=[event]))
        assert sent.status_code == 202, sent.content
        assert isinstance(sent.parsed, models.EventsAccepted)
        assert (sent.parsed.accepted, sent.parsed.duplicates, sent.parsed.rejected) == (1, 0, [])

        bad = personalize.sync_detailed(
            client=client, body=models.PersonalizeRequest(visitor=models.Visitor(id="typed-1"), entries=["nope"])
        )
        assert bad.status_code == 404
        assert isinstance(bad.parsed, models.ErrorBody) and bad.parsed.status_code == 404

    with client_mod.AuthenticatedClient(base_url=server.base, token="wrong") as stranger:
        refused = record_events.sync_detailed(client=stranger, body=models.EventBatch(events=[event]))
        assert refused.status_code == 401 and isinstance(refused.parsed, models.ErrorBody)


def test_generated_methods_are_named_after_the_hand_chosen_operation_ids(
    server: VaryProcess, client_package: object
) -> None:
    """``getExperienceResults`` → ``api.admin.get_experience_results``, not ``v1_experiences_key_results_results``."""
    client_mod = importlib.import_module(f"{PACKAGE}.client")
    for name in ("admin.get_experience_results", "admin.list_experiences", "models.register_model", "delivery.get_entry"):
        importlib.import_module(f"{PACKAGE}.api.{name}")
    list_experiences = importlib.import_module(f"{PACKAGE}.api.admin.list_experiences")
    with client_mod.AuthenticatedClient(base_url=server.base, token=ADMIN) as admin:
        response = list_experiences.sync_detailed(client=admin)
    assert response.status_code == 200, response.content
    assert "hero-north-america" in response.content.decode()

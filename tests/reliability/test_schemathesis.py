"""Property-based API testing with Schemathesis against the real ``vary serve`` process.

Every operation in ``/schema/openapi.json`` gets a bounded number of generated requests (valid and
invalid), each sent three times: with the delivery key, with the admin key and with no key. No
response may be a 5xx, and every response must match the schema documented for its status code.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
from schemathesis import GenerationMode
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.e2e.servers import VaryProcess

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

DELIVERY = "st-delivery"
ADMIN = "st-admin"
KEYS = {
    "delivery": {"Authorization": f"Bearer {DELIVERY}"},
    "admin": {"Authorization": f"Bearer {ADMIN}"},
    "none": {},
}
MAX_EXAMPLES = 25


@pytest.fixture(scope="module")
def vary_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VaryProcess]:
    data_dir: Path = tmp_path_factory.mktemp("vary-st")
    vary = VaryProcess(
        {
            "VARY_DELIVERY_KEYS": DELIVERY,
            "VARY_ADMIN_KEYS": ADMIN,
            "VARY_AGGREGATE": "false",
            "VARY_CONTENT_POLL_S": "0",
        },
        data_dir,
    )
    try:
        vary.wait_ready()
        yield vary
    finally:
        vary.stop()


@pytest.fixture(scope="module")
def api_schema(vary_server: VaryProcess):  # noqa: ANN201 - schemathesis' schema type
    return schemathesis.openapi.from_url(f"{vary_server.base}/schema/openapi.json")


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


# Schemathesis's own strategies draw from `random` in some cases; Hypothesis then warns (a warning
# about the test tool's internals, not about Vary), and `filterwarnings = error` would fail the run.
@pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")
def test_api_conforms(vary_server: VaryProcess, http: requests.Session) -> None:
    """All operations, positive and negative data, three key sets. Failures are collected (one per
    operation, key set and failure kind, with a curl to reproduce) and reported together."""
    api = schemathesis.openapi.from_url(f"{vary_server.base}/schema/openapi.json")
    findings: dict[tuple[str, str, str], str] = {}
    counts: dict[str, int] = {}
    for result in api.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=MAX_EXAMPLES,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                database=None,
            )
            def run(case: schemathesis.Case) -> None:
                counts[operation.label] = counts.get(operation.label, 0) + 1
                for key_name, headers in KEYS.items():
                    try:
                        case.call_and_validate(
                            base_url=vary_server.base,
                            session=http,
                            headers=headers,
                            checks=[not_a_server_error, response_schema_conformance],
                            timeout=10,
                        )
                    except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - a finding, kept with its reproduction
                        for failure in getattr(exc, "exceptions", [exc]):
                            title = getattr(failure, "title", type(failure).__name__)
                            where = (operation.label, key_name, str(title))
                            if where not in findings:
                                findings[where] = f"{failure}\n    {case.as_curl_command(headers=headers)}"

            try:
                run()
            except Unsatisfiable:  # nothing to negate (e.g. no parameters, no body)
                assert mode is GenerationMode.NEGATIVE, operation.label
    total = sum(counts.values())
    print(f"\nschemathesis: {len(counts)} operations, {total} generated cases x {len(KEYS)} key sets")
    for label, n in sorted(counts.items()):
        print(f"  {label}: {n}")
    report = "\n".join(f"{op} [{key}] {title}:\n  {detail}" for (op, key, title), detail in sorted(findings.items()))
    assert not findings, f"{len(findings)} findings:\n{report}"

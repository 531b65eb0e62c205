"""A TypeScript client generated from the live OpenAPI document builds and talks to the real server.

``clients/ts`` is a small npm project: ``@hey-api/openapi-ts`` (pinned in its lock) turns
``/schema/openapi.json`` into ``src/client`` — a type per schema (one per event kind, from the
``oneOf`` on ``type``) and a function per hand-chosen operation id — ``tsc`` type-checks
``src/main.ts`` against it and builds it, and the built script personalizes, reports an exposure and
sends events through the generated functions. A schema the generator misreads, or a response that
no longer matches the types the script relies on, fails the build here rather than in a customer's
front end. Node and the packages come from ``tests/node_tools.py`` (``npm ci`` of the lock).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.servers import VaryProcess, running
from tests.node_tools import ROOT, node_binaries, npm_project

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PROJECT = ROOT / "clients" / "ts"
DELIVERY = "ts-delivery"
ADMIN = "ts-admin"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VaryProcess]:
    with running({"VARY_DELIVERY_KEYS": DELIVERY, "VARY_ADMIN_KEYS": ADMIN}, tmp_path_factory.mktemp("ts-data")) as process:
        yield process


def _node(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    node = node_binaries()[0]
    full_env = {**os.environ, "PATH": f"{Path(node[0]).parent}{os.pathsep}{os.environ.get('PATH', '')}", **(env or {})}
    return subprocess.run([*node, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def built(server: VaryProcess, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``clients/ts`` with its locked packages, the client generated from the live document, built."""
    installed = npm_project(PROJECT)
    work = tmp_path_factory.mktemp("ts-client")
    for name in ("package.json", "tsconfig.json", "openapi-ts.config.mjs"):
        shutil.copy2(PROJECT / name, work / name)
    shutil.copytree(PROJECT / "src", work / "src", ignore=shutil.ignore_patterns("client"))
    (work / "node_modules").symlink_to(installed.directory / "node_modules", target_is_directory=True)
    document = work / "openapi.json"
    document.write_bytes(httpx.get(f"{server.base}/schema/openapi.json", timeout=10).content)

    generated = _node(["node_modules/.bin/openapi-ts", "-f", "openapi-ts.config.mjs"], work, {"VARY_OPENAPI": str(document)})
    assert generated.returncode == 0, generated.stdout + generated.stderr
    sdk = (work / "src" / "client" / "sdk.gen.ts").read_text()
    for operation in ("personalize", "recordEvents", "recordExposures", "getExperienceResults", "listExperiences"):
        assert f"export const {operation} = " in sdk, operation  # named after the hand-chosen operation ids
    types = (work / "src" / "client" / "types.gen.ts").read_text()
    assert "events: Array<PageViewEvent | ClickEvent | ConversionEvent" in types  # the union, not `{ [key: string]: unknown }`

    build = _node(["node_modules/.bin/tsc", "-p", "."], work)
    assert build.returncode == 0 and not build.stdout.strip(), build.stdout + build.stderr
    return work


def test_the_generated_typescript_client_builds_and_calls_the_live_server(server: VaryProcess, built: Path) -> None:
    ran = _node(["dist/main.js", "ts-visitor-1"], built, {"VARY_URL": server.base, "VARY_KEY": DELIVERY})
    assert ran.returncode == 0, ran.stdout + ran.stderr
    answer = json.loads(ran.stdout)

    served = answer["personalize"]
    assert served["visitor_id"] == "ts-visitor-1" and served["tokens"] == 2
    assert [e["entry_id"] for e in served["entries"]] == ["heroHome", "bannerShipping"]
    assert served["entries"][0]["content_type"] == "hero" and isinstance(served["entries"][0]["variant"], int)

    # One error vocabulary: a rejected item names `key` and `message`, as a 4xx body's `extra` does,
    # and still carries the older names (`reason`, `field`) for one release.
    assert answer["exposures"] == {
        "accepted": 1,
        "duplicates": 0,
        "rejected": [{"index": 1, "key": "tokens[1]", "message": "malformed", "reason": "malformed"}],
    }
    events = answer["events"]
    assert (events["accepted"], events["duplicates"], events["spooled"]) == (3, 0, 0), events
    (rejected,) = events["rejected"]
    assert (rejected["index"], rejected["key"], rejected["field"]) == (3, "events[3].goal", "goal")
    assert "goal" in rejected["message"]

    refused = answer["refused"]
    assert refused["status"] == 400
    assert refused["error"]["extra"] == [{"key": "events[0].goal", "message": rejected["message"]}]


def test_the_ts_project_pins_every_package_it_installs() -> None:
    """``npm ci`` needs the lock to match ``package.json``; exact versions keep the generator's output stable."""
    package = json.loads((PROJECT / "package.json").read_text())
    lock = json.loads((PROJECT / "package-lock.json").read_text())
    for name, version in package["devDependencies"].items():
        assert version[0].isdigit(), (name, version)  # exact, no ranges
        assert lock["packages"][f"node_modules/{name}"]["version"] == version
    assert not (PROJECT / "node_modules").exists() or (PROJECT / ".gitignore").read_text().startswith("node_modules/")


@pytest.mark.parametrize("server_release", ["current", "previous"])
def test_sdk_js_reads_a_rejection_in_either_vocabulary(server: VaryProcess, tmp_path: Path, server_release: str) -> None:
    """``/v1/sdk.js`` run under Node against the live server: its one bad event is a 400 whose ``extra``
    names it by ``key`` and ``message``. A server of the previous release answered a rejection inside a
    202 with only ``field`` (``reason`` for tokens): the SDK reads that too and reports it by ``key``
    and ``message``. That older server cannot be started here, so its answer is the one canned thing."""
    sdk = tmp_path / "sdk.js"
    sdk.write_bytes(httpx.get(f"{server.base}/v1/sdk.js", timeout=10).content)
    older = (
        {"accepted": 0, "duplicates": 0, "rejected": [{"index": 0, "field": "goal", "message": "Object missing required field `goal`"}]}
        if server_release == "previous" else None
    )
    harness = Path(__file__).parent / "sdk_rejections" / "read_rejections.mjs"
    payload = json.dumps({"sdk": str(sdk), "baseUrl": server.base, "key": DELIVERY, "older": older})
    node = node_binaries()[0]
    ran = subprocess.run([*node, str(harness)], input=payload, capture_output=True, text=True, timeout=60, check=False)
    assert ran.returncode == 0, ran.stderr
    seen = json.loads(ran.stdout)
    if server_release == "current":
        assert seen["warnings"] == [] and seen["error"]["status"] == 400
        assert seen["error"]["body"]["extra"] == [{"key": "events[0].goal", "message": "Object missing required field `goal`"}]
    else:
        assert seen["error"] is None
        assert seen["warnings"] == ["vary: event rejected at events[0].goal: Object missing required field `goal`"]

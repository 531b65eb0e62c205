"""End to end: a Node process decides locally from a live server's bundle, and the results count it.

Issue 25's promise, checked with every part real: ``vary serve`` (its own process, the session
Valkey, the demo content and model), and a Node process (Node from ``tests/node_tools.py``) that
imports ``sdk/js/src/index.js`` as an application would. The Node side

* downloads ``GET /v1/bundle/key`` and ``GET /v1/bundle?fields=true``, checks that the same bytes
  with one value edited are refused (``bad_signature``), and verifies the real ones;
* decides locally, with no call to Vary, for ``VISITORS`` visitors (countries, devices, UTM tags,
  local page views and consents varied, so audiences, the segment model, holdouts and the global
  holdout all play a part) over the demo's three personalized entries;
* posts the exposures the SDK queued to ``POST /v1/exposures`` (``{"decisions": [...]}``) as the SDK
  does (``vary.flush()``, fetch with keepalive), and prints the server's answers.

Then the test checks that every exposure was accepted, that ``GET /v1/experiences/{key}/results``
(admin key, once the aggregator has settled) counts exactly the locally decided exposures per
experience and variant, and that forged exposures — a variant or a propensity edited, or a bundle
version that never existed — are rejected one by one with ``key`` (``decisions[i]``) and ``message``,
counted in ``/ready``, and not counted in the results.

One worker (``VARY_WORKERS=1``): ``/ready``'s accepted/rejected counters are per worker process.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.e2e.servers import VaryProcess, aggregation_settled, running
from tests.node_tools import node_binaries

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / "sdk" / "js" / "src" / "index.js"
DELIVERY = "e2e-local-delivery"
ADMIN = "e2e-local-admin"
#: Three entries each: 450 exposures at most, under the SDK's batch size (500), so every batch is
#: sent by the one ``flush()`` whose answers the script prints.
VISITORS = 150
ENTRIES = ["heroHome", "bannerShipping", "bannerNewsletter"]

#: The application side: what a Node server (or an edge function) using the SDK does.
LOCAL_DECIDER = r"""
import { readFileSync } from "node:fs";

const input = JSON.parse(readFileSync(0, "utf8"));
const { Vary, VaryError, memoryStorage } = await import(input.sdk);
const auth = { Authorization: `Bearer ${input.key}` };

const keyResponse = await fetch(`${input.base}/v1/bundle/key`, { headers: auth });
if (!keyResponse.ok) throw new Error(`GET /v1/bundle/key: HTTP ${keyResponse.status}`);
const { public_key: publicKey } = await keyResponse.json();
const response = await fetch(`${input.base}/v1/bundle?fields=true`, { headers: auth });
if (!response.ok) throw new Error(`GET /v1/bundle: HTTP ${response.status}`);
const bytes = new Uint8Array(await response.arrayBuffer());
const signature = response.headers.get("X-Vary-Signature");

// The same bytes with one value edited (the global holdout switched off) must not verify.
const text = new TextDecoder().decode(bytes);
const edited = text.replace(/"global_holdout":[0-9.e-]+/, '"global_holdout":0.0');
let tamperCode = null;
try {
  await Vary.fromBundle(new TextEncoder().encode(edited), { publicKey, signature });
} catch (error) {
  tamperCode = error instanceof VaryError ? error.code : String(error);
}

const storage = memoryStorage();
const vary = await Vary.fromBundle(bytes, {
  publicKey, signature, endpoint: input.base, key: input.key, storage, batchSize: 500, flushDelayMs: -1,
});
const countries = ["CA", "US", "DE", "FR", "GB", null];
const devices = ["mobile", "desktop", "tablet"];
const decided = [];
const started = performance.now();
for (let i = 0; i < input.visitors; i++) {
  const id = `e2e-local-${i}`;
  // Some returning visitors: page views kept in the SDK's local profile feed the segment model.
  for (let v = 0; v < i % 4; v++) vary.track("page_view", { visitorId: id, url: `https://shop.example/p/${v}`, now: input.now - 3600 * (v + 1) });
  const visitor = {
    id,
    channel: i % 7 === 6 ? "kiosk" : "web",
    country: countries[i % countries.length],
    device: devices[i % devices.length],
    utm: i % 5 === 0 ? { source: "newsletter", medium: "email", campaign: "summer-sale" } : {},
    consent: { personalization: i % 11 !== 10, analytics: i % 13 !== 12 },
  };
  const answer = vary.decide(visitor, input.entries, { now: input.now });
  for (const entry of answer.entries) {
    decided.push({
      visitor: id, analytics: visitor.consent.analytics, entry_id: entry.entry_id, experience: entry.experience,
      variant: entry.variant, holdout: entry.holdout, propensity: entry.propensity, reason: entry.reason,
    });
  }
}
const decideMs = performance.now() - started;
// One more genuine decision, held back (manual exposures) for the batch with the forgeries: the first
// new visitor assigned (not held out) to the shipping test.
let fresh = null;
for (let i = 0; fresh === null; i++) {
  const answer = vary.decide({ id: `e2e-local-fresh-${i}` }, ["bannerShipping"], { now: input.now, exposures: "manual" });
  const entry = answer.entries[0];
  if (entry.experience === "banner-shipping-test" && !entry.holdout) fresh = entry.exposure();
}
const exposures = vary.pending();
const answers = await vary.flush({ beacon: false });
process.stdout.write(JSON.stringify({ bundle_version: vary.version, tamper_code: tamperCode, decided, exposures, fresh, answers, decide_ms: decideMs }));
"""


@pytest.fixture
def server(redis_url: str, model_dir: Path, tmp_path: Path) -> Iterator[VaryProcess]:
    data_dir = tmp_path / "data"
    shutil.copytree(model_dir / "models", data_dir / "models")  # the session's demo model: no training here
    env = {
        "VARY_REDIS_URL": redis_url, "VARY_DELIVERY_KEYS": DELIVERY, "VARY_ADMIN_KEYS": ADMIN, "VARY_WORKERS": "1",
    }  # fmt: skip
    with running(env, data_dir) as process:
        yield process


def _decide_locally(server: VaryProcess, tmp_path: Path, now: float) -> dict[str, Any]:
    node, _ = node_binaries()
    script = tmp_path / "local_decider.mjs"
    script.write_text(LOCAL_DECIDER, encoding="utf-8")
    payload = {"sdk": SDK.as_uri(), "base": server.base, "key": DELIVERY, "visitors": VISITORS, "entries": ENTRIES, "now": now}
    done = subprocess.run(
        [*node, str(script)], input=json.dumps(payload).encode(), capture_output=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-4000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _settled_results(http: httpx.Client, store: redis.Redis, keys: list[str], timeout: float = 60.0) -> dict[str, Any]:
    """Each experience's results once the aggregator has read and acknowledged every stream entry
    and two polls in a row agree."""
    deadline = time.monotonic() + timeout
    previous: dict[str, Any] | None = None
    while True:
        current = {}
        for key in keys:
            response = http.get(f"/v1/experiences/{key}/results", headers={"Authorization": f"Bearer {ADMIN}"})
            assert response.status_code == 200, response.text
            current[key] = response.json()
        exposures = {key: body["exposures"] for key, body in current.items()}
        if previous is not None and exposures == previous and aggregation_settled(store):
            return current
        assert time.monotonic() < deadline, f"aggregates still moving: {exposures}"
        previous = exposures
        time.sleep(1.0)


def _counted(results: dict[str, Any]) -> dict[str, tuple[dict[int, int], int]]:
    """Per experience: exposures per variant (holdouts apart, as the results API reports them) and
    held-out visitors."""
    return {
        key: ({v: int(n) for v, n in enumerate(body["exposures"]) if n}, int(body["holdout_visitors"]))
        for key, body in results.items()
    }


def _expected(sent: list[dict[str, Any]], keys: list[str]) -> dict[str, tuple[dict[int, int], int]]:
    """The same, from the decisions the Node process made and sent (one entry per experience, so
    one exposure per visitor and experience)."""
    return {
        key: (
            dict(Counter(d["variant"] for d in sent if d["experience"] == key and not d["holdout"])),
            sum(1 for d in sent if d["experience"] == key and d["holdout"]),
        )
        for key in keys
    }


def _ready(http: httpx.Client) -> dict[str, Any]:
    response = http.get("/ready")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_node_decides_locally_and_the_results_count_its_exposures_but_not_forged_ones(
    server: VaryProcess, redis_url: str, tmp_path: Path
) -> None:
    now = time.time()
    local = _decide_locally(server, tmp_path, now)

    # The bundle was verified: edited bytes under the real signature were refused.
    assert local["tamper_code"] == "bad_signature"
    decided, exposures = local["decided"], local["exposures"]
    assert len(decided) == VISITORS * len(ENTRIES)
    # Every decision of a visitor with analytics consent was queued, with its bundle version and inputs.
    sent = [d for d in decided if d["analytics"]]
    assert len(exposures) == len(sent) and 0 < len(sent) < len(decided)
    assert {e["bundle_version"] for e in exposures} == {local["bundle_version"]}
    assert [(e["visitor"]["id"], e["entry_id"], e["variant"]) for e in exposures] == [
        (d["visitor"], d["entry_id"], d["variant"]) for d in sent
    ]
    # The decisions exercised the demo: several experiences and variants, holdouts, baselines.
    keys = sorted({d["experience"] for d in decided if d["experience"] is not None})
    assert {"hero-north-america", "banner-shipping-test", "newsletter-copy"} <= set(keys), keys
    assert any(d["holdout"] for d in decided) and any(d["experience"] is None for d in decided)
    assert any(d["reason"].startswith("global holdout") for d in decided)
    assert any(d["reason"].startswith("baseline: the visitor has not consented") for d in decided)

    # The server recomputed every one from the bundle it names and accepted it.
    answers = local["answers"]
    assert answers and all(a is not None for a in answers)
    rejected = [r for a in answers for r in a["rejected"]]
    assert rejected == [], rejected[:5]
    assert sum(a["accepted"] for a in answers) == len(exposures)
    assert sum(a["duplicates"] for a in answers) == 0

    store = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        with httpx.Client(base_url=server.base, timeout=10) as http:
            assert _ready(http)["local_exposures_accepted"] == len(exposures)
            expected = _expected(sent, keys)
            results = _settled_results(http, store, keys)
            assert _counted(results) == expected

            # Forged exposures: each edits one thing in a genuine, already recorded exposure (and its
            # ``ts``, so a forgery that slipped through would be a new exposure, not a duplicate); sent
            # with one genuine decision not yet recorded, which alone is accepted.
            genuine = next(e for e in exposures if e["experience"] == "banner-shipping-test")
            other_variant = 2 if genuine["variant"] == 1 else 1
            forged_variant = {**genuine, "variant": other_variant, "ts": genuine["ts"] + 1}
            forged_propensity = {**genuine, "propensity": round(genuine["propensity"] * 0.9, 6), "ts": genuine["ts"] + 2}
            forged_version = {**genuine, "bundle_version": "0" * 20, "ts": genuine["ts"] + 3}
            fresh = local["fresh"]
            batch = [forged_variant, fresh, forged_propensity, forged_version]
            response = http.post("/v1/exposures", json={"decisions": batch}, headers={"Authorization": f"Bearer {DELIVERY}"})
            assert response.status_code == 202, response.text
            body = response.json()
            assert body["accepted"] == 1, body
            by_index = {r["index"]: r for r in body["rejected"]}
            assert sorted(by_index) == [0, 2, 3], body
            for index, rejection in by_index.items():
                assert rejection["key"] == f"decisions[{index}]"
                assert rejection["message"], rejection
            assert "variant" in by_index[0]["message"] and "propensity" in by_index[2]["message"], by_index
            assert "unknown bundle version" in by_index[3]["message"]

            # A batch of forgeries only: 400, each named in the standard error body.
            response = http.post(
                "/v1/exposures", json={"decisions": [forged_variant, forged_propensity]},
                headers={"Authorization": f"Bearer {DELIVERY}"},
            )  # fmt: skip
            assert response.status_code == 400, response.text
            problems = {p["key"]: p["message"] for p in response.json()["extra"]}
            assert set(problems) == {"decisions[0]", "decisions[1]"}, problems

            # Counted: five rejected, one more accepted; the results moved by the fresh one only.
            ready = _ready(http)
            assert ready["local_exposures_accepted"] == len(exposures) + 1
            assert ready["local_exposures_rejected"] == {"inconsistent": 4, "unknown_version": 1}
            assert fresh["experience"] == "banner-shipping-test"
            assert _counted(_settled_results(http, store, keys)) == _expected([*sent, {**fresh, "holdout": False}], keys)
    finally:
        store.close()
    print(f"\n{VISITORS} visitors decided locally in {local['decide_ms']:.1f} ms; {len(exposures)} exposures accepted")


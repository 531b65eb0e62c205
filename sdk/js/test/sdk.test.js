// Unit tests of the client: bundle verification, local profile, sticky assignments, frequency caps,
// consent, exposures sent to a real HTTP server, and properties of the pure pieces. What the numbers
// must equal is proven against Vary's Python elsewhere (python.cross.js, decisions.cross.js).
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";

import {
  Vary, VaryError, bucketHash, evalCondition, fnv1a32, memoryStorage, pyFixed, pyG, regexError, regexSearch,
} from "../src/index.js";

const NOW = 1767225600; // 2026-01-01T00:00:00Z

function experience(key, overrides = {}) {
  return {
    id: key, key, name: key, type: "ab_test", variants: [`${key}-b`], weights: [0.5, 0.5], audience: null,
    traffic_allocation: 1, holdout: 0, goals: [], starts_at: null, ends_at: null, content_type: "hero",
    bandit_method: "thompson", epsilon: 0.1, min_probability: 0.05, bucketing: "growthbook", layer: null,
    layer_range: null, frequency_cap: null, guardrails: [], updated_at: null, phase: 1, paused: {},
    ...overrides,
  };
}

function bundle(experiences, entries, overrides = {}) {
  return {
    format: 1, version: "test-1", content_version: "c1", model_version: null, policy_versions: {},
    created_at: NOW, locale: "en-US", global_holdout: 0,
    experiences: Object.fromEntries(experiences.map((x) => [x.key, x])), entries,
    segment_model: null, policies: {}, server_only: [], fields: null, ...overrides,
  };
}

const SIMPLE = bundle([experience("hero")], { heroHome: ["hero"] });

async function keyPair() {
  const pair = await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
  const raw = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  return { pair, publicKey: btoa(String.fromCharCode(...raw)) };
}

async function sign(pair, bytes) {
  return new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, pair.privateKey, bytes));
}

// -- pure pieces: properties --------------------------------------------------------------------------

test("Python formatting rounds ties to even, as f-strings do", () => {
  assert.equal(pyFixed(0.125, 2), "0.12");
  assert.equal(pyFixed(0.375, 2), "0.38");
  assert.equal(pyFixed(2.5, 0), "2");
  assert.equal(pyFixed(3.5, 0), "4");
  assert.equal(pyG(0.25), "0.25");
  assert.equal(pyG(5), "5");
  assert.equal(pyG(1e-5), "1e-05");
});

test("hash v2 is uniform and FNV-1a runs over UTF-16 code units", () => {
  let sum = 0;
  for (let i = 0; i < 10000; i++) sum += bucketHash("exp", `visitor-${i}`, 2);
  assert.ok(Math.abs(sum / 10000 - 0.5) < 0.02);
  // An emoji is two code units: hashing it equals hashing its surrogate pair.
  assert.equal(fnv1a32("😀"), fnv1a32("\ud83d\ude00"));
  assert.notEqual(fnv1a32("ö"), fnv1a32("o"));
});

test("conditions never throw: malformed ones fail closed", () => {
  assert.equal(evalCondition({ a: 1 }, { $or: 5 }), false);
  assert.equal(evalCondition({ a: 1 }, { a: { $in: "x" } }), false);
  assert.equal(evalCondition({ a: 1 }, { a: { $unknown: 1 } }), false);
  assert.equal(evalCondition({ a: 1 }, "not an object"), false);
  let deep = { a: 1 };
  for (let i = 0; i < 100000; i++) deep = { $and: [deep] };
  assert.equal(evalCondition({ a: 1 }, deep), false);
  assert.equal(evalCondition({}, { missing: { $lt: 10 } }), true); // JS: null < 10
});

test("regexes the server's RE2 refuses are refused here too, and long text never matches", () => {
  for (const pattern of ["(a)\\1", "foo(?=bar)", "(?<=a)b", "(?i)x", "\\p{L}", "[\\S]", "a{1001}"]) {
    assert.notEqual(regexError(pattern), null, pattern);
    assert.equal(evalCondition({ p: "aa foobar" }, { p: { $regex: pattern } }), false, pattern);
  }
  assert.equal(regexError("^/pri(cing)?$"), null);
  assert.equal(regexSearch("x", false, "/" + "x".repeat(2048)), false);
  assert.equal(regexSearch("x", false, "x".repeat(2048)), true);
});

// -- bundle verification ----------------------------------------------------------------------------

test("a signed bundle is verified with Ed25519; one changed byte is refused", async () => {
  const { pair, publicKey } = await keyPair();
  const bytes = new TextEncoder().encode(JSON.stringify(SIMPLE));
  const signature = await sign(pair, bytes);
  const vary = await Vary.fromBundle(bytes, { publicKey, signature: btoa(String.fromCharCode(...signature)), storage: memoryStorage() });
  assert.equal(vary.version, "test-1");
  const forged = bytes.slice();
  forged[10] ^= 1;
  await assert.rejects(Vary.fromBundle(forged, { publicKey, signature }), (e) => e instanceof VaryError && e.code === "bad_signature");
  const other = await keyPair();
  await assert.rejects(Vary.fromBundle(bytes, { publicKey: other.publicKey, signature }), (e) => e.code === "bad_signature");
});

test("refusals name what is wrong: no signature, a parsed object with a key, an unknown format", async () => {
  const { publicKey } = await keyPair();
  const bytes = new TextEncoder().encode(JSON.stringify(SIMPLE));
  await assert.rejects(Vary.fromBundle(bytes, { publicKey }), (e) => e.code === "no_signature");
  await assert.rejects(Vary.fromBundle(SIMPLE, { publicKey, signature: "AA==" }), (e) => e.code === "unverifiable");
  await assert.rejects(Vary.fromBundle({ ...SIMPLE, format: 2 }), (e) => e.code === "bundle_format" && /format 2/.test(e.message));
  await assert.rejects(Vary.fromBundle("{not json"), (e) => e.code === "bad_bundle");
  await assert.rejects(
    Vary.fromBundle({ ...SIMPLE, entries: { heroHome: ["nope"] } }),
    (e) => e.code === "bad_bundle" && /entries\.heroHome/.test(e.message),
  );
});

// -- decisions and the local profile ------------------------------------------------------------------

test("decide answers in POST /v1/personalize's shape, with fields when the bundle has them", async () => {
  const withFields = { ...SIMPLE, fields: { heroHome: { title: "A" }, "hero-b": { title: "B" } } };
  const vary = await Vary.fromBundle(withFields, { storage: memoryStorage(), exposures: "manual" });
  const answer = vary.decide({ id: "v1" }, ["heroHome", "unknown"], { now: NOW });
  assert.deepEqual(Object.keys(answer), ["visitor_id", "locale", "segments", "model_version", "content_version", "bundle_version", "degraded", "entries"]);
  const [hero, unknown] = answer.entries;
  assert.equal(hero.experience, "hero");
  assert.equal(hero.propensity, 0.5);
  assert.deepEqual(hero.fields, { title: hero.variant === 0 ? "A" : "B" });
  assert.equal(unknown.reason, "no experience on this entry: baseline");
  assert.equal(JSON.parse(JSON.stringify(answer)).entries[0].exposure_id, hero.exposure_id);
});

test("sticky assignments are kept on the device: new weights do not move a visitor", async () => {
  const storage = memoryStorage();
  const first = await Vary.fromBundle(SIMPLE, { storage, exposures: "manual" });
  const ids = Array.from({ length: 40 }, (_, i) => `visitor-${i}`);
  const before = new Map(ids.map((id) => [id, first.decide({ id }, ["heroHome"], { now: NOW }).entries[0].variant]));
  const reweighted = bundle([experience("hero", { weights: [0.01, 0.99] })], { heroHome: ["hero"] });
  const second = await Vary.fromBundle(reweighted, { storage, exposures: "manual" });
  for (const id of ids) {
    const entry = second.decide({ id }, ["heroHome"], { now: NOW + 60 }).entries[0];
    assert.equal(entry.variant, before.get(id), id);
    assert.match(entry.reason, /^everyone; sticky: /);
    assert.equal(entry.propensity, entry.variant === 0 ? 0.01 : 0.99); // under the current weights
  }
});

test("frequency caps are counted per device, per UTC day", async () => {
  const capped = bundle([experience("hero", { frequency_cap: { max_exposures: 2, period: "day" } })], { heroHome: ["hero"] });
  const vary = await Vary.fromBundle(capped, { storage: memoryStorage() });
  const reasons = [0, 1, 2].map((i) => vary.decide({ id: "v" }, ["heroHome"], { now: NOW + i }).entries[0].reason);
  assert.match(reasons[0], /^everyone; ab_test/);
  assert.match(reasons[1], /^everyone; sticky/);
  assert.match(reasons[2], /^frequency cap: 'hero' is served at most 2 times per day and this person has seen it 2 times/);
  assert.match(vary.decide({ id: "v" }, ["heroHome"], { now: NOW + 86400 }).entries[0].reason, /^everyone; sticky/);
});

test("consent: no personalization → baseline; no analytics → nothing stored, no exposure queued", async () => {
  const storage = memoryStorage();
  const vary = await Vary.fromBundle(SIMPLE, { storage });
  const answer = vary.decide({ id: "v", consent: { personalization: false } }, ["heroHome"], { now: NOW });
  assert.equal(answer.entries[0].reason, "baseline: the visitor has not consented to personalization");
  assert.equal(answer.entries[0].variant_entry_id, "heroHome");
  vary.decide({ id: "w", consent: { analytics: false } }, ["heroHome"], { now: NOW });
  assert.equal(storage.getItem("vary_profile:w"), null);
  assert.equal(vary.pending().filter((x) => x.visitor.id === "w").length, 0);
});

test("track() keeps the profile audiences read: visits, page views, bounded history", async () => {
  const returning = bundle(
    [experience("hero", { audience: { id: "a", key: "a", name: "Garden fans", condition: { "history.views.path~pre~%2Fgarden.count": { $gte: 2 }, "profile.visits": { $gte: 2 } } } })],
    { heroHome: ["hero"] },
  );
  const storage = memoryStorage();
  const vary = await Vary.fromBundle(returning, { storage, exposures: "manual" });
  assert.match(vary.decide({ id: "v" }, ["heroHome"], { now: NOW }).entries[0].reason, /not in audience 'Garden fans'/);
  vary.track("page_view", { visitorId: "v", url: "https://shop.example/garden/roses?x=1", now: NOW });
  vary.track("page_view", { visitorId: "v", url: "https://shop.example/garden", now: NOW + 4000 });
  const profile = vary.profile("v");
  assert.equal(profile.visits, 2); // 30 minutes of silence start a new visit
  assert.equal(profile.page_views, 2);
  assert.equal(profile.history["p:https://shop.example/garden/roses"], `1 ${NOW}`);
  assert.match(vary.decide({ id: "v" }, ["heroHome"], { now: NOW + 4001 }).entries[0].reason, /^audience 'Garden fans' matched \(history\.views/);
});

test("the global holdout gives held-out visitors every baseline", async () => {
  const held = { ...SIMPLE, global_holdout: 0.5 };
  const vary = await Vary.fromBundle(held, { storage: memoryStorage(), exposures: "manual" });
  let out = 0;
  for (let i = 0; i < 400; i++) {
    const answer = vary.decide({ id: `g-${i}` }, ["heroHome"], { now: NOW });
    if (answer.global.holdout) {
      out++;
      assert.equal(answer.entries[0].reason, "global holdout: baseline content for every experience (50% of visitors)");
      assert.equal(answer.global.propensity, 0.5);
    }
  }
  assert.ok(out > 150 && out < 250, `${out} of 400 held out`);
});

test("entries the bundle marks server_only are flagged", async () => {
  const vary = await Vary.fromBundle({ ...SIMPLE, server_only: ["heroHome"] }, { storage: memoryStorage(), exposures: "manual" });
  assert.equal(vary.decide({ id: "v" }, ["heroHome"], { now: NOW }).entries[0].server_only, true);
});

test("without a usable localStorage the profile lives in memory", async () => {
  const descriptor = Object.getOwnPropertyDescriptor(globalThis, "localStorage");
  Object.defineProperty(globalThis, "localStorage", { configurable: true, get() { throw new Error("SecurityError: storage disabled"); } });
  try {
    const vary = await Vary.fromBundle(SIMPLE, { exposures: "manual" });
    const id = vary.visitorId();
    assert.equal(vary.visitorId(), id);
    vary.decide({}, ["heroHome"], { now: NOW });
    assert.equal(Object.keys(vary.profile(id).assignments).length, 1);
  } finally {
    if (descriptor) Object.defineProperty(globalThis, "localStorage", descriptor);
    else delete globalThis.localStorage;
  }
});

test("a full storage (quota exceeded) never breaks a decision: the error goes to onError", async () => {
  const errors = [];
  const full = { getItem: () => null, setItem: () => { throw new Error("QuotaExceededError"); }, removeItem: () => {} };
  const vary = await Vary.fromBundle(SIMPLE, { storage: full, exposures: "manual", onError: (e) => errors.push(e.message) });
  const first = vary.decide({}, ["heroHome"], { now: NOW });
  assert.equal(first.entries[0].experience, "hero");
  assert.equal(vary.decide({}, ["heroHome"], { now: NOW }).visitor_id, first.visitor_id); // the id lives on in memory
  assert.ok(errors.length >= 2 && errors.every((m) => m === "QuotaExceededError"));
});

// -- a real HTTP server: Vary.load and exposures ---------------------------------------------------------

test("Vary.load fetches, verifies the X-Vary-Signature header, and refuses an unsigned answer", async () => {
  const { pair, publicKey } = await keyPair();
  const body = new TextEncoder().encode(JSON.stringify(SIMPLE));
  const signature = "ed25519=" + btoa(String.fromCharCode(...(await sign(pair, body))));
  const seen = [];
  const server = createServer((request, response) => {
    seen.push([request.url, request.headers.authorization]);
    response.writeHead(200, request.url.includes("unsigned") ? {} : { "X-Vary-Signature": signature });
    response.end(body);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    const endpoint = `http://127.0.0.1:${server.address().port}/`;
    const vary = await Vary.load({ endpoint, key: "vd_x", publicKey, locale: "en-US", fields: true, storage: memoryStorage() });
    assert.equal(vary.version, "test-1");
    assert.deepEqual(seen[0], ["/v1/bundle?locale=en-US&fields=true", "Bearer vd_x"]);
    await assert.rejects(Vary.load({ endpoint, key: "vd_x", publicKey, locale: "unsigned" }), (e) => e.code === "no_signature");
  } finally {
    server.close();
  }
});

// -- exposures to a real HTTP server -------------------------------------------------------------------

test("exposures are batched to POST /v1/exposures with the bundle version and the decision's inputs", async () => {
  const received = [];
  const server = createServer((request, response) => {
    let body = "";
    request.on("data", (chunk) => (body += chunk));
    request.on("end", () => {
      received.push({ url: request.url, auth: request.headers.authorization, body: JSON.parse(body) });
      response.writeHead(200, { "Content-Type": "application/json" });
      response.end(JSON.stringify({ accepted: JSON.parse(body).decisions.length }));
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    const endpoint = `http://127.0.0.1:${server.address().port}`;
    const vary = await Vary.fromBundle(SIMPLE, { storage: memoryStorage(), endpoint, key: "vd_test", batchSize: 4, flushDelayMs: -1 });
    for (let i = 0; i < 10; i++) vary.decide({ id: `e-${i}`, traits: { plan: "pro" }, country: "CA", note: "not a Visitor field" }, ["heroHome"], { now: NOW });
    const answers = await vary.flush();
    // 10 exposures, batches of 4: the first two were sent as the queue filled, the rest now.
    await new Promise((resolve) => setTimeout(resolve, 50));
    const decisions = received.flatMap((r) => r.body.decisions);
    assert.equal(decisions.length, 10);
    assert.ok(received.every((r) => r.url === "/v1/exposures" && r.auth === "Bearer vd_test"));
    assert.ok(received.every((r) => r.body.decisions.length <= 4));
    assert.ok(answers.length >= 1);
    const first = decisions[0];
    assert.deepEqual(Object.keys(first), ["bundle_version", "ts", "visitor", "profile", "entry_id", "experience", "variant", "propensity"]);
    assert.equal(first.bundle_version, "test-1");
    assert.equal(first.visitor.traits.plan, "pro");
    assert.equal(first.visitor.country, "CA");
    assert.equal("note" in first.visitor, false); // the server's Visitor forbids unknown fields
    assert.equal(first.ts, NOW);
  } finally {
    server.close();
  }
});

// make bench: the JS SDK's local decision vs GrowthBook's JS SDK (@growthbook/growthbook, pinned in
// package-lock.json) on the same assignments, as bench/decision.py compares decide() with gb.run.
//
// Input (JSON on stdin, tests/node_tools.NodeProject.run): {"sdk": "<absolute path of sdk/js/src/index.js>",
// "quick": bool}. Output (JSON): agreement checked, µs per call for one and three experiences on each
// side, and the bundle's parse + Ed25519 verify time.
//
// The three experiments of bench/decision.py: bench-hero (50/50, country in [CA, US]), bench-shipping
// (34/33/33, everyone), bench-newsletter (50/50, 50 % coverage, channel in [web, ios, android]). Vary's
// side is a whole Vary.decide(): canonical visitor, attributes, audience, bucketing, the reason (the
// exposure record is built when the caller asks for it, entry.exposure()); GrowthBook's is setAttributes + run per experiment (no tracking callback). No segment
// model on either side. Visitors are new, each iteration a different one.
import { GrowthBook } from "@growthbook/growthbook";
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const input = JSON.parse(readFileSync(0, "utf8") || "{}");
const { Vary, memoryStorage } = await import(pathToFileURL(input.sdk).href);
const quick = Boolean(input.quick);

const SPECS = [
  { key: "bench-hero", k: 2, weights: [0.5, 0.5], coverage: 1, condition: { country: { $in: ["CA", "US"] } } },
  { key: "bench-shipping", k: 3, weights: [0.34, 0.33, 0.33], coverage: 1, condition: null },
  { key: "bench-newsletter", k: 2, weights: [0.5, 0.5], coverage: 0.5, condition: { channel: { $in: ["web", "ios", "android"] } } },
];

function experience(spec) {
  return {
    id: `exp-${spec.key}`, key: spec.key, name: spec.key, type: "ab_test",
    variants: Array.from({ length: spec.k - 1 }, (_, i) => `${spec.key}-v${i + 1}`), weights: spec.weights,
    audience: spec.condition ? { id: `aud-${spec.key}`, key: `aud-${spec.key}`, name: `audience of ${spec.key}`, condition: spec.condition } : null,
    traffic_allocation: spec.coverage, holdout: 0, goals: [], starts_at: null, ends_at: null, content_type: null,
    bandit_method: "thompson", epsilon: 0.1, min_probability: 0.05, bucketing: "growthbook", layer: null, layer_range: null,
    frequency_cap: null, guardrails: [], updated_at: null, phase: 1, paused: {},
  };
}

const bundle = {
  format: 1, version: "bench", content_version: "bench", model_version: null, policy_versions: {}, created_at: 0,
  locale: null, global_holdout: 0, experiences: Object.fromEntries(SPECS.map((s) => [s.key, experience(s)])),
  entries: Object.fromEntries(SPECS.map((s) => [`entry-${s.key}`, [s.key]])), segment_model: null, policies: {},
  server_only: [], fields: null,
};
const experiments = SPECS.map((s) => ({
  key: s.key, variations: Array.from({ length: s.k }, (_, i) => i), weights: s.weights, coverage: s.coverage,
  ...(s.condition ? { condition: s.condition } : {}), hashVersion: 2,
}));

let seed = 2;
const random = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
const pick = (xs) => xs[Math.floor(random() * xs.length)];
const hex = (n) => Array.from({ length: n }, () => Math.floor(random() * 16).toString(16)).join("");
const visitors = (n) => Array.from({ length: n }, () => ({
  id: `${hex(8)}-${hex(24)}`, channel: pick(["web", "web", "ios", "email"]), country: pick(["US", "US", "CA", "DE"]),
  device: pick(["mobile", "desktop"]),
}));

// Signed bytes, to time what a page pays once: parse + verify.
const pair = await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
const bytes = new TextEncoder().encode(JSON.stringify(bundle));
const signature = new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, pair.privateKey, bytes));
const publicKey = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
const vary = await Vary.fromBundle(bytes, { publicKey, signature, storage: memoryStorage(), exposures: "manual" });
const gb = new GrowthBook();
const now = Date.now() / 1000;
const empty = {};

// Agreement first: the same variant (or "not in the experiment") for every visitor and experiment.
let compared = 0;
for (const visitor of visitors(1000)) {
  const answer = vary.decide(visitor, SPECS.map((s) => `entry-${s.key}`), { now, profile: empty });
  gb.setAttributes(visitor);
  experiments.forEach((experiment, i) => {
    const result = gb.run(experiment);
    const entry = answer.entries[i];
    const gbVariant = result.inExperiment ? result.variationId : null;
    const varyVariant = entry.experience === null ? null : entry.variant;
    if (gbVariant !== varyVariant) throw new Error(`disagree on ${experiment.key} for ${visitor.id}: vary ${varyVariant}, growthbook ${gbVariant}`);
    compared++;
  });
}

function perCall(fn, batch, repeats) {
  const samples = [];
  for (let r = 0; r < repeats + 1; r++) {
    const start = process.hrtime.bigint();
    fn();
    const elapsed = Number(process.hrtime.bigint() - start) / 1e3 / batch;
    if (r > 0) samples.push(elapsed); // the first pass warms the JIT
  }
  samples.sort((a, b) => a - b);
  return samples[Math.floor(samples.length / 2)];
}

const batch = quick ? 2000 : 20000;
const repeats = quick ? 5 : 9;
const people = visitors(batch);
const one = ["entry-bench-hero"];
const three = SPECS.map((s) => `entry-${s.key}`);
const fns = {
  vary_one_us: () => { for (const v of people) vary.decide(v, one, { now, profile: empty }); },
  gb_one_us: () => { for (const v of people) { gb.setAttributes(v); gb.run(experiments[0]); } },
  vary_three_us: () => { for (const v of people) vary.decide(v, three, { now, profile: empty }); },
  gb_three_us: () => { for (const v of people) { gb.setAttributes(v); for (const e of experiments) gb.run(e); } },
};
const timings = {};
for (let pass = 0; pass < 2; pass++) {
  for (const [name, fn] of Object.entries(fns)) timings[name] = Math.min(timings[name] ?? Infinity, perCall(fn, batch, repeats));
}
const parseRuns = quick ? 200 : 1000;
let start = process.hrtime.bigint();
for (let i = 0; i < parseRuns; i++) await Vary.fromBundle(bytes, { publicKey, signature, storage: memoryStorage() });
const parse_verify_us = Number(process.hrtime.bigint() - start) / 1e3 / parseRuns;
start = process.hrtime.bigint();
for (let i = 0; i < parseRuns; i++) await Vary.fromBundle(bytes, { storage: memoryStorage() });
const parse_us = Number(process.hrtime.bigint() - start) / 1e3 / parseRuns;

process.stdout.write(JSON.stringify({
  agreement_checked: compared, batch, repeats, bundle_bytes: bytes.length, ...timings, parse_us, parse_verify_us,
  node: process.version, growthbook: "@growthbook/growthbook (package-lock.json)",
}));

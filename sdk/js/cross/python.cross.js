// Cross-checks against Vary's Python: tests/sdk/test_js_sdk.py computes every expected value with
// personalization.decision and writes it, beside its inputs, to the file VARY_PYTHON_CASES names.
// Run by that pytest test (not by `npm test`, which has no Python to ask).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import {
  GH_TERMS, actionProbabilities, buildFeatures, decideLocally, evalCondition, explainCondition,
  murmur3_32, normaliseProfile, normaliseVisitor, probabilityBest, pyFixed, pyG, pyPercent0, pyRepr,
  regexError, regexSearch, uniformFromKey,
} from "../src/index.js";

const file = process.env.VARY_PYTHON_CASES;
assert.ok(file, "VARY_PYTHON_CASES is not set: run this file through tests/sdk/test_js_sdk.py");
const cases = JSON.parse(readFileSync(file, "utf8"));

/** |a − b| ≤ tol·max(1, |b|), with a message naming what differs. */
function close(a, b, tol, what) {
  assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${what}: ${a} != ${b} (tolerance ${tol})`);
}

test("Gauss–Hermite table equals thompson.py's", () => {
  assert.deepEqual(GH_TERMS, cases.gh_terms);
});

test("conditions: same verdict and same explanation as Python", () => {
  const wrong = [];
  for (const c of cases.conditions) {
    const got = evalCondition(c.attributes, c.condition);
    if (got !== c.matches) wrong.push(`eval ${JSON.stringify(c.condition)} on ${JSON.stringify(c.attributes)}: ${got}`);
    const why = explainCondition(c.attributes, c.condition);
    if (why !== c.explain) wrong.push(`explain ${JSON.stringify(c.condition)}: ${JSON.stringify(why)} != ${JSON.stringify(c.explain)}`);
  }
  assert.deepEqual(wrong.slice(0, 20), []);
});

test("Python number formatting (.2f, .0%, g) and repr()", () => {
  for (const c of cases.formats) {
    assert.equal(pyFixed(c.x, 2), c.fixed2, `${c.x}:.2f`);
    assert.equal(pyPercent0(c.x), c.percent0, `${c.x}:.0%`);
    assert.equal(pyG(c.x), c.g, `${c.x}:g`);
  }
  for (const c of cases.reprs) assert.equal(pyRepr(c.s), c.repr);
});

test("exploration: action probabilities and P(best) as policy.py computes them", () => {
  for (const c of cases.policies) {
    const got = actionProbabilities(c.predictions, c.method, {
      epsilon: c.epsilon, minProbability: c.min_probability, loggedRows: c.logged_rows, evidenceRows: c.evidence_rows,
    });
    assert.equal(got.length, c.probabilities.length);
    got.forEach((p, i) => close(p, c.probabilities[i], 1e-12, `${c.method} P[${i}] of ${JSON.stringify(c.predictions)}`));
    const best = probabilityBest(c.predictions, c.evidence_rows ?? c.predictions.map(() => 100));
    best.forEach((p, i) => close(p, c.best[i], 1e-12, `P(best)[${i}]`));
  }
});

test("murmur3 (Ninetailed) and the SHA-256 uniform: bit for bit", () => {
  for (const c of cases.murmur) assert.equal(murmur3_32(c.text), c.hash, c.text);
  for (const c of cases.uniform) assert.equal(uniformFromKey(...c.parts), c.u, c.parts.join("/"));
});

test("regexes: refused where the server refuses, same matches where accepted", () => {
  for (const c of cases.regexes) {
    assert.equal(regexError(c.pattern, c.insensitive) === null, c.accepted, `accepted ${c.pattern}: ${regexError(c.pattern, c.insensitive)}`);
    c.texts.forEach((text, i) => assert.equal(regexSearch(c.pattern, c.insensitive, text), c.matches[i], `${c.pattern} on ${JSON.stringify(text)}`));
  }
});

test("segment model features as features.build_features builds them", () => {
  for (const c of cases.features) {
    const got = buildFeatures(normaliseVisitor(c.visitor), normaliseProfile(c.profile), 1767225600);
    assert.equal(got.length, c.features.length, JSON.stringify(got));
    got.forEach(([name, value], i) => {
      assert.equal(name, c.features[i][0]);
      if (typeof value === "number") close(value, c.features[i][1], 1e-15, name);
      else assert.equal(value, c.features[i][1], name);
    });
  }
});

test("decide(): the same decisions, exposures and sticky assignments as Python's decide()", () => {
  let decisions = 0;
  for (const c of cases.decide) {
    let n = 0;
    const got = decideLocally({
      visitor: c.visitor, profile: c.profile, entries: c.entries, model: c.model, now: c.now,
      policies: c.policies, globalHoldout: c.global_holdout, newId: () => `x${++n}`,
    });
    const want = c.expected;
    const where = `visitor ${c.visitor.id}`;
    assert.equal(got.model_version, want.model_version, where);
    assert.deepEqual(got.segments.map(([s]) => s), want.segments.map(([s]) => s), where);
    got.segments.forEach(([s, score], i) => close(score, want.segments[i][1], 1e-9, `${where} segment ${s}`));
    assert.equal(got.decisions.length, want.decisions.length);
    got.decisions.forEach((d, i) => {
      const w = want.decisions[i];
      const bandit = d.reason.includes("bandit policy");
      close(d.propensity, w.propensity, bandit ? 1e-12 : 0, `${where} ${w.entry_id} propensity`);
      assert.deepEqual({ ...d, propensity: 0 }, { ...w, propensity: 0 }, `${where} entry ${w.entry_id}`);
      decisions++;
    });
    assert.equal(got.exposures.length, want.exposures.length, where);
    got.exposures.forEach((x, i) => {
      const w = want.exposures[i];
      // Exposure is encoded with omit_defaults: a field Python left out holds its default.
      const defaults = { model_version: null, country: null, device: null, phase: 1, segments: {} };
      for (const field of ["id", "ts", "visitor_id", "session_id", "channel", "entry_id", "variant_entry_id", "experience",
        "variant", "is_control", "holdout", "model_version", "country", "device", "phase"]) {
        assert.deepEqual(x[field], field in w ? w[field] : defaults[field], `${where} exposure ${i} ${field}`);
      }
      close(x.propensity, w.propensity, 1e-12, `${where} exposure ${i} propensity`);
      assert.deepEqual(Object.keys(x.segments), Object.keys(w.segments ?? {}));
    });
    assert.deepEqual(got.assignments, want.assignments, where);
  }
  assert.ok(decisions > 1000, `only ${decisions} decisions compared`);
});

test("signed bundles from build_bundle: verified, then the Python SDK's decisions", async () => {
  const { Vary, VaryError } = await import("../src/index.js");
  let compared = 0;
  let encrypted = 0;
  for (const c of cases.bundles) {
    const bytes = Uint8Array.from(atob(c.bundle), (ch) => ch.charCodeAt(0));
    const options = { publicKey: c.public_key, signature: c.signature, decryptionKey: c.decryption_key, now: () => c.now, exposures: "manual" };
    const vary = await Vary.fromBundle(bytes, options);
    if (c.decryption_key) {
      encrypted++;
      await assert.rejects(Vary.fromBundle(bytes, { ...options, decryptionKey: null }), (e) => e.code === "encrypted");
      const wrong = btoa(String.fromCharCode(...new Uint8Array(32)));
      await assert.rejects(Vary.fromBundle(bytes, { ...options, decryptionKey: wrong }), (e) => e.code === "bad_key");
    }
    // One changed byte, and the bundle is refused.
    const forged = bytes.slice();
    forged[forged.length - 3] ^= 1;
    await assert.rejects(Vary.fromBundle(forged, { publicKey: c.public_key, signature: c.signature }), (e) => e instanceof VaryError && e.code === "bad_signature");
    for (const v of c.visitors) {
      const answer = vary.decide(v.visitor, v.entry_ids, { profile: v.profile });
      assert.deepEqual(Object.keys(answer.segments), Object.keys(v.expected.segments));
      for (const [name, score] of Object.entries(answer.segments)) close(score, v.expected.segments[name], 1e-9, name);
      assert.equal(answer.model_version, v.expected.model_version);
      assert.equal(answer.entries.length, v.expected.decisions.length);
      answer.entries.forEach((entry, i) => {
        const want = v.expected.decisions[i];
        for (const field of ["entry_id", "experience", "variant", "variant_entry_id", "is_control", "holdout", "reason"]) {
          assert.deepEqual(entry[field], want[field], `${v.visitor.id} ${want.entry_id} ${field}`);
        }
        assert.equal(entry.propensity, want.propensity, `${v.visitor.id} ${want.entry_id} propensity`);
        const inBundle = entry.entry_id in vary.bundle.entries;
        assert.deepEqual(entry.fields, inBundle ? { title: `title of ${entry.variant_entry_id}` } : null);
        compared++;
      });
    }
  }
  assert.ok(compared > 300, `only ${compared} decisions compared`);
  assert.equal(encrypted, 1);
});

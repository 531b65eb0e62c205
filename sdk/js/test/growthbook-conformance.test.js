// GrowthBook's cross-SDK cases (spec 0.8.0) against the SDK's hashing, bucketing and conditions,
// as tests/personalization/decision/test_bucketing.py and test_audiences.py run them against Python.
// The cases live outside the project: VARY_GROWTHBOOK_CASES names the file (tests/sdk/test_js_sdk.py
// sets it), else ../shared/conformance/growthbook-cases.json next to the repository.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";

import { bucketHash, bucketRanges, chooseVariation, equalWeights, evalCondition, inNamespace } from "../src/index.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const file = process.env.VARY_GROWTHBOOK_CASES || path.resolve(here, "../../../../shared/conformance/growthbook-cases.json");
assert.ok(existsSync(file), `GrowthBook conformance cases not found at ${file} (set VARY_GROWTHBOOK_CASES)`);
const cases = JSON.parse(readFileSync(file, "utf8"));

test("hash: every case", () => {
  assert.ok(cases.hash.length > 0);
  for (const [seed, value, version, expected] of cases.hash) {
    const got = bucketHash(seed, value, version);
    if (expected === null) assert.equal(got, null, `v${version} ${seed} ${value}`);
    else assert.ok(Math.abs(got - expected) < 5e-5, `v${version} seed=${seed} value=${value}: ${got} != ${expected}`);
  }
});

test("getBucketRange: every case", () => {
  for (const [name, [n, coverage, weights], expected] of cases.getBucketRange) {
    const got = bucketRanges(n, coverage, weights);
    assert.equal(got.length, expected.length, name);
    got.forEach(([start, end], i) => {
      assert.ok(Math.abs(start - expected[i][0]) < 1e-6 && Math.abs(end - expected[i][1]) < 1e-6, name);
    });
  }
});

test("chooseVariation: every case", () => {
  for (const [name, n, ranges, expected] of cases.chooseVariation) assert.equal(chooseVariation(n, ranges), expected, name);
});

test("inNamespace: every case", () => {
  for (const [name, id, namespace, expected] of cases.inNamespace) assert.equal(inNamespace(id, namespace), expected, name);
});

test("getEqualWeights: every case", () => {
  for (const [n, expected] of cases.getEqualWeights) {
    const got = equalWeights(n);
    assert.equal(got.length, expected.length);
    got.forEach((w, i) => assert.ok(Math.abs(w - expected[i]) < 1e-6, `n=${n}`));
  }
});

test("evalCondition: every case", () => {
  const failures = [];
  for (const [name, condition, attributes, expected, savedGroups] of cases.evalCondition) {
    const got = evalCondition(attributes, condition, savedGroups ?? null);
    if (got !== expected) failures.push(`${name}: got ${got}, expected ${expected}`);
  }
  assert.deepEqual(failures, []);
  assert.ok(cases.evalCondition.length >= 200);
});

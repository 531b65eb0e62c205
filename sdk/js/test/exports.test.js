// The exported surface and the TypeScript declarations agree: every export is declared, and every
// declared value is exported (a test keeps index.d.ts from drifting, as httpx's exported-members test does).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import * as sdk from "../src/index.js";

test("index.d.ts declares exactly the module's exports", () => {
  const declarations = readFileSync(new URL("../src/index.d.ts", import.meta.url), "utf8");
  const declared = new Set([...declarations.matchAll(/^export (?:function|const|class) ([A-Za-z_$][\w$]*)/gm)].map((m) => m[1]));
  declared.add("default");
  const exported = new Set(Object.keys(sdk));
  assert.deepEqual([...exported].filter((name) => !declared.has(name)).sort(), []);
  assert.deepEqual([...declared].filter((name) => !exported.has(name)).sort(), []);
  assert.equal(sdk.default, sdk.Vary);
});

test("package.json is ready to publish: ESM, types, exports, files, no dependencies", () => {
  const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
  assert.equal(pkg.type, "module");
  assert.equal(pkg.exports["."].import, "./src/index.js");
  assert.equal(pkg.exports["."].types, "./src/index.d.ts");
  assert.ok(pkg.files.includes("src/index.js") && pkg.files.includes("src/index.d.ts"));
  assert.equal(pkg.dependencies, undefined);
  assert.equal(pkg.version, sdk.SDK_VERSION);
});

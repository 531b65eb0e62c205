// The linear-time matcher: the same answers as the engine's RegExp (differential, on random accepted
// patterns and texts), and catastrophic patterns decided in milliseconds (the server's RE2 promise).
import { test } from "node:test";
import assert from "node:assert/strict";

import { evalCondition, regexError, regexSearch } from "../src/index.js";

let seed = 25;
const random = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
const pick = (xs) => xs[Math.floor(random() * xs.length)];
const ATOMS = [
  "a", "b", "A", "B", ".", "\\d", "\\w", "\\s", "\\S", "\\W", "\\D", "[a-c]", "[^ab]", "[\\d_]", "[A-Z]", "x", "é", "É",
  "\\.", "\\x41", "\\u00e9", "[\\w-]", "[-a]", "[]", "[^]", "\\n", "k", "K", "ſ", "\\u212a", "s", "\\t", "-", " ",
  "\\b", "\\B", "^", "$", "\\0", "\\cJ", "[\\b]", "a{", "{x}", "]", "}", "[\\x41-\\x5a]", "[a-]", "[^\\s]",
  "[\\u00c0-\\u00ff]", "(a|b){2,3}", "\\{", "[.]", "[\\]]", "[^\\d\\W]",
];
const QUANTIFIERS = ["", "", "", "*", "+", "?", "{2}", "{1,3}", "{0,}", "*?", "+?", "{2,}"];
const ALPHABET = ["a", "b", "A", "B", "x", "1", " ", "\n", "é", "É", "k", "K", "\u212a", "ſ", "s", "_", "-", ".", "\u00a0", "{", "}", "]", "\u0000", "\u0008", "Ö", "ö"];

function pattern(depth = 0) {
  let out = "";
  for (let i = 0, n = 1 + Math.floor(random() * 4); i < n; i++) {
    let atom;
    if (depth < 2 && random() < 0.25) {
      const alternatives = Array.from({ length: 1 + Math.floor(random() * 3) }, () => pattern(depth + 1));
      atom = pick(["(", "(?:", `(?<g${depth}${i}>`]) + alternatives.join("|") + ")";
    } else atom = pick(ATOMS);
    out += atom + (["^", "$", "\\b", "\\B"].includes(atom) ? "" : pick(QUANTIFIERS));
  }
  return out;
}

test("the matcher agrees with RegExp on random accepted patterns", () => {
  const failures = [];
  let checked = 0;
  for (let k = 0; k < 2500; k++) {
    const source = pattern();
    for (const insensitive of [false, true]) {
      if (regexError(source, insensitive) !== null) continue;
      const native = new RegExp(source, insensitive ? "i" : "");
      for (let t = 0; t < 8; t++) {
        const text = Array.from({ length: Math.floor(random() * 10) }, () => pick(ALPHABET)).join("");
        checked++;
        if (native.test(text) !== regexSearch(source, insensitive, text)) failures.push(`/${source}/${insensitive ? "i" : ""} ${JSON.stringify(text)}`);
      }
    }
  }
  assert.deepEqual(failures.slice(0, 10), []);
  assert.ok(checked > 20000, `${checked} checks`);
});

test("catastrophic patterns decide in milliseconds, as RE2 does on the server", () => {
  for (const [condition, page, expected] of [
    [{ page: { $regex: "^(a+)+$" } }, "a".repeat(27) + "!", false],
    [{ page: { $regexi: "^(a+)+$" } }, "a".repeat(1999) + "!", false],
    [{ page: { $not: { $regex: "^(a|aa)+$" } } }, "a".repeat(1999) + "!", true],
    [{ page: { $regex: "(?:\\w?){490}z" } }, "ab".repeat(1000), false],
    [{ page: { $regex: "^(a+)+$" } }, "a".repeat(27), true],
  ]) {
    const start = performance.now();
    assert.equal(evalCondition({ page }, condition), expected, JSON.stringify(condition));
    assert.ok(performance.now() - start < 500, `${JSON.stringify(condition)}: ${performance.now() - start} ms`);
  }
});

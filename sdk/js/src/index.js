/**
 * Vary local decisions: one ES module, zero dependencies, Web APIs only.
 *
 * It makes the decision Vary's server makes (personalization/decision/decide.py) from a signed
 * bundle (GET /v1/bundle), in the browser, Node >= 18, Cloudflare Workers, Vercel Edge or Deno, with
 * no network call on the decision path. Every pure piece below is a line-for-line port of the
 * Python module named in its section header, in the same float order, so segment scores agree to
 * 1e-9 and propensities exactly (bandit propensities to ~1e-15: see "libm" in the README), and
 * tests/conformance/decisions.json, generated from the server's decide(), proves it under `node --test`.
 *
 * Sections, in the order a decision meets them:
 *   1. Python formatting (reasons are the server's strings, character for character)
 *   2. Bucketing: GrowthBook FNV-1a v1/v2, ranges, namespaces  (bucketing.py)
 *   3. Ninetailed bucketing: murmur3                           (ninetailed_bucketing.py)
 *   4. Audience regexes: what RE2 would refuse, refused        (audience_regex.py)
 *   5. Audience conditions (GrowthBook evalCondition)          (audiences.py, audience_values.py)
 *   6. Explaining a matched condition                          (audience_explain.py)
 *   7. Hashes and sums: SHA-256, fsum, erfc                    (policy.py, thompson.py helpers)
 *   8. Thompson sampling's P(best) and the exploration budget   (thompson.py, policy.py)
 *   9. Features and compiled linear models                     (features.py, segments.py, policy.py)
 *  10. Context, history, frequency caps                        (context.py, history.py, frequency.py)
 *  11. Selection and decide()                                  (selection.py, global_holdout.py, decide.py)
 *  12. The client: bundle verification, storage, exposures
 */

// =================================================================================================
// 1. Python formatting
// =================================================================================================

const F64 = new Float64Array(1);
const U32 = new Uint32Array(F64.buffer);
const LITTLE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const HI = LITTLE ? 1 : 0;
const LO = LITTLE ? 0 : 1;

/** The binary exponent e of x = m·2^e with m an odd integer (x finite, non-zero). */
function oddExponent(x) {
  F64[0] = Math.abs(x);
  const hi = U32[HI];
  const lo = U32[LO];
  const biased = (hi >>> 20) & 0x7ff;
  let e = (biased === 0 ? 1 : biased) - 1075;
  let mantHi = hi & 0xfffff;
  let mantLo = lo;
  if (mantLo === 0 && mantHi === 0 && biased !== 0) return e + 52; // a power of two: m = 1
  // Shift out trailing zero bits of the 53-bit mantissa.
  if (mantLo === 0) {
    e += 32;
    mantLo = mantHi | (biased !== 0 ? 0x100000 : 0);
    mantHi = 0;
  }
  while ((mantLo & 1) === 0) {
    mantLo >>>= 1;
    e += 1;
  }
  return e;
}

/**
 * Python's f"{x:.{d}f}": correctly rounded, ties to even. JS toFixed is correctly rounded with ties
 * away from zero, and an exact tie (x has exactly d+1 decimals ending in 5: x = m·2^-(d+1), m odd)
 * is the only place they differ.
 */
export function pyFixed(x, d) {
  if (!Number.isFinite(x)) return Number.isNaN(x) ? "nan" : x > 0 ? "inf" : "-inf";
  if (Math.abs(x) >= 1e21) return BigInt(Math.round(x)).toString() + (d > 0 ? "." + "0".repeat(d) : "");
  let s = x.toFixed(d);
  if (x !== 0 && oddExponent(x) === -(d + 1)) {
    const exact = x.toFixed(d + 1); // exact: x has d+1 decimals
    const down = exact.slice(0, -1).replace(/\.$/, "");
    const lastUp = s.charCodeAt(s.length - 1) - 48;
    if (lastUp % 2 === 1) s = down;
  }
  return s;
}

const percentCache = new Map();

/** Python's f"{x:.0%}" (cached: weights and shares repeat on every decision). */
export function pyPercent0(x) {
  let text = percentCache.get(x);
  if (text === undefined) {
    text = pyFixed(x * 100, 0) + "%";
    if (percentCache.size >= 4096) percentCache.clear();
    percentCache.set(x, text);
  }
  return text;
}

/** Python's f"{x:g}" (precision 6, trailing zeros stripped). */
export function pyG(x) {
  if (!Number.isFinite(x)) return Number.isNaN(x) ? "nan" : x > 0 ? "inf" : "-inf";
  if (x === 0) return Object.is(x, -0) ? "-0" : "0";
  const exp = Number(x.toExponential(5).split("e")[1]);
  if (exp >= -4 && exp < 6) {
    let s = pyFixed(x, 5 - exp);
    if (s.includes(".")) s = s.replace(/0+$/, "").replace(/\.$/, "");
    return s;
  }
  let [mant, e] = x.toExponential(5).split("e");
  if (mant.includes(".")) mant = mant.replace(/0+$/, "").replace(/\.$/, "");
  const n = Number(e);
  return `${mant}e${n < 0 ? "-" : "+"}${String(Math.abs(n)).padStart(2, "0")}`;
}

const reprCache = new Map();
const NOT_PRINTABLE = /^[\p{C}\p{Z}]$/u;

/** Python's repr() of a str: single quotes unless it holds ' and no ". */
export function pyRepr(s) {
  let cached = reprCache.get(s);
  if (cached === undefined) {
    cached = reprOf(s);
    if (reprCache.size >= 4096) reprCache.clear();
    reprCache.set(s, cached);
  }
  return cached;
}

function reprOf(s) {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of s) {
    const c = ch.codePointAt(0);
    if (ch === quote || ch === "\\") out += "\\" + ch;
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (ch !== " " && NOT_PRINTABLE.test(ch)) {
      // Python's str.isprintable(): Other (C*) and Separator (Z*) categories, space excepted.
      if (c <= 0xff) out += "\\x" + c.toString(16).padStart(2, "0");
      else if (c <= 0xffff) out += "\\u" + c.toString(16).padStart(4, "0");
      else out += "\\U" + c.toString(16).padStart(8, "0");
    } else out += ch;
  }
  return out + quote;
}

/** Python len(): code points, not UTF-16 units. */
function pyLen(s) {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n--;
        i++;
      }
    }
  }
  return n;
}

/** Python s[:n] (code points). */
function pySlice(s, n) {
  return Array.from(s).slice(0, n).join("");
}

// =================================================================================================
// 2. Bucketing (personalization/decision/bucketing.py): GrowthBook spec 0.8.0
// =================================================================================================

/** 32-bit FNV-1a over UTF-16 code units (GrowthBook's hashFnv32a). */
export function fnv1a32(s) {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** FNV-1a continued from state h over s: fnvFrom(fnvFrom(0x811c9dc5, a), b) === fnv1a32(a + b), without building a + b. */
function fnvFrom(h, s) {
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h;
}

const DIGITS = new Int32Array(10);

/**
 * fnv1a32(String(n)) for an integer 0 <= n < 2^32, over its decimal digits without making the string:
 * n is split in two int32 halves (below and above 10^5) so each digit is integer arithmetic.
 */
function fnvDecimal(n) {
  let count = 0;
  let high = Math.floor(n / 100000);
  let low = n - high * 100000;
  if (high === 0) {
    do {
      DIGITS[count++] = low % 10;
      low = (low / 10) | 0;
    } while (low > 0);
  } else {
    for (let i = 0; i < 5; i++) {
      DIGITS[count++] = low % 10;
      low = (low / 10) | 0;
    }
    do {
      DIGITS[count++] = high % 10;
      high = (high / 10) | 0;
    } while (high > 0);
  }
  let h = 0x811c9dc5;
  while (count > 0) h = Math.imul(h ^ (48 + DIGITS[--count]), 0x01000193);
  return h >>> 0;
}

/** bucketHash(seed, value, 2) from fnvFrom(0x811c9dc5, seed), which a caller keeps per seed. */
function bucketHashV2From(seedState, value) {
  return (fnvDecimal(fnvFrom(seedState, value) >>> 0) % 10000) / 10000;
}

/** GrowthBook's hash: v2 = fnv(str(fnv(seed+value))) % 10000 / 10000, v1 = fnv(value+seed) % 1000 / 1000. */
export function bucketHash(seed, value, version) {
  if (version === 2) return (fnv1a32(String(fnv1a32(seed + value))) % 10000) / 10000;
  if (version === 1) return (fnv1a32(value + seed) % 1000) / 1000;
  return null;
}

/** GrowthBook getEqualWeights. */
export function equalWeights(n) {
  if (n < 1) return [];
  return new Array(n).fill(1 / n);
}

/** GrowthBook getBucketRanges: coverage clamped, bad weights fall back to equal ones. */
export function bucketRanges(numVariations, coverage = 1, weights = null) {
  if (coverage < 0) coverage = 0;
  else if (coverage > 1) coverage = 1;
  const equal = equalWeights(numVariations);
  let w = weights == null ? equal : weights;
  if (w.length !== numVariations) w = equal;
  let total = 0;
  for (const x of w) total += x;
  if (total < 0.99 || total > 1.01) w = equal;
  let cumulative = 0;
  const ranges = [];
  for (const x of w) {
    const start = cumulative;
    cumulative += x;
    ranges.push([start, start + coverage * x]);
  }
  return ranges;
}

/** Index of the first range with start <= n < end; -1 outside coverage. */
export function chooseVariation(n, ranges) {
  for (let i = 0; i < ranges.length; i++) if (ranges[i][0] <= n && n < ranges[i][1]) return i;
  return -1;
}

/** Whether userId falls in namespace [name, start, end) (v1 hash of "__" + name). */
export function inNamespace(userId, namespace) {
  const n = bucketHash("__" + String(namespace[0]), userId, 1);
  return Number(namespace[1]) <= n && n < Number(namespace[2]);
}

// =================================================================================================
// 3. Ninetailed bucketing (personalization/decision/ninetailed_bucketing.py)
// =================================================================================================

/** MurmurHash3 x86 32 exactly as murmurhash-js 1.0.0 reads a string (low byte of each UTF-16 unit). */
export function murmur3_32(key, seed = 0) {
  const remainder = key.length & 3;
  const bytes = key.length - remainder;
  let h1 = seed >>> 0;
  const c1 = 0xcc9e2d51;
  const c2 = 0x1b873593;
  let i = 0;
  let k1;
  while (i < bytes) {
    k1 =
      (key.charCodeAt(i) & 0xff) |
      ((key.charCodeAt(i + 1) & 0xff) << 8) |
      ((key.charCodeAt(i + 2) & 0xff) << 16) |
      ((key.charCodeAt(i + 3) & 0xff) << 24);
    i += 4;
    k1 = Math.imul(k1, c1);
    k1 = (k1 << 15) | (k1 >>> 17);
    k1 = Math.imul(k1, c2);
    h1 ^= k1;
    h1 = (h1 << 13) | (h1 >>> 19);
    h1 = (Math.imul(h1, 5) + 0xe6546b64) | 0;
  }
  k1 = 0;
  if (remainder === 3) k1 ^= (key.charCodeAt(i + 2) & 0xff) << 16;
  if (remainder >= 2) k1 ^= (key.charCodeAt(i + 1) & 0xff) << 8;
  if (remainder >= 1) {
    k1 ^= key.charCodeAt(i) & 0xff;
    k1 = Math.imul(k1, c1);
    k1 = (k1 << 15) | (k1 >>> 17);
    k1 = Math.imul(k1, c2);
    h1 ^= k1;
  }
  h1 ^= key.length;
  h1 ^= h1 >>> 16;
  h1 = Math.imul(h1, 0x85ebca6b);
  h1 ^= h1 >>> 13;
  h1 = Math.imul(h1, 0xc2b2ae35);
  h1 ^= h1 >>> 16;
  return h1 >>> 0;
}

export function ninetailedRandom(text) {
  return murmur3_32(text, 0) / 4294967295;
}

/** ExperienceMapper's ranges: the shares laid end to end, both ends inclusive; none → arm 0. */
export function ninetailedSelectArm(random, shares) {
  let start = 0;
  for (let i = 0; i < shares.length; i++) {
    const end = start + shares[i];
    if (start <= random && random <= end) return i;
    start = end;
  }
  return 0;
}

function describeNinetailed(arm, experience) {
  return arm === 0 ? "the baseline" : `variant ${arm} (${experience.variants[arm - 1]})`;
}

/** The Ninetailed SDK's choice for a visitor in the audience; null: outside its traffic. */
export function assignNinetailed(experience, stableId) {
  if (!(experience.traffic_allocation > ninetailedRandom(`traffic-${experience.id}-${stableId}`))) return null;
  const shares = experience.weights;
  let arm = ninetailedSelectArm(ninetailedRandom(`distribution-${experience.id}-${stableId}`), shares);
  if (arm >= shares.length) arm = 0;
  let rest = 0;
  for (let i = 1; i < shares.length; i++) rest += shares[i]; // Python 3.11 sum(): left to right
  const propensity = arm ? shares[arm] : Math.max(0, 1 - rest);
  return {
    experience,
    variant: arm,
    holdout: false,
    propensity,
    reason:
      `${experience.type}, Contentful Personalization's bucketing: ${describeNinetailed(arm, experience)}, ` +
      `distribution share ${pyPercent0(shares[arm])}`,
  };
}

// =================================================================================================
// 4. Audience regexes (personalization/decision/audience_regex.py)
// =================================================================================================
//
// The server runs $regex with RE2 and refuses any pattern RE2 cannot run or would decide differently
// from a browser; such a pattern evaluates to false. Here the same refusals apply (so both sides say
// false on the same patterns), the engine's RegExp judges the syntax, and a linear-time NFA matcher
// (below) runs what is accepted, so a pattern such as ^(a+)+$ costs microseconds on hostile text, as
// on the server. One difference remains (README): RE2's program-size cap (4,000 instructions; a
// refused pattern switches its experience off on the server, so it never reaches a bundle) is
// approximated by RE2's repeat-count cap of 1,000.

export const MAX_INPUT_CHARS = 2048;
export const MAX_PATTERN_CHARS = 1024;
const QUANTIFIERS = "*+?{";
const ASCII_LETTERS = /^[A-Za-z]$/;
const HEX = /^[0-9a-fA-F]$/;
const NAME_START = /^[A-Za-z_$]$/;
const NAME_REST = /^[A-Za-z0-9_$]$/;

class RegexRefused extends Error {}

function isBracedQuantifier(chars, i) {
  const end = chars.indexOf("}", i);
  if (end === -1) return false;
  const body = chars.slice(i + 1, end).join("");
  const comma = body.indexOf(",");
  const low = comma === -1 ? body : body.slice(0, comma);
  const high = comma === -1 ? "" : body.slice(comma + 1);
  return /^[0-9]+$/.test(low) && (high === "" || /^[0-9]+$/.test(high));
}

/** Python str.isdigit() on one character, for the ASCII digits this path sees (\0 followed by a digit). */
function isDigit(c) {
  return c !== undefined && /^\p{Nd}$/u.test(c);
}

function checkEscape(chars, i, inClass) {
  if (i + 1 >= chars.length) throw new RegexRefused("ends with a lone backslash");
  const c = chars[i + 1];
  const after = i + 2;
  if ("dDwWfnrtvsbB".includes(c)) {
    if (c === "S" && inClass) throw new RegexRefused("\\S inside a character class");
    return after;
  }
  if (c === "S") {
    if (inClass) throw new RegexRefused("\\S inside a character class");
    return after;
  }
  if (c === "0" && !(after < chars.length && isDigit(chars[after]))) return after;
  if (isDigit(c)) throw new RegexRefused(`\\${c} is a backreference`);
  if (c === "k") throw new RegexRefused("\\k<name> is a named backreference");
  if (c === "x") {
    const digits = chars.slice(after, after + 2);
    if (digits.length === 2 && digits.every((h) => HEX.test(h))) return after + 2;
    throw new RegexRefused("\\x needs two hex digits");
  }
  if (c === "u") {
    const digits = chars.slice(after, after + 4);
    if (digits.length === 4 && digits.every((h) => HEX.test(h))) {
      const v = parseInt(digits.join(""), 16);
      if (v >= 0xd800 && v <= 0xdfff) throw new RegexRefused("half of a UTF-16 pair");
      return after + 4;
    }
    throw new RegexRefused("\\u needs four hex digits");
  }
  if (c === "c") {
    const letter = chars[after];
    if (letter !== undefined && ASCII_LETTERS.test(letter)) return after + 1;
    throw new RegexRefused("\\c needs a letter A-Z");
  }
  if (ASCII_LETTERS.test(c)) throw new RegexRefused(`\\${c}: a browser reads it as the letter ${c}`);
  if (c.codePointAt(0) > 0xffff) throw new RegexRefused("escaped character of two UTF-16 units");
  return after;
}

/** Throws RegexRefused for a pattern the server's audience_regex would refuse (before RE2 compiles it). */
function checkPattern(pattern) {
  if (pyLen(pattern) > MAX_PATTERN_CHARS) throw new RegexRefused("too long");
  // Python iterates code points: a surrogate pair is one character there.
  const chars = Array.from(pattern);
  for (const ch of chars) {
    const c = ch.codePointAt(0);
    if (c >= 0xd800 && c <= 0xdfff) throw new RegexRefused("half of a UTF-16 pair");
  }
  const names = new Set();
  let i = 0;
  const n = chars.length;
  let last = "";
  while (i < n) {
    const c = chars[i];
    if (QUANTIFIERS.includes(c) && ["^", "$", "\\b", "\\B"].includes(last) && (c !== "{" || isBracedQuantifier(chars, i))) {
      throw new RegexRefused(`quantifier after an assertion`);
    }
    if (c === "\\") {
      const next = checkEscape(chars, i, false);
      const text = chars.slice(i, next).join("");
      last = text === "\\b" || text === "\\B" ? text : "atom";
      i = next;
      continue;
    }
    if (c === "[") {
      if (chars[i + 1] === "]") i += 2;
      else if (chars[i + 1] === "^" && chars[i + 2] === "]") i += 3;
      else {
        i += 1;
        if (chars[i] === "^") i += 1;
        let closed = false;
        while (i < n) {
          const d = chars[i];
          if (d === "]") {
            closed = true;
            i += 1;
            break;
          }
          if (d === "\\") {
            i = checkEscape(chars, i, true);
            continue;
          }
          if (d.codePointAt(0) > 0xffff) throw new RegexRefused("two UTF-16 units in a class");
          i += 1;
        }
        if (!closed) throw new RegexRefused("missing ]");
      }
    } else if (c === "(") {
      if (chars[i + 1] !== "?") i += 1;
      else {
        const head = chars.slice(i, i + 4).join("");
        if (head.startsWith("(?:")) i += 3;
        else if (head.startsWith("(?=") || head.startsWith("(?!")) throw new RegexRefused("lookahead");
        else if (head.startsWith("(?<=") || head.startsWith("(?<!")) throw new RegexRefused("lookbehind");
        else if (head.startsWith("(?<")) {
          let end = i + 3;
          while (end < n && chars[end] !== ">") end++;
          const name = end < n ? chars.slice(i + 3, end).join("") : "";
          if (!name || !NAME_START.test(name[0]) || ![...name].every((x) => NAME_REST.test(x))) {
            throw new RegexRefused("group name is not a JavaScript identifier");
          }
          if (names.has(name)) throw new RegexRefused("group name used twice");
          names.add(name);
          i = end + 1;
        } else throw new RegexRefused("not JavaScript regular-expression syntax");
      }
    } else {
      if (c.codePointAt(0) > 0xffff && i + 1 < n && QUANTIFIERS.includes(chars[i + 1])) {
        throw new RegexRefused("quantifier after a character of two UTF-16 units");
      }
      i += 1;
    }
    last = c === "^" || c === "$" ? c : "atom";
  }
  // RE2 refuses counted repetitions above 1,000 (a browser runs them).
  for (const m of pattern.matchAll(/\{([0-9]+)(?:,([0-9]*))?\}/g)) {
    if (Number(m[1]) > 1000 || (m[2] && Number(m[2]) > 1000)) throw new RegexRefused("repeat count above 1000");
  }
}

// -- a linear-time matcher for the accepted patterns ------------------------------------------------
//
// Accepted patterns have no backreferences and no lookaround, so they are regular: a Thompson NFA run
// in lock-step over the text (a "Pike VM" without captures) decides whether one matches in
// O(pattern × text) — what RE2 guarantees on the server — where RegExp backtracks (^(a+)+$ on 30
// characters takes seconds). Semantics are RegExp's without the u flag: UTF-16 code units, `.` stops at
// line terminators, ^ and $ at the ends of the input, ASCII \d \w \b, JavaScript's \s, and the i flag's
// Canonicalize (toUpperCase, single unit, no mapping from non-ASCII to ASCII). Greediness does not
// change whether a match exists, so it is ignored. The native RegExp still validates the syntax.

const WS_UNITS = new Set(Array.from(" \t\n\v\f\r\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff", (c) => c.charCodeAt(0)));
const isDigitUnit = (c) => c >= 48 && c <= 57;
const isWordUnit = (c) => (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95;
const isLineTerminator = (c) => c === 10 || c === 13 || c === 0x2028 || c === 0x2029;
const MAX_PROGRAM = 200000;

function canonicalOf(c) {
  const upper = String.fromCharCode(c).toUpperCase();
  if (upper.length !== 1) return c;
  const u = upper.charCodeAt(0);
  return c >= 128 && u < 128 ? c : u;
}

let canonTable = null;

/** Canonicalize of the i flag, from a table built once (on the first i-flag pattern). */
function canonicalize(c) {
  if (canonTable === null) {
    canonTable = new Uint16Array(0x10000);
    for (let x = 0; x < 0x10000; x++) canonTable[x] = canonicalOf(x);
  }
  return canonTable[c];
}

let canonInverse = null;

/** Every code unit with the same Canonicalize value as c (built once, on the first i-flag pattern). */
function sameCase(c) {
  if (canonInverse === null) {
    canonInverse = new Map();
    for (let x = 0; x < 0x10000; x++) {
      const k = canonicalize(x);
      if (k !== x || canonInverse.has(k)) {
        const list = canonInverse.get(k);
        if (list) list.push(x);
        else canonInverse.set(k, k === x ? [x] : [k, x]);
      }
    }
  }
  return canonInverse.get(canonicalize(c)) ?? [c];
}

class PatternParser {
  constructor(pattern) {
    this.p = pattern;
    this.i = 0;
  }

  parse() {
    const node = this.alternation();
    if (this.i < this.p.length) throw new RegexRefused(`unexpected ${this.p[this.i]}`);
    return node;
  }

  alternation() {
    const items = [this.sequence()];
    while (this.p[this.i] === "|") {
      this.i++;
      items.push(this.sequence());
    }
    return items.length === 1 ? items[0] : { t: "alt", items };
  }

  sequence() {
    const items = [];
    while (this.i < this.p.length && this.p[this.i] !== "|" && this.p[this.i] !== ")") {
      let atom = this.atom();
      for (;;) {
        const q = this.quantifier();
        if (q === null) break;
        atom = { t: "rep", node: atom, min: q[0], max: q[1] };
      }
      items.push(atom);
    }
    return { t: "cat", items };
  }

  quantifier() {
    const c = this.p[this.i];
    let q = null;
    if (c === "*") q = [0, Infinity];
    else if (c === "+") q = [1, Infinity];
    else if (c === "?") q = [0, 1];
    if (q !== null) this.i++;
    else if (c === "{") {
      const m = /^\{([0-9]+)(,([0-9]*))?\}/.exec(this.p.slice(this.i));
      if (!m) return null;
      const min = Number(m[1]);
      q = [min, m[2] === undefined ? min : m[3] === "" ? Infinity : Number(m[3])];
      this.i += m[0].length;
    } else return null;
    if (this.p[this.i] === "?") this.i++; // lazy: the same strings match
    return q;
  }

  atom() {
    const c = this.p[this.i];
    if (c === "(") {
      this.i++;
      if (this.p.startsWith("?:", this.i)) this.i += 2;
      else if (this.p.startsWith("?<", this.i)) this.i = this.p.indexOf(">", this.i) + 1;
      const node = this.alternation();
      if (this.p[this.i] !== ")") throw new RegexRefused("missing )");
      this.i++;
      return node;
    }
    if (c === "[") return this.charClass();
    if (c === "^") {
      this.i++;
      return { t: "bol" };
    }
    if (c === "$") {
      this.i++;
      return { t: "eol" };
    }
    if (c === ".") {
      this.i++;
      return { t: "set", test: (u) => !isLineTerminator(u) };
    }
    if (c === "\\") {
      const next = this.p[this.i + 1];
      if (next === "b" || next === "B") {
        this.i += 2;
        return { t: next === "b" ? "wordb" : "nwordb" };
      }
      const escaped = this.escape(false);
      return escaped.test ? { t: "set", test: escaped.test } : { t: "unit", unit: escaped.unit };
    }
    this.i++;
    return { t: "unit", unit: c.charCodeAt(0) };
  }

  /** An escape at this.i: {unit} for one code unit, {test} for a class escape. */
  escape(inClass) {
    const c = this.p[this.i + 1];
    this.i += 2;
    switch (c) {
      case "d": return { test: isDigitUnit };
      case "D": return { test: (u) => !isDigitUnit(u) };
      case "w": return { test: isWordUnit };
      case "W": return { test: (u) => !isWordUnit(u) };
      case "s": return { test: (u) => WS_UNITS.has(u) };
      case "S": return { test: (u) => !WS_UNITS.has(u) };
      case "f": return { unit: 12 };
      case "n": return { unit: 10 };
      case "r": return { unit: 13 };
      case "t": return { unit: 9 };
      case "v": return { unit: 11 };
      case "0": return { unit: 0 };
      case "b": return { unit: inClass ? 8 : 98 };
      case "x": {
        const unit = parseInt(this.p.slice(this.i, this.i + 2), 16);
        this.i += 2;
        return { unit };
      }
      case "u": {
        const unit = parseInt(this.p.slice(this.i, this.i + 4), 16);
        this.i += 4;
        return { unit };
      }
      case "c": {
        const unit = this.p.charCodeAt(this.i) % 32;
        this.i += 1;
        return { unit };
      }
      default:
        return { unit: c.charCodeAt(0) }; // identity escape
    }
  }

  charClass() {
    this.i++; // [
    let negated = false;
    if (this.p[this.i] === "^") {
      negated = true;
      this.i++;
    }
    const units = new Set();
    const ranges = [];
    const tests = [];
    const item = () => {
      if (this.p[this.i] === "\\") return this.escape(true);
      const unit = this.p.charCodeAt(this.i);
      this.i++;
      return { unit };
    };
    while (this.p[this.i] !== "]") {
      const first = item();
      if (this.p[this.i] === "-" && this.p[this.i + 1] !== "]" && this.i + 1 < this.p.length) {
        this.i++;
        const second = item();
        if (first.test || second.test) {
          // Annex B: a class escape at either end makes "-" a literal.
          for (const x of [first, { unit: 45 }, second]) x.test ? tests.push(x.test) : units.add(x.unit);
        } else ranges.push([first.unit, second.unit]);
        continue;
      }
      first.test ? tests.push(first.test) : units.add(first.unit);
    }
    this.i++; // ]
    const inside = (u) => units.has(u) || ranges.some(([a, b]) => a <= u && u <= b) || tests.some((t) => t(u));
    return { t: "set", test: inside, negated };
  }
}

/** Compile the AST to NFA instructions: [op, a, b] with op "unit" | "set" | "split" | "jmp" | assertions | "match". */
function compileNfa(ast, insensitive) {
  const prog = [];
  const emit = (ins) => {
    if (prog.length >= MAX_PROGRAM) throw new RegexRefused("too complex");
    prog.push(ins);
    return prog.length - 1;
  };
  const unitTest = (unit) => {
    if (!insensitive) return (u) => u === unit;
    const canon = canonicalize(unit);
    return (u) => u === unit || canonicalize(u) === canon;
  };
  const setTest = (node) => {
    const base = node.test;
    const inside = insensitive ? (u) => base(u) || sameCase(u).some(base) : base;
    return node.negated ? (u) => !inside(u) : inside;
  };
  const gen = (node) => {
    switch (node.t) {
      case "unit": emit({ op: "char", test: unitTest(node.unit) }); break;
      case "set": emit({ op: "char", test: setTest(node) }); break;
      case "bol": case "eol": case "wordb": case "nwordb": emit({ op: node.t }); break;
      case "cat": for (const item of node.items) gen(item); break;
      case "alt": {
        const jumps = [];
        node.items.forEach((item, k) => {
          if (k < node.items.length - 1) {
            const split = emit({ op: "split", x: 0, y: 0 });
            prog[split].x = prog.length;
            gen(item);
            jumps.push(emit({ op: "jmp", x: 0 }));
            prog[split].y = prog.length;
          } else gen(item);
        });
        for (const j of jumps) prog[j].x = prog.length;
        break;
      }
      case "rep": {
        for (let k = 0; k < node.min; k++) gen(node.node);
        if (node.max === Infinity) {
          const split = emit({ op: "split", x: 0, y: 0 });
          prog[split].x = prog.length;
          gen(node.node);
          emit({ op: "jmp", x: split });
          prog[split].y = prog.length;
        } else {
          const splits = [];
          for (let k = node.min; k < node.max; k++) {
            splits.push(emit({ op: "split", x: 0, y: 0 }));
            prog[splits[splits.length - 1]].x = prog.length;
            gen(node.node);
          }
          for (const sp of splits) prog[sp].y = prog.length;
        }
        break;
      }
      default: throw new RegexRefused(`unknown node ${node.t}`);
    }
  };
  gen(ast);
  emit({ op: "match" });
  // Anchored at the start (^ first): no match can start after position 0.
  prog.anchored = ast.t === "cat" && ast.items.length > 0 && ast.items[0].t === "bol";
  return prog;
}

/** Whether the NFA matches somewhere in text: lock-step simulation, O(program × text). */
function nfaSearch(prog, text) {
  const n = text.length;
  const size = prog.length;
  let current = new Int32Array(size);
  let next = new Int32Array(size);
  const mark = new Int32Array(size).fill(-1); // the position whose list already holds a pc
  const stack = new Int32Array(size * 2 + 8);
  const wordAt = (i) => i >= 0 && i < n && isWordUnit(text.charCodeAt(i));
  // Follow the epsilon edges from pc at position i (stamp i); char and match instructions land in list.
  const add = (list, count, pc, i) => {
    let top = 0;
    stack[top++] = pc;
    while (top > 0) {
      const at = stack[--top];
      if (mark[at] === i) continue;
      mark[at] = i;
      const ins = prog[at];
      switch (ins.op) {
        case "jmp": stack[top++] = ins.x; break;
        case "split": stack[top++] = ins.y; stack[top++] = ins.x; break;
        case "bol": if (i === 0) stack[top++] = at + 1; break;
        case "eol": if (i === n) stack[top++] = at + 1; break;
        case "wordb": if (wordAt(i - 1) !== wordAt(i)) stack[top++] = at + 1; break;
        case "nwordb": if (wordAt(i - 1) === wordAt(i)) stack[top++] = at + 1; break;
        default: list[count++] = at;
      }
    }
    return count;
  };
  let count = 0;
  const anchored = prog.anchored === true;
  for (let i = 0; i <= n; i++) {
    if (!anchored || i === 0) count = add(current, count, 0, i); // unanchored: a match may start anywhere
    else if (count === 0) return false;
    for (let k = 0; k < count; k++) if (prog[current[k]].op === "match") return true;
    if (i === n) break;
    const unit = text.charCodeAt(i);
    let nextCount = 0;
    for (let k = 0; k < count; k++) {
      const ins = prog[current[k]];
      if (ins.op === "char" && ins.test(unit)) nextCount = add(next, nextCount, current[k] + 1, i + 1);
    }
    [current, next] = [next, current];
    count = nextCount;
  }
  return false;
}

const regexCache = new Map();

function compiledRegex(pattern, insensitive) {
  const key = (insensitive ? "i" : "-") + pattern;
  let compiled = regexCache.get(key);
  if (compiled === undefined) {
    try {
      checkPattern(pattern);
      new RegExp(pattern, insensitive ? "i" : ""); // the syntax is the engine's to judge
      compiled = compileNfa(new PatternParser(pattern).parse(), insensitive);
    } catch {
      compiled = null; // refused or does not compile: the clause is false
    }
    if (regexCache.size >= 1024) regexCache.clear();
    regexCache.set(key, compiled);
  }
  return compiled;
}

/** Whether pattern (a JS regex, "i" if insensitive) finds a match in text, in linear time; false when
 * refused or text is longer than MAX_INPUT_CHARS. */
export function regexSearch(pattern, insensitive, text) {
  const compiled = compiledRegex(pattern, insensitive);
  if (compiled === null) return false;
  if (text.length > MAX_INPUT_CHARS && pyLen(text) > MAX_INPUT_CHARS) return false;
  return nfaSearch(compiled, text);
}

/** Whether the server would refuse pattern (null when accepted, else why). */
export function regexError(pattern, insensitive = false) {
  try {
    checkPattern(pattern);
    new RegExp(pattern, insensitive ? "i" : "");
    compileNfa(new PatternParser(pattern).parse(), insensitive);
    return null;
  } catch (error) {
    return error.message;
  }
}

// =================================================================================================
// 5. Audience conditions (personalization/decision/audiences.py, audience_values.py)
// =================================================================================================
//
// GrowthBook's evalCondition with Vary's rules: a missing attribute is null (never undefined), a
// malformed condition is false ("fail closed"), "a.length" reads an array's length, and evaluation
// never throws. JavaScript's own coercions are what the Python side reproduces, so most operators are
// the native ones here.

/** A mapping whose entries are computed when read (the history attribute): see section 10. */
export class LazyDict {
  /** The value under key, or undefined. */
  lookup(_key) {
    return undefined;
  }
}

function isDict(x) {
  return x !== null && typeof x === "object" && !Array.isArray(x);
}

function hasOwn(obj, key) {
  return Object.prototype.hasOwnProperty.call(obj, key);
}

function dictGet(obj, key) {
  if (obj instanceof LazyDict) {
    const v = obj.lookup(key);
    return v === undefined ? null : v;
  }
  return hasOwn(obj, key) ? normal(obj[key]) : null;
}

function normal(v) {
  return v === undefined ? null : v;
}

function isIndexKey(k) {
  return /^(0|[1-9][0-9]*)$/.test(k) && Number(k) < 2 ** 32 - 1;
}

/** The value at a dot path; null when any step is missing ("a.0" indexes, "a.length" of an array). */
export function getPath(obj, path) {
  if (!path.includes(".") && isDict(obj)) return dictGet(obj, path);
  let current = obj;
  for (const part of path.split(".")) {
    if (isDict(current)) {
      if (current instanceof LazyDict) {
        const v = current.lookup(part);
        if (v === undefined) return null;
        current = v;
      } else {
        if (!hasOwn(current, part)) return null;
        current = normal(current[part]);
      }
    } else if (Array.isArray(current)) {
      if (part === "length") current = current.length;
      else if (isIndexKey(part) && Number(part) < current.length) current = normal(current[Number(part)]);
      else return null;
    } else return null;
  }
  return current;
}

export function isOperatorObject(x) {
  if (!isDict(x) || x instanceof LazyDict) return false;
  const keys = Object.keys(x);
  if (keys.length === 0) return false;
  for (const k of keys) if (!k.startsWith("$")) return false;
  return true;
}

/** JS String() with null for a missing value (a LazyDict reads as an object). */
function jsStr(x) {
  if (x instanceof LazyDict) return "[object Object]";
  return String(x);
}

function jsonKey(x) {
  if (x instanceof LazyDict) return "{}";
  return JSON.stringify(x);
}

export function jsType(x) {
  if (x === null || x === undefined) return "null";
  if (Array.isArray(x)) return "array";
  const t = typeof x;
  if (t === "string" || t === "number" || t === "boolean" || t === "object") return t;
  return "unknown";
}

/** Python str comparison (code points) for version strings. */
function cpCompare(a, b) {
  if (!/[\ud800-\udfff]/.test(a + b)) return a < b ? -1 : a > b ? 1 : 0;
  const x = Array.from(a, (c) => c.codePointAt(0));
  const y = Array.from(b, (c) => c.codePointAt(0));
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] < y[i] ? -1 : 1;
  return x.length - y.length < 0 ? -1 : x.length > y.length ? 1 : 0;
}

const versionCache = new Map();

/** GrowthBook paddedVersionString. */
export function paddedVersion(v) {
  if (typeof v === "number") v = String(v);
  if (!v || typeof v !== "string") v = "0";
  let cached = versionCache.get(v);
  if (cached === undefined) {
    const parts = v.replace(/(^v|\+.*$)/g, "").split(/[-.]/);
    if (parts.length === 3) parts.push("~");
    cached = parts.map((p) => (/^[0-9]+$/.test(p) ? p.padStart(5, " ") : p)).join("-");
    if (versionCache.size >= 4096) versionCache.clear();
    versionCache.set(v, cached);
  }
  return cached;
}

/** Python's str.lower() for the strings $ini/$alli compare. */
function lower(s) {
  return s.toLowerCase();
}

function isIn(actual, expected, insensitive = false) {
  if (insensitive) {
    expected = expected.map((e) => (typeof e === "string" ? lower(e) : e));
    if (Array.isArray(actual)) actual = actual.map((a) => (typeof a === "string" ? lower(a) : a));
    else if (typeof actual === "string") actual = lower(actual);
  }
  if (Array.isArray(actual)) {
    for (const a of actual) for (const e of expected) if (normal(a) === normal(e)) return true;
    return false;
  }
  for (const e of expected) if (actual === normal(e)) return true;
  return false;
}

function isInAll(actual, expected, groups, insensitive) {
  if (!Array.isArray(actual)) return false;
  for (const clause of expected) {
    let any = false;
    for (const a of actual) {
      if (evalValue(clause, normal(a), groups, insensitive)) {
        any = true;
        break;
      }
    }
    if (!any) return false;
  }
  return true;
}

function group(groups, id) {
  const key = typeof id === "string" ? id : jsStr(id);
  const members = hasOwn(groups, key) ? groups[key] : null;
  return Array.isArray(members) ? members : [];
}

function truthy(x) {
  return x instanceof LazyDict ? true : !!x;
}

function elemMatch(actual, expected, groups) {
  if (!Array.isArray(actual)) return false;
  if (isOperatorObject(expected)) return actual.some((a) => truthy(a) && evalValue(expected, normal(a), groups));
  return actual.some((a) => truthy(a) && evalCond(a, expected, groups));
}

/** JS relational comparison with Vary's null for missing: NaN (undefined order) is false. */
function relational(a, e) {
  if (a instanceof LazyDict) a = "[object Object]";
  if (e instanceof LazyDict) e = "[object Object]";
  return [a, e];
}

export const OPERATORS = {
  $eq: (a, e) => a === normal(e),
  $ne: (a, e) => a !== normal(e),
  $lt: (a, e) => ((a, e) => a < e)(...relational(a, e)),
  $lte: (a, e) => ((a, e) => a <= e)(...relational(a, e)),
  $gt: (a, e) => ((a, e) => a > e)(...relational(a, e)),
  $gte: (a, e) => ((a, e) => a >= e)(...relational(a, e)),
  $veq: (a, e) => paddedVersion(a) === paddedVersion(e),
  $vne: (a, e) => paddedVersion(a) !== paddedVersion(e),
  $vlt: (a, e) => cpCompare(paddedVersion(a), paddedVersion(e)) < 0,
  $vlte: (a, e) => cpCompare(paddedVersion(a), paddedVersion(e)) <= 0,
  $vgt: (a, e) => cpCompare(paddedVersion(a), paddedVersion(e)) > 0,
  $vgte: (a, e) => cpCompare(paddedVersion(a), paddedVersion(e)) >= 0,
  $exists: (a, e) => (truthy(e) ? a !== null : a === null),
  $in: (a, e) => Array.isArray(e) && isIn(a, e),
  $nin: (a, e) => Array.isArray(e) && !isIn(a, e),
  $ini: (a, e) => Array.isArray(e) && isIn(a, e, true),
  $nini: (a, e) => Array.isArray(e) && !isIn(a, e, true),
  $inGroup: (a, e, g) => isIn(a, group(g, e)),
  $notInGroup: (a, e, g) => !isIn(a, group(g, e)),
  $not: (a, e, g) => !evalValue(e, a, g),
  $size: (a, e, g) => Array.isArray(a) && evalValue(e, a.length, g),
  $elemMatch: (a, e, g) => elemMatch(a, e, g),
  $all: (a, e, g) => Array.isArray(e) && isInAll(a, e, g, false),
  $alli: (a, e, g) => Array.isArray(e) && isInAll(a, e, g, true),
  $regex: (a, e) => typeof e === "string" && regexSearch(e, false, jsStr(a)),
  $regexi: (a, e) => typeof e === "string" && regexSearch(e, true, jsStr(a)),
  $type: (a, e) => jsType(a) === e,
};
Object.setPrototypeOf(OPERATORS, null);

function evalValue(condition, value, groups, insensitive = false) {
  condition = normal(condition);
  if (isDict(condition)) {
    const keys = Object.keys(condition);
    if (keys.length === 1) {
      const fn = OPERATORS[keys[0]];
      if (fn !== undefined) return fn(value, condition[keys[0]], groups);
    }
    if (!isOperatorObject(condition)) return jsonKey(value) === jsonKey(condition);
    for (const op of keys) {
      const fn = OPERATORS[op];
      if (fn === undefined || !fn(value, condition[op], groups)) return false;
    }
    return true;
  }
  if (typeof condition === "string") {
    if (insensitive) return lower(jsStr(value)) === lower(condition);
    return jsStr(value) === condition;
  }
  if (typeof condition === "boolean") return value !== null && truthy(value) === condition;
  if (typeof condition === "number") return Number(value instanceof LazyDict ? NaN : value) === condition;
  if (condition === null) return value === null;
  return jsonKey(value) === jsonKey(condition);
}

function evalOr(obj, conditions, groups) {
  if (conditions.length === 0) return true;
  for (const sub of conditions) if (evalCond(obj, sub, groups)) return true;
  return false;
}

function evalCond(obj, condition, groups) {
  if (!isDict(condition) || condition instanceof LazyDict) return false;
  for (const key of Object.keys(condition)) {
    const value = condition[key];
    if (key === "$or") {
      if (!Array.isArray(value) || !evalOr(obj, value, groups)) return false;
    } else if (key === "$nor") {
      if (!Array.isArray(value) || evalOr(obj, value, groups)) return false;
    } else if (key === "$and") {
      if (!Array.isArray(value)) return false;
      for (const sub of value) if (!evalCond(obj, sub, groups)) return false;
    } else if (key === "$not") {
      if (!isDict(value) || evalCond(obj, value, groups)) return false;
    } else if (!evalValue(value, getPath(obj, key), groups)) return false;
  }
  return true;
}

/** Whether attributes satisfy condition (GrowthBook evalCondition, Vary's rules). Never throws. */
export function evalCondition(attributes, condition, savedGroups = null) {
  try {
    return evalCond(attributes, condition, savedGroups || {});
  } catch {
    return false; // absurd nesting (stack overflow): fail closed, as the server does
  }
}

// =================================================================================================
// 6. Explaining a matched condition (personalization/decision/audience_explain.py)
// =================================================================================================

const EXPLAIN_MAX = 200;
const SYMBOLS = {
  $eq: "=", $ne: "≠", $lt: "<", $lte: "≤", $gt: ">", $gte: "≥",
  $veq: "=", $vne: "≠", $vlt: "<", $vlte: "≤", $vgt: ">", $vgte: "≥",
  $in: "in", $nin: "not in", $ini: "in", $nini: "not in",
  $inGroup: "in group", $notInGroup: "not in group",
  $regex: "matches", $regexi: "matches",
  $all: "has all of", $alli: "has all of",
};
Object.setPrototypeOf(SYMBOLS, null);

const listText = new WeakMap();

/** A value as a marketer reads it: numbers to 2 decimals, strings bare, short lists (format_value). */
export function formatValue(x, fromBundle = false) {
  if (x === null || x === undefined) return "(not set)";
  if (typeof x === "boolean") return x ? "true" : "false";
  if (typeof x === "number") {
    if (!Number.isFinite(x)) return String(x);
    if (Number.isInteger(x)) return Math.abs(x) < 1e21 ? String(x) : BigInt(x).toString();
    const s = pyFixed(x, 2).replace(/0+$/, "").replace(/\.$/, "");
    return s === "-0" ? "0" : s;
  }
  if (typeof x === "string") return pyLen(x) <= 40 ? x : pySlice(x, 39) + "…";
  if (Array.isArray(x)) {
    // A condition's lists come from the bundle, are never changed once parsed, and repeat on every
    // decision: their text is kept, by identity (a visitor's lists are formatted every time).
    let text = fromBundle ? listText.get(x) : undefined;
    if (text === undefined) {
      const shown = x.slice(0, 6).map((v) => formatValue(v)).join(", ");
      text = `[${shown}${x.length > 6 ? ", …" : ""}]`;
      if (fromBundle) listText.set(x, text);
    }
    return text;
  }
  if (typeof x === "object") return "{…}";
  return String(x);
}

function explainClause(subject, actual, clause, showActual = true) {
  const shown = showActual ? ` ${formatValue(actual)}` : "";
  if (!isOperatorObject(clause)) return `${subject}${shown} = ${formatValue(normal(clause), true)}`;
  const parts = [];
  for (const op of Object.keys(clause)) {
    const arg = normal(clause[op]);
    if (op === "$exists") parts.push(`${subject} ${truthy(arg) ? "exists" : "does not exist"}`);
    else if (op === "$not") parts.push(`not (${explainClause(subject, actual, arg, showActual)})`);
    else if (op === "$size") {
      const size = Array.isArray(actual) ? actual.length : null;
      parts.push(explainClause(`${subject} size`, size, arg, showActual));
    } else if (op === "$type") {
      parts.push(`${subject} type${showActual ? ` ${jsType(actual)}` : ""} = ${formatValue(arg, true)}`);
    } else if (op === "$elemMatch") {
      let inner;
      if (isOperatorObject(arg)) inner = explainClause("item", null, arg, false);
      else inner = isDict(arg) ? explain({}, arg, false) : "?";
      parts.push(`${subject} has an item where (${inner})`);
    } else if (SYMBOLS[op] !== undefined) parts.push(`${subject}${shown} ${SYMBOLS[op]} ${formatValue(arg, true)}`);
    else parts.push(`${subject} ${op} ${formatValue(arg, true)} (unknown operator)`);
  }
  return parts.join(", ");
}

const LABELS = { $or: "any of", $and: "all of", $nor: "none of" };

function explain(attributes, condition, showActual = true) {
  const parts = [];
  for (const key of Object.keys(condition)) {
    const value = condition[key];
    if ((key === "$or" || key === "$and" || key === "$nor") && Array.isArray(value)) {
      const inner = value.map((sub) => (isDict(sub) ? explain(attributes, sub, showActual) : "?")).join("; ");
      parts.push(`${LABELS[key]} (${inner})`);
    } else if (key === "$not" && isDict(value)) parts.push(`not (${explain(attributes, value, showActual)})`);
    else parts.push(explainClause(key, getPath(attributes, key), value, showActual));
  }
  return parts.join(", ");
}

/** A short phrase of what condition compared, with the visitor's values (at most 200 characters). */
export function explainCondition(attributes, condition) {
  if (!isDict(condition)) return "(invalid condition)";
  let text;
  try {
    text = explain(attributes, condition) || "everyone";
  } catch {
    text = "(condition nested too deeply)";
  }
  return pyLen(text) <= EXPLAIN_MAX ? text : pySlice(text, EXPLAIN_MAX - 1) + "…";
}

// explain() reads the attributes only through getPath(attributes, key) for the keys below (the top
// level, and inside $or/$and/$nor/$not), and turns a string, number, boolean or null into the same
// text every time. So for those values a condition's explanation is a function of the values read:
// it is kept per condition (a bundle's, never changed once parsed), and the visitors from one country
// or channel share one text instead of rebuilding it on every decision.
const EXPLAIN_KEPT = 4096;

function explainedPaths(condition, paths) {
  for (const key of Object.keys(condition)) {
    const value = condition[key];
    if ((key === "$or" || key === "$and" || key === "$nor") && Array.isArray(value)) {
      for (const sub of value) if (isDict(sub)) explainedPaths(sub, paths);
    } else if (key === "$not" && isDict(value)) explainedPaths(value, paths);
    else paths.push(key);
  }
  return paths;
}

/** The keeper of one condition's explanations: paths null when they are not kept (not a plain condition). */
function explainPlan(condition) {
  let paths = null;
  if (isDict(condition) && !(condition instanceof LazyDict)) {
    try {
      paths = explainedPaths(condition, []);
    } catch {
      paths = null; // nested too deeply: explained (as that) on every call
    }
  }
  return { condition, paths, texts: new Map(), size: 0, everyone: null };
}

/** explainCondition(attributes, plan.condition), from the kept texts when the values read are scalars. */
function explainKept(attributes, plan) {
  const paths = plan.paths;
  if (paths === null) return explainCondition(attributes, plan.condition);
  if (paths.length === 0) return (plan.everyone ??= explainCondition(attributes, plan.condition));
  let level = plan.texts;
  for (let i = 0; ; i++) {
    const value = getPath(attributes, paths[i]);
    if (value !== null && typeof value === "object") return explainCondition(attributes, plan.condition); // shown by shape
    const kept = level.get(value);
    if (i === paths.length - 1) {
      if (kept !== undefined) return kept;
      const text = explainCondition(attributes, plan.condition);
      if (plan.size >= EXPLAIN_KEPT) {
        plan.texts = new Map();
        plan.size = 0;
      } else {
        level.set(value, text);
        plan.size++;
      }
      return text;
    }
    if (kept !== undefined) level = kept;
    else {
      const next = new Map();
      level.set(value, next);
      level = next;
    }
  }
}

// =================================================================================================
// 7. Hashes and sums: SHA-256 (uniform_from_key), math.fsum, math.erfc
// =================================================================================================

const SHA_K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);
const SHA_W = new Uint32Array(64);
const UTF8 = new TextEncoder();

/** SHA-256 of bytes, as 8 big-endian 32-bit words. Synchronous (crypto.subtle.digest is not), so
 * decide() stays synchronous; it hashes a few dozen bytes per bandit decision. */
export function sha256Words(bytes) {
  const bitLength = bytes.length * 8;
  const padded = new Uint8Array(((bytes.length + 9 + 63) >> 6) << 6);
  padded.set(bytes);
  padded[bytes.length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 8, Math.floor(bitLength / 2 ** 32));
  view.setUint32(padded.length - 4, bitLength >>> 0);
  let h0 = 0x6a09e667, h1 = 0xbb67ae85, h2 = 0x3c6ef372, h3 = 0xa54ff53a;
  let h4 = 0x510e527f, h5 = 0x9b05688c, h6 = 0x1f83d9ab, h7 = 0x5be0cd19;
  const w = SHA_W;
  for (let off = 0; off < padded.length; off += 64) {
    for (let i = 0; i < 16; i++) w[i] = view.getUint32(off + i * 4);
    for (let i = 16; i < 64; i++) {
      const a = w[i - 15], b = w[i - 2];
      const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3);
      const s1 = ((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
    }
    let a = h0, b = h1, c = h2, d = h3, e = h4, f = h5, g = h6, h = h7;
    for (let i = 0; i < 64; i++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const ch = (e & f) ^ (~e & g);
      const t1 = (h + S1 + ch + SHA_K[i] + w[i]) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const maj = (a & b) ^ (a & c) ^ (b & c);
      const t2 = (S0 + maj) | 0;
      h = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
    }
    h0 = (h0 + a) | 0; h1 = (h1 + b) | 0; h2 = (h2 + c) | 0; h3 = (h3 + d) | 0;
    h4 = (h4 + e) | 0; h5 = (h5 + f) | 0; h6 = (h6 + g) | 0; h7 = (h7 + h) | 0;
  }
  return [h0, h1, h2, h3, h4, h5, h6, h7].map((x) => x >>> 0);
}

/** A uniform number in [0, 1) from SHA-256 of the parts joined by NUL: its first 53 bits / 2^53. */
export function uniformFromKey(...parts) {
  const [w0, w1] = sha256Words(UTF8.encode(parts.join("\u0000")));
  return (w0 * 2 ** 21 + (w1 >>> 11)) / 2 ** 53;
}

/** Python's math.fsum: the correctly rounded sum (Shewchuk's partials, CPython's final rounding). */
export function fsum(values) {
  const partials = [];
  let special = 0;
  for (let x of values) {
    if (!Number.isFinite(x)) {
      special += x;
      continue;
    }
    let i = 0;
    for (let y of partials) {
      if (Math.abs(x) < Math.abs(y)) [x, y] = [y, x];
      const hi = x + y;
      const lo = y - (hi - x);
      if (lo !== 0) partials[i++] = lo;
      x = hi;
    }
    partials.length = i;
    partials.push(x);
  }
  if (special !== 0 || Number.isNaN(special)) return special;
  let n = partials.length;
  let hi = 0;
  if (n > 0) {
    hi = partials[--n];
    let lo = 0;
    while (n > 0) {
      const x = hi;
      const y = partials[--n];
      hi = x + y;
      const yr = hi - x;
      lo = y - yr;
      if (lo !== 0) break;
    }
    if (n > 0 && ((lo < 0 && partials[n - 1] < 0) || (lo > 0 && partials[n - 1] > 0))) {
      const y = lo * 2;
      const x = hi + y;
      const yr = x - hi;
      if (y === yr) hi = x;
    }
  }
  return hi;
}

// fdlibm's erfc (Sun Microsystems, 1993; freely distributable): accurate to < 1 ulp. Python's
// math.erfc is the platform libm's, so the two may differ in the last bit (README: "libm").
const ERX = 8.45062911510467529297e-1;
const PP = [1.28379167095512558561e-1, -3.25042107247001499370e-1, -2.84817495755985104766e-2, -5.77027029648944159157e-3, -2.37630166566501626084e-5];
const QQ = [0, 3.97917223959155352819e-1, 6.50222499887672944485e-2, 5.08130628187576562776e-3, 1.32494738004321644526e-4, -3.96022827877536812320e-6];
const PA = [-2.36211856075265944077e-3, 4.14856118683748331666e-1, -3.72207876035701323847e-1, 3.18346619901161753674e-1, -1.10894694282396677476e-1, 3.54783043256182359371e-2, -2.16637559486879084300e-3];
const QA = [0, 1.06420880400844228286e-1, 5.40397917702171048937e-1, 7.18286544141962662868e-2, 1.26171219808761642112e-1, 1.36370839120290507362e-2, 1.19844998467991074170e-2];
const RA = [-9.86494403484714822705e-3, -6.93858572707181764372e-1, -1.05586262253232909814e1, -6.23753324503260060396e1, -1.62396669462573470355e2, -1.84605092906711035994e2, -8.12874355063065934246e1, -9.81432934416914548592];
const SA = [0, 1.96512716674392571292e1, 1.37657754143519042600e2, 4.34565877475229228821e2, 6.45387271733267880336e2, 4.29008140027567833386e2, 1.08635005541779435134e2, 6.57024977031928170135, -6.04244152148580987438e-2];
const RB = [-9.86494292470009928597e-3, -7.99283237680523006574e-1, -1.77579549177547519889e1, -1.60636384855821916062e2, -6.37566443368389627722e2, -1.02509513161107724954e3, -4.83519191608651397019e2];
const SB = [0, 3.03380607434824582924e1, 3.25792512996573918826e2, 1.53672958608443695994e3, 3.19985821950859553908e3, 2.55305040643316442583e3, 4.74528541206955367215e2, -2.24409524465858183362e1];

export function erfc(x) {
  F64[0] = x;
  const hx = U32[HI] | 0;
  const ix = hx & 0x7fffffff;
  if (ix >= 0x7ff00000) return Number.isNaN(x) ? x : x > 0 ? 0 : 2;
  if (ix < 0x3feb0000) {
    if (ix < 0x3c700000) return 1 - x;
    const z = x * x;
    const r = PP[0] + z * (PP[1] + z * (PP[2] + z * (PP[3] + z * PP[4])));
    const s = 1 + z * (QQ[1] + z * (QQ[2] + z * (QQ[3] + z * (QQ[4] + z * QQ[5]))));
    const y = r / s;
    if (hx < 0x3fd00000) return 1 - (x + x * y);
    let t = x * y;
    t += x - 0.5;
    return 0.5 - t;
  }
  if (ix < 0x3ff40000) {
    const s = Math.abs(x) - 1;
    const P = PA[0] + s * (PA[1] + s * (PA[2] + s * (PA[3] + s * (PA[4] + s * (PA[5] + s * PA[6])))));
    const Q = 1 + s * (QA[1] + s * (QA[2] + s * (QA[3] + s * (QA[4] + s * (QA[5] + s * QA[6])))));
    if (hx >= 0) return 1 - ERX - P / Q;
    return 1 + (ERX + P / Q);
  }
  if (ix < 0x403c0000) {
    const ax = Math.abs(x);
    const s = 1 / (ax * ax);
    let R;
    let S;
    if (ix < 0x4006db6d) {
      R = RA[0] + s * (RA[1] + s * (RA[2] + s * (RA[3] + s * (RA[4] + s * (RA[5] + s * (RA[6] + s * RA[7]))))));
      S = 1 + s * (SA[1] + s * (SA[2] + s * (SA[3] + s * (SA[4] + s * (SA[5] + s * (SA[6] + s * (SA[7] + s * SA[8])))))));
    } else {
      if (hx < 0 && ix >= 0x40180000) return 2;
      R = RB[0] + s * (RB[1] + s * (RB[2] + s * (RB[3] + s * (RB[4] + s * (RB[5] + s * RB[6])))));
      S = 1 + s * (SB[1] + s * (SB[2] + s * (SB[3] + s * (SB[4] + s * (SB[5] + s * (SB[6] + s * SB[7]))))));
    }
    F64[0] = ax;
    U32[LO] = 0;
    const z = F64[0];
    const r = Math.exp(-z * z - 0.5625) * Math.exp((z - ax) * (z + ax) + R / S);
    return hx > 0 ? r / ax : 2 - r / ax;
  }
  return hx > 0 ? 0 : 2;
}

// =================================================================================================
// 8. Thompson sampling's P(best) and the exploration budget (thompson.py, policy.py)
// =================================================================================================

// Gauss–Hermite terms (t·√2, w/√π) with w > 1e-18, exactly as thompson.py's _GH_TERMS (printed by
// Python's repr, which round-trips): test_js_sdk.py checks this table against Python's.
export const GH_TERMS = [
  [-8.444371322523448, 7.419993598064781e-17],
  [-7.887517316500366, 6.7566772746571e-15],
  [-7.348660565908913, 3.975805958471442e-13],
  [-6.824651320745979, 1.5883609812463545e-11],
  [-6.3130699149055, 4.474287153436348e-10],
  [-5.8119999877025315, 9.154055746313755e-09],
  [-5.319884620419086, 1.3927916895599578e-07],
  [-4.8354308858789565, 1.6063936955426085e-06],
  [-4.357544108790291, 1.4266092324246693e-05],
  [-3.8852811172483914, 9.881804917611342e-05],
  [-3.4178160486847764, 0.0005395865846271889],
  [-2.95441468888012, 0.0023430821117604106],
  [-2.4944147430400236, 0.008149696855351937],
  [-2.037210303259033, 0.02283821210009136],
  [-1.582239319674964, 0.051805183549560214],
  [-1.1289732315096481, 0.09546340056142928],
  [-0.6769081422063474, 0.14328245699317627],
  [-0.2255570729801633, 0.1754635418118661],
  [0.2255570729801633, 0.1754635418118661],
  [0.6769081422063474, 0.14328245699317627],
  [1.1289732315096481, 0.09546340056142928],
  [1.582239319674964, 0.051805183549560214],
  [2.037210303259033, 0.02283821210009136],
  [2.4944147430400236, 0.008149696855351937],
  [2.95441468888012, 0.0023430821117604106],
  [3.4178160486847764, 0.0005395865846271889],
  [3.8852811172483914, 9.881804917611342e-05],
  [4.357544108790291, 1.4266092324246693e-05],
  [4.8354308858789565, 1.6063936955426085e-06],
  [5.319884620419086, 1.3927916895599578e-07],
  [5.8119999877025315, 9.154055746313755e-09],
  [6.3130699149055, 4.474287153436348e-10],
  [6.824651320745979, 1.5883609812463545e-11],
  [7.348660565908913, 3.975805958471442e-13],
  [7.887517316500366, 6.7566772746571e-15],
  [8.444371322523448, 7.419993598064781e-17]
];
const GH_LOWEST = GH_TERMS[0][0];
const SQRT2 = Math.sqrt(2);
const TAIL = 8.5;
export const THOMPSON_RACE = 16;
export const BUDGET_ROWS = 1000;
export const DEFAULT_EVIDENCE_ROWS = 100;

function race(mu, sd) {
  const scales = sd.map((s) => -1 / (s * SQRT2));
  const k = mu.length;
  const upper = mu.map((m, b) => m + TAIL * sd[b]);
  // Python: sorted(((m − TAIL·s, b) …), reverse=True): by value, then index, descending.
  const lower = mu.map((m, b) => [m - TAIL * sd[b], b]).sort((p, q) => (q[0] - p[0]) || (q[1] - p[1]));
  const best = [];
  for (let a = 0; a < k; a++) {
    const muA = mu[a];
    const sdA = sd[a];
    const highestOtherLower = lower[0][1] === a && k > 1 ? lower[1][0] : lower[0][0];
    if (k > 1 && upper[a] < highestOtherLower) {
      best.push(0);
      continue;
    }
    const lowestNode = muA + sdA * GH_LOWEST;
    const others = [];
    for (let b = 0; b < k; b++) if (b !== a && upper[b] >= lowestNode) others.push([mu[b], scales[b]]);
    let total = 0;
    for (const [t, w] of GH_TERMS) {
      const x = muA + sdA * t;
      let product = w;
      for (const [muB, scaleB] of others) product *= erfc((x - muB) * scaleB);
      total += product;
    }
    best.push(Math.max(total * 0.5 ** others.length, 0));
  }
  let mass = 0;
  for (const b of best) mass += b;
  return best.map((b) => b / mass);
}

/** P(action a has the highest reward rate) under Gaussian approximations of Beta posteriors. */
export function probabilityBest(predictions, evidenceRows) {
  const rows = evidenceRows.map((m) => Math.max(Number(m), 0));
  const mu = predictions.map((p, i) => (Math.min(Math.max(p, 0), 1) * rows[i] + 1) / (rows[i] + 2));
  const sd = mu.map((u, i) => Math.sqrt((u * (1 - u)) / (rows[i] + 3)));
  const k = mu.length;
  if (k <= THOMPSON_RACE) return race(mu, sd);
  const bound = mu.map((m, a) => -(m + 3 * sd[a]));
  const order = [...Array(k).keys()].sort((a, b) => (bound[a] !== bound[b] ? (bound[a] < bound[b] ? -1 : 1) : a - b));
  const runners = order.slice(0, THOMPSON_RACE).sort((a, b) => a - b);
  const shares = race(runners.map((a) => mu[a]), runners.map((a) => sd[a]));
  const out = new Array(k).fill(0);
  runners.forEach((a, i) => {
    out[a] = shares[i];
  });
  return out;
}

function epsilonGreedy(predictions, epsilon) {
  const k = predictions.length;
  const top = Math.max(...predictions);
  const winners = predictions.filter((p) => p === top).length;
  const share = (1 - epsilon) / winners;
  return predictions.map((p) => epsilon / k + (p === top ? share : 0));
}

function applyFloor(probabilities, floor) {
  const k = probabilities.length;
  if (floor <= 0) return [...probabilities];
  const lifted = new Set();
  for (;;) {
    const rest = [];
    for (let a = 0; a < k; a++) if (!lifted.has(a)) rest.push(a);
    let mass = 0;
    for (const a of rest) mass += probabilities[a];
    const budget = 1 - floor * lifted.size;
    if (rest.length === 0) return new Array(k).fill(floor);
    if (mass <= 0) return probabilities.map((_, a) => (lifted.has(a) ? floor : budget / rest.length));
    const scaled = new Map(rest.map((a) => [a, (probabilities[a] * budget) / mass]));
    const low = rest.filter((a) => scaled.get(a) < floor);
    if (low.length === 0) return probabilities.map((_, a) => (lifted.has(a) ? floor : scaled.get(a)));
    for (const a of low) lifted.add(a);
  }
}

export function explorationBudget(epsilon, loggedRows) {
  if (loggedRows == null || loggedRows <= BUDGET_ROWS) return epsilon;
  return epsilon * Math.sqrt(BUDGET_ROWS / loggedRows);
}

export function explorationFloor(minProbability, budget, k) {
  return Math.min(minProbability, budget / (2 * k));
}

function withinBudget(probabilities, best, budget, floor) {
  const k = probabilities.length;
  const others = [];
  for (let a = 0; a < k; a++) if (!best.has(a)) others.push(a);
  const excess = fsum(others.map((a) => probabilities[a]));
  if (excess <= budget) return [...probabilities];
  const spare = budget - floor * others.length;
  const above = excess - floor * others.length;
  const out = [...probabilities];
  for (const a of others) out[a] = floor + ((probabilities[a] - floor) * spare) / above;
  const bestList = [...best].sort((a, b) => a - b);
  const kept = fsum(bestList.map((a) => probabilities[a]));
  for (const a of bestList) out[a] = (1 - budget) * (kept > 0 ? probabilities[a] / kept : 1 / best.size);
  return out;
}

/**
 * The serving distribution over k variants given P(reward | x, a) (policy.action_probabilities).
 * rows: the logged rows per variant the model rests on (its card's actions), or null.
 */
export function actionProbabilities(predictions, method = "thompson", { epsilon = 0.1, minProbability = 0.05, rows = null, evidenceRows = null, loggedRows = null, decay = true } = {}) {
  const k = predictions.length;
  if (k < 1) throw new RangeError("no predictions: need one per variant");
  const values = predictions.map(Number);
  if (!values.every(Number.isFinite)) throw new RangeError("predictions must be finite numbers");
  if (!(minProbability >= 0 && minProbability <= 1)) throw new RangeError("minProbability must be in [0, 1]");
  if (!(epsilon >= 0 && epsilon <= 1)) throw new RangeError("epsilon must be in [0, 1]");
  if (loggedRows == null && rows != null) loggedRows = fsum(rows);
  const budget = explorationBudget(epsilon, decay ? loggedRows : null);
  const floor = explorationFloor(minProbability, budget, k);
  const top = Math.max(...values);
  const best = new Set();
  values.forEach((v, a) => {
    if (v === top) best.add(a);
  });
  let probabilities;
  if (method === "epsilon_greedy") probabilities = epsilonGreedy(values, budget);
  else if (method === "thompson") {
    let evidence;
    if (evidenceRows == null) evidence = rows != null ? [...rows] : new Array(k).fill(DEFAULT_EVIDENCE_ROWS);
    else {
      evidence = typeof evidenceRows === "number" ? new Array(k).fill(evidenceRows) : [...evidenceRows];
      if (evidence.length !== k || !evidence.every((m) => m > 0)) throw new RangeError("evidenceRows must be > 0, one number or one per variant");
    }
    probabilities = probabilityBest(values, evidence);
  } else throw new RangeError(`unknown method ${method}: use 'thompson' or 'epsilon_greedy'`);
  return withinBudget(applyFloor(probabilities, floor), best, budget, floor);
}

/** The variant whose cumulative-probability interval holds u ∈ [0, 1). */
export function chooseAction(probabilities, u) {
  if (!(u >= 0 && u < 1)) throw new RangeError(`u must be in [0, 1), got ${u}`);
  if (probabilities.length === 0) throw new RangeError("no probabilities to choose from");
  let cumulative = 0;
  let last = 0;
  for (let a = 0; a < probabilities.length; a++) {
    const p = probabilities[a];
    if (p < 0) throw new RangeError(`probability ${a} is negative`);
    if (p > 0) {
      cumulative += p;
      last = a;
      if (u < cumulative) return a;
    }
  }
  return last;
}

// =================================================================================================
// 9. Features and compiled linear models (features.py, segments.py, policy.py)
// =================================================================================================
//
// A feature row is an array of [name, value] pairs in the order Python's dict has them: the order
// the per-segment sums are added in, so scores are the same doubles.

const DAY = 86400;

/** Python's urlsplit(url).hostname, for referrers. */
function hostnameOf(url) {
  url = url.replace(/^[\u0000-\u0020]+/, "").replace(/[\t\r\n]/g, "");
  const colon = url.indexOf(":");
  if (colon > 0 && /^[A-Za-z]/.test(url) && /^[A-Za-z0-9+\-.]+$/.test(url.slice(0, colon))) url = url.slice(colon + 1);
  if (!url.startsWith("//")) return null;
  let end = url.length;
  for (const c of "/?#") {
    const i = url.indexOf(c, 2);
    if (i !== -1 && i < end) end = i;
  }
  const netloc = url.slice(2, end);
  const hostinfo = netloc.slice(netloc.lastIndexOf("@") + 1);
  let hostname;
  const bracket = hostinfo.indexOf("[");
  if (bracket !== -1) {
    const rest = hostinfo.slice(bracket + 1);
    hostname = rest.split("]")[0];
  } else hostname = hostinfo.split(":")[0];
  if (!hostname) return null;
  const percent = hostname.indexOf("%");
  return percent === -1 ? hostname.toLowerCase() : hostname.slice(0, percent).toLowerCase() + hostname.slice(percent);
}

function referrerDomain(url) {
  if (!url) return null;
  const host = hostnameOf(url.includes("//") ? url : `//${url}`);
  if (!host) return null;
  return host.startsWith("www.") ? host.slice(4) : host;
}

/** The segment model's input for a visitor (features.build_features without plugin extractors). */
export function buildFeatures(visitor, profile, now) {
  const row = [["channel", visitor.channel]];
  if (visitor.device) row.push(["device", visitor.device.toLowerCase()]);
  if (visitor.country) row.push(["country", visitor.country.toUpperCase()]);
  const domain = referrerDomain(visitor.referrer);
  if (domain) row.push(["referrer_domain", domain]);
  const utm = visitor.utm || {};
  for (const key of ["source", "medium", "campaign"]) {
    const value = hasOwn(utm, key) ? utm[key] : null;
    if (value) row.push([`utm_${key}`, value.toLowerCase()]);
  }
  row.push(["visits", profile.visits]);
  row.push(["log_page_views", Math.log1p(profile.page_views)]);
  row.push(["conversions", profile.conversions]);
  row.push(["channels_used", profile.channels.length]);
  row.push(["is_new", profile.is_new ? 1 : 0]);
  if (profile.first_seen != null) row.push(["days_since_first_seen", Math.max(0, (now - profile.first_seen) / DAY)]);
  return row;
}

/** The context a bandit's reward model sees (features.policy_context). */
export function policyContext(channel, country, device, segments) {
  const row = [["channel", channel]];
  if (country) row.push(["country", country]);
  if (device) row.push(["device", device]);
  for (const [name, score] of segments) row.push([`segment_${name}`, score]);
  return row;
}

export function sigmoid(z) {
  if (z >= 0) return 1 / (1 + Math.exp(-z));
  const e = Math.exp(z);
  return e / (1 + e);
}

/**
 * The compiled segment model (segments.CompiledSegmentModel): σ(b_j + Σ w_jk·x_k) with the scaler
 * folded in. weights maps a vocabulary key ("visits", "channel=web") to one weight per segment.
 * Returns [segment, score] pairs in the model's segment order.
 */
export function scoreSegments(model, features) {
  const weights = model.weights;
  const ones = [];
  const scaled = [];
  for (const [name, value] of features) {
    if (typeof value === "string") {
      const key = name + "=" + value;
      if (hasOwn(weights, key)) ones.push(weights[key]);
    } else if (value != null) {
      if (hasOwn(weights, name)) scaled.push([weights[name], value]);
    }
  }
  const scores = [];
  model.segments.forEach((segment, j) => {
    let z = model.intercepts[j];
    for (const w of ones) z += w[j];
    for (const [w, value] of scaled) z += w[j] * value;
    scores.push([segment, sigmoid(z)]);
  });
  return scores;
}

function reservedName(name) {
  return name === "action" || name.startsWith("action=");
}

/** The compiled reward model's P(reward | features, a) for a = 0..k-1 (policy.CompiledRewardModel.predict). */
export function predictRewards(policy, features) {
  const weights = policy.weights;
  const z = [...policy.intercepts];
  const k = z.length;
  for (const [name, value] of features) {
    if (value == null || reservedName(name)) continue;
    if (typeof value === "string") {
      const key = name + "=" + value;
      if (hasOwn(weights, key)) {
        const w = weights[key];
        for (let a = 0; a < k; a++) z[a] += w[a];
      }
    } else if (hasOwn(weights, name)) {
      const w = weights[name];
      for (let a = 0; a < k; a++) z[a] += w[a] * value;
    }
  }
  return z.map(sigmoid);
}

// =================================================================================================
// 10. Context, history, frequency caps (context.py, history.py, frequency.py)
// =================================================================================================

export const BUILTIN_ATTRIBUTES = new Set([
  "id", "session_id", "channel", "locale", "device", "country", "referrer", "page", "utm",
  "traits", "segments", "profile", "new_visitor", "returning_visitor",
  "continent", "city", "region", "page_path", "page_query", "history",
]);

const CONTINENT_COUNTRIES = {
  AF: "AO BF BI BJ BW CD CF CG CI CM CV DJ DZ EG EH ER ET GA GH GM GN GQ GW KE KM LR LS LY MA MG ML MR MU MW MZ NA NE NG RE RW SC SD SH SL SN SO SS ST SZ TD TG TN TZ UG YT ZA ZM ZW",
  AN: "AQ BV GS HM TF",
  AS: "AE AF AM AZ BD BH BN BT CC CN CX GE HK ID IL IN IO IQ IR JO JP KG KH KP KR KW KZ LA LB LK MM MN MO MV MY NP OM PH PK PS QA SA SG SY TH TJ TL TM TR TW UZ VN YE",
  EU: "AD AL AT AX BA BE BG BY CH CY CZ DE DK EE ES FI FO FR GB GG GI GR HR HU IE IM IS IT JE LI LT LU LV MC MD ME MK MT NL NO PL PT RO RS RU SE SI SJ SK SM UA VA XK",
  NA: "AG AI AW BB BL BM BQ BS BZ CA CR CU CW DM DO GD GL GP GT HN HT JM KN KY LC MF MQ MS MX NI PA PM PR SV SX TC TT US VC VG VI",
  OC: "AS AU CK FJ FM GU KI MH MP NC NF NR NU NZ PF PG PN PW SB TK TO TV UM VU WF WS",
  SA: "AR BO BR CL CO EC FK GF GY PE PY SR UY VE",
};
const CONTINENTS = new Map();
for (const [continent, countries] of Object.entries(CONTINENT_COUNTRIES)) {
  for (const country of countries.split(" ")) CONTINENTS.set(country, continent);
}

export function continentOf(country) {
  return country ? CONTINENTS.get(country.toUpperCase()) ?? null : null;
}

/** Python's urllib.parse.unquote (UTF-8, errors="replace"). */
function unquote(s) {
  if (!s.includes("%")) return s;
  const out = [];
  let bytes = [];
  const flush = () => {
    if (bytes.length) out.push(new TextDecoder("utf-8").decode(new Uint8Array(bytes)));
    bytes = [];
  };
  for (let i = 0; i < s.length; ) {
    if (s[i] === "%" && /^[0-9a-fA-F]{2}$/.test(s.slice(i + 1, i + 3))) {
      bytes.push(parseInt(s.slice(i + 1, i + 3), 16));
      i += 3;
    } else {
      flush();
      out.push(s[i]);
      i += 1;
    }
  }
  flush();
  return out.join("");
}

/** Python's urlsplit(...).path and .query. */
function pathAndQuery(url) {
  url = url.replace(/^[\u0000-\u0020]+/, "").replace(/[\t\r\n]/g, "");
  const colon = url.indexOf(":");
  if (colon > 0 && /^[A-Za-z]/.test(url) && /^[A-Za-z0-9+\-.]+$/.test(url.slice(0, colon))) url = url.slice(colon + 1);
  if (url.startsWith("//")) {
    let end = url.length;
    for (const c of "/?#") {
      const i = url.indexOf(c, 2);
      if (i !== -1 && i < end) end = i;
    }
    url = url.slice(end);
  }
  const hash = url.indexOf("#");
  if (hash !== -1) url = url.slice(0, hash);
  const q = url.indexOf("?");
  return q === -1 ? [url, ""] : [url.slice(0, q), url.slice(q + 1)];
}

function parseQuery(query) {
  const out = {};
  if (!query) return out;
  for (const part of query.split("&")) {
    if (!part) continue;
    const eq = part.indexOf("=");
    const name = eq === -1 ? part : part.slice(0, eq);
    const value = eq === -1 ? "" : part.slice(eq + 1);
    out[unquote(name.replace(/\+/g, " "))] = unquote(value.replace(/\+/g, " "));
  }
  return out;
}

function pageParts(page) {
  if (page.startsWith("/") && !page.includes("?") && !page.includes("#")) return [page, {}];
  const [path, query] = pathAndQuery(page);
  return [path || "/", parseQuery(query)];
}

// -- history (history.py): parsed only when a condition reads it -----------------------------------

const UNITS = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };

export function windowSeconds(key) {
  const m = typeof key === "string" ? /^(\d{1,9}(?:\.\d{1,6})?)([smhdw])\n?$/.exec(key) : null;
  return m ? Number(m[1]) * UNITS[m[2]] : null;
}

function parseEntry(raw) {
  const parts = raw.split(/\s+/).filter(Boolean);
  if (!parts.length) return [0, []];
  if (!/^[+-]?\d+$/.test(parts[0])) return [0, []];
  const stamps = [];
  for (const p of parts.slice(1)) {
    const v = Number(p);
    if (p === "" || Number.isNaN(v) && !/^[+-]?nan$/i.test(p)) return [0, []];
    stamps.push(v);
  }
  return [Number(parts[0]), stamps];
}

class Window extends LazyDict {
  constructor(stamps, now) {
    super();
    this.stamps = stamps;
    this.now = now;
  }

  lookup(key) {
    const seconds = windowSeconds(key);
    if (seconds === null) return undefined;
    const since = this.now - seconds;
    let count = 0;
    for (const ts of this.stamps) if (since <= ts && ts <= this.now) count++;
    return count;
  }
}

const MATCH = {
  eq: (actual, values) => actual === values[0],
  ne: (actual, values) => actual !== values[0],
  has: (actual, values) => actual.includes(values[0]),
  nhas: (actual, values) => !actual.includes(values[0]),
  pre: (actual, values) => actual.startsWith(values[0]),
  suf: (actual, values) => actual.endsWith(values[0]),
  in: (actual, values) => values.includes(actual),
  nin: (actual, values) => !values.includes(actual),
};

class Views extends LazyDict {
  constructor(pages, now) {
    super();
    this.pages = pages;
    this.now = now;
  }

  lookup(key) {
    if (typeof key !== "string" || !key) return undefined;
    const query = [];
    for (const part of key.split("&")) {
      const pieces = part.split("~");
      if (pieces.length !== 3 || !["url", "path"].includes(pieces[0]) || !hasOwn(MATCH, pieces[1])) return undefined;
      query.push([pieces[0], MATCH[pieces[1]], pieces[2].split("|").map(unquote)]);
    }
    let count = 0;
    const stamps = [];
    for (const page of this.pages) {
      if (query.every(([attribute, match, values]) => match(page[attribute], values))) {
        count += page.count;
        stamps.push(...page.within.stamps);
      }
    }
    return { count, within: new Window(stamps, this.now) };
  }
}

function pathOf(url) {
  if (url.startsWith("/")) return url;
  const sep = url.indexOf("://");
  if (sep === -1) return url;
  const rest = url.slice(sep + 3);
  const slash = rest.indexOf("/");
  return slash >= 0 ? rest.slice(slash) : "/";
}

class History extends LazyDict {
  constructor(raw, now) {
    super();
    this.raw = raw;
    this.now = now;
    this.built = null;
  }

  lookup(key) {
    if (!["pages", "events", "any_page", "any_event", "views"].includes(key)) return undefined;
    if (this.built === null) this.built = this.materialise();
    return this.built[key];
  }

  materialise() {
    const pages = [];
    const events = {};
    const pageStamps = [];
    const eventStamps = [];
    let pageTotal = 0;
    let eventTotal = 0;
    const record = (count, stamps, extra) => ({ ...extra, count, last: stamps.length ? stamps[stamps.length - 1] : null, within: new Window(stamps, this.now) });
    for (const [field, raw] of Object.entries(this.raw)) {
      const isPage = field.startsWith("p:");
      if (!isPage && !field.startsWith("e:")) continue;
      const [count, stamps] = parseEntry(raw);
      if (isPage) {
        const url = field.slice(2);
        pages.push(record(count, stamps, { url, path: pathOf(url) }));
        pageStamps.push(...stamps);
        pageTotal += count;
      } else {
        events[field.slice(2)] = record(count, stamps, {});
        eventStamps.push(...stamps);
        eventTotal += count;
      }
    }
    pages.sort((a, b) => (b.last || 0) - (a.last || 0));
    return {
      pages,
      events,
      any_page: { count: pageTotal, within: new Window(pageStamps, this.now) },
      any_event: { count: eventTotal, within: new Window(eventStamps, this.now) },
      views: new Views(pages, this.now),
    };
  }
}

// -- frequency caps (frequency.py) ------------------------------------------------------------------

/** The UTC day and ISO week (since the epoch) of now, in Unix seconds. */
export function frequencyBuckets(now) {
  const day = Math.floor(now / DAY);
  return [day, Math.floor((day + 3) / 7)];
}

export function exposureCounts(raw, now) {
  const parts = String(raw).split(/\s+/).filter(Boolean);
  if (parts.length !== 5 || !parts.every((p) => /^[+-]?\d+$/.test(p))) return { day: 0, week: 0, campaign: 0 };
  const [day, nDay, week, nWeek, total] = parts.map(Number);
  const [today, thisWeek] = frequencyBuckets(now);
  return { day: day === today ? nDay : 0, week: week === thisWeek ? nWeek : 0, campaign: total };
}

/** The counter after one more exposure at now (the writer's exposure_count.lua). */
export function countExposure(raw, now) {
  const [day, week] = frequencyBuckets(now);
  let d = day, nd = 0, w = week, nw = 0, total = 0;
  const parts = raw ? String(raw).split(/\s+/).filter(Boolean).map(Number) : [];
  if (parts.length === 5 && parts.every(Number.isFinite)) [d, nd, w, nw, total] = parts;
  if (d === day) nd += 1;
  else if (d < day) [d, nd] = [day, 1];
  if (w === week) nw += 1;
  else if (w < week) [w, nw] = [week, 1];
  return `${d} ${nd} ${w} ${nw} ${total + 1}`;
}

export function capReached(experience, attributes) {
  const cap = experience.frequency_cap;
  if (cap == null) return null;
  const profile = attributes.profile;
  const exposures = isDict(profile) ? profile.exposures : null;
  const counts = isDict(exposures) && hasOwn(exposures, experience.key) ? exposures[experience.key] : null;
  const seen = isDict(counts) && hasOwn(counts, cap.period) ? counts[cap.period] : 0;
  if (seen < cap.max_exposures) return null;
  const per = cap.period === "campaign" ? "in this campaign" : `per ${cap.period}`;
  return (
    `frequency cap: ${pyRepr(experience.key)} is served at most ${cap.max_exposures} times ${per} ` +
    `and this person has seen it ${seen} times (all channels); baseline served`
  );
}

/** A visitor with every default filled in, in canonical form (context.normalise_visitor). */
export function normaliseVisitor(visitor) {
  if (!isDict(visitor) || typeof visitor.id !== "string" || !visitor.id) {
    throw new TypeError("visitor.id is required: a non-empty string");
  }
  const consent = isDict(visitor.consent) ? visitor.consent : {};
  return {
    id: visitor.id,
    session_id: visitor.session_id ?? null,
    channel: visitor.channel ?? "web",
    locale: visitor.locale ?? null,
    device: visitor.device ? visitor.device.toLowerCase() : visitor.device ?? null,
    country: visitor.country ? visitor.country.toUpperCase() : visitor.country ?? null,
    referrer: visitor.referrer ?? null,
    page: visitor.page ?? null,
    utm: visitor.utm ?? {},
    traits: visitor.traits ?? {},
    consent: { personalization: consent.personalization ?? true, analytics: consent.analytics ?? true },
  };
}

/** A profile with every default filled in (types.Profile). */
export function normaliseProfile(profile) {
  const p = isDict(profile) ? profile : {};
  return {
    visits: p.visits ?? 0,
    page_views: p.page_views ?? 0,
    conversions: p.conversions ?? 0,
    first_seen: p.first_seen ?? null,
    last_seen: p.last_seen ?? null,
    channels: p.channels ?? [],
    goals: p.goals ?? {},
    assignments: p.assignments ?? {},
    history: p.history ?? {},
    traits: p.traits ?? {},
    frequency: p.frequency ?? {},
    is_new: (p.visits ?? 0) === 0,
  };
}

/** The document audience conditions read (context.audience_attributes). segments: [name, score] pairs. */
export function audienceAttributes(visitor, profile, segments, now) {
  const attributes = {};
  const traits = visitor.traits;
  for (const name in traits) if (hasOwn(traits, name) && !BUILTIN_ATTRIBUTES.has(name)) attributes[name] = traits[name];
  const exposures = {};
  const frequency = profile.frequency;
  for (const key in frequency) if (hasOwn(frequency, key)) exposures[key] = exposureCounts(frequency[key], now);
  const scores = {};
  for (const [name, score] of segments) scores[name] = score;
  attributes.id = visitor.id;
  attributes.session_id = visitor.session_id;
  attributes.channel = visitor.channel;
  attributes.locale = visitor.locale;
  attributes.device = visitor.device;
  attributes.country = visitor.country;
  attributes.referrer = visitor.referrer;
  attributes.page = visitor.page;
  attributes.utm = visitor.utm;
  attributes.traits = traits;
  attributes.segments = scores;
  attributes.profile = {
    visits: profile.visits,
    page_views: profile.page_views,
    conversions: profile.conversions,
    channels: profile.channels.slice(),
    goals: profile.goals,
    exposures,
  };
  attributes.new_visitor = profile.is_new;
  attributes.returning_visitor = !profile.is_new;
  attributes.continent = visitor.country ? CONTINENTS.get(visitor.country) ?? continentOf(visitor.country) : null;
  attributes.city = hasOwn(traits, "city") ? traits.city : null;
  attributes.region = hasOwn(traits, "region") ? traits.region : null;
  attributes.history = new History(profile.history, now);
  if (visitor.page) [attributes.page_path, attributes.page_query] = pageParts(visitor.page);
  return attributes;
}

// =================================================================================================
// 11. Selection and decide() (selection.py, global_holdout.py, decide.py)
// =================================================================================================

export const HOLDOUT_SEED = ":holdout";
export const HOLDOUT_STICKY = -1;
export const GLOBAL_EXPERIENCE = "_global";
export const GLOBAL_HOLDOUT_SEED = "vary-global-holdout";
const HASHED_TYPES = new Set(["personalization", "ab_test"]);

export function phaseKey(key, phase) {
  return phase <= 1 ? key : `${key}@p${phase}`;
}

function isRunning(experience, now) {
  if (experience.starts_at != null && now < experience.starts_at) return false;
  return experience.ends_at == null || now < experience.ends_at;
}

function pausedReason(experience, variant) {
  const paused = experience.paused;
  if (!paused) return null;
  const key = String(variant);
  return hasOwn(paused, key) ? paused[key] : null;
}

function isPaused(experience, variant) {
  return pausedReason(experience, variant) !== null;
}

export function variantPropensity(experience, variant) {
  const h = experience.holdout ?? 0;
  const weights = experience.weights;
  const w = variant >= 0 && variant < weights.length ? weights[variant] : 0;
  if (variant === 0) return h + (1 - h) * w;
  return (1 - h) * w;
}

function describe(variant, experience) {
  return variant === 0 ? "control" : `variant ${variant} (${experience.variants[variant - 1]})`;
}

export function layerMiss(experience, visitorId) {
  const layer = experience.layer;
  if (layer == null) return null;
  const share = experience.layer_range;
  if (share == null) return `layer ${pyRepr(layer)}: ${pyRepr(experience.key)} has no range in it, so no visitor enters`;
  const [start, end] = share;
  if (inNamespace(visitorId, [layer, start, end])) return null;
  return (
    `layer ${pyRepr(layer)}: the visitor is outside ${pyRepr(experience.key)}'s range ` +
    `[${pyG(start)}, ${pyG(end)}), which keeps the layer's experiences mutually exclusive`
  );
}

function entered(experience, variant, holdout, reason) {
  return { experience, variant, holdout, propensity: variantPropensity(experience, variant), reason };
}

const BASELINE = (reason) => ({ experience: null, variant: 0, holdout: false, propensity: 1, reason });

const preparedCache = new WeakMap();

/**
 * What deciding an experience needs that no visitor changes, made once per experience object (a
 * bundle's experiences are never changed once read; Vary's constructor prepares them at load): the
 * bucket ranges, the FNV state after the key (the hash then reads only the visitor id), the reasons
 * of the plain outcomes, and the keeper of its audience's explanations.
 */
function prepared(experience) {
  let p = preparedCache.get(experience);
  if (p === undefined) {
    // Made lazily where they can throw on a malformed experience: where and when they always did.
    const key = experience.key;
    const audience = experience.audience ?? null;
    p = {
      ranges: null,
      seed: typeof key === "string" ? fnvFrom(0x811c9dc5, key) : null,
      entered: [], // entered[v]: "<type>: <variant v>, weight <w>"
      outside: null,
      matched: null, // "audience '<name>' matched ("
      explain: audience !== null ? explainPlan(audience.condition) : null,
    };
    preparedCache.set(experience, p);
  }
  return p;
}

/** Bucket one visitor who matched the audience (selection.assign_variant). */
export function assignVariant(experience, visitorId, sticky = null) {
  return assignHashed(experience, prepared(experience), visitorId, sticky);
}

function assignHashed(experience, prep, visitorId, sticky) {
  const k = experience.variants.length + 1;
  if (sticky === HOLDOUT_STICKY) return entered(experience, 0, true, "sticky: held out on an earlier visit (control)");
  if (sticky != null && sticky >= 0 && sticky < k) {
    return entered(experience, sticky, false, `sticky: ${describe(sticky, experience)} assigned on an earlier visit`);
  }
  const n = prep.seed !== null && typeof visitorId === "string" ? bucketHashV2From(prep.seed, visitorId) : bucketHash(experience.key, visitorId, 2);
  const variant = chooseVariation(n, (prep.ranges ??= bucketRanges(k, experience.traffic_allocation ?? 1, [...experience.weights])));
  if (variant < 0) {
    const coverage = experience.traffic_allocation ?? 1;
    return BASELINE((prep.outside ??= `outside traffic allocation of ${pyRepr(experience.key)} (${pyPercent0(coverage)} of the audience enter)`));
  }
  const holdout = experience.holdout ?? 0;
  if (holdout > 0) {
    const h = bucketHash(experience.key + HOLDOUT_SEED, visitorId, 2) || 0;
    if (h < holdout) return entered(experience, 0, true, `holdout: kept on control (${pyPercent0(holdout)} of entrants are held out)`);
  }
  const reason = (prep.entered[variant] ??= `${experience.type}: ${describe(variant, experience)}, weight ${pyPercent0(experience.weights[variant])}`);
  return entered(experience, variant, false, reason);
}

function policyRows(policy, k) {
  const rows = policy.actions;
  if (!Array.isArray(rows) || rows.length !== k) return null;
  let total = 0;
  for (const r of rows) total += r;
  return total > 0 ? rows.map(Number) : null;
}

function banditProbabilities(experience, context, policy, k) {
  if (policy == null || policy.n_actions !== k) return new Array(k).fill(1 / k);
  return actionProbabilities(predictRewards(policy, context), experience.bandit_method ?? "thompson", {
    epsilon: experience.epsilon ?? 0.1,
    minProbability: experience.min_probability ?? 0.05,
    rows: policyRows(policy, k),
  });
}

/** A bandit experience: the learned policy's probabilities, or uniform until one exists. */
export function assignBandit(experience, visitorId, context, policy, sticky = null) {
  const k = experience.variants.length + 1;
  const probabilities = banditProbabilities(experience, context, policy, k);
  let variant;
  let reason;
  if (sticky != null && sticky >= 0 && sticky < k) {
    variant = sticky;
    reason = `sticky: ${describe(sticky, experience)} assigned on an earlier visit`;
  } else {
    variant = chooseAction(probabilities, uniformFromKey(experience.key, visitorId));
    const how =
      policy == null
        ? `bandit without a policy model yet: uniform over ${k} variants`
        : `bandit policy ${policy.version} (${experience.bandit_method ?? "thompson"}): P = ${pyFixed(probabilities[variant], 2)}`;
    reason = `${how}; ${describe(variant, experience)}`;
  }
  return { experience, variant, holdout: false, propensity: probabilities[variant], reason, probabilities };
}

/** The first running experience whose audience matches decides (selection.select_experience). */
export function selectExperience(experiences, attributes, visitorId, sticky, now, context, policies) {
  return select(experiences, attributes, visitorId, sticky, now, context, policies, null, null);
}

/** selectExperience; a null context is made from visitor and segments when a bandit needs it (only a bandit reads it). */
function select(experiences, attributes, visitorId, sticky, now, context, policies, visitor, segments) {
  let skipped = null;
  for (const experience of experiences) {
    if (!isRunning(experience, now)) {
      (skipped ??= []).push(`${experience.key} not running`);
      continue;
    }
    const audience = experience.audience ?? null;
    if (audience !== null && !evalCondition(attributes, audience.condition)) {
      (skipped ??= []).push(`${experience.key}: not in audience ${pyRepr(audience.name)}`);
      continue;
    }
    const outsideLayer = layerMiss(experience, visitorId);
    if (outsideLayer !== null) return BASELINE(`baseline: ${matchedText(audience)}; ${outsideLayer}`);
    const capped = capReached(experience, attributes);
    if (capped !== null) return BASELINE(`${capped}: ${matchedText(audience)}`);
    const stickyKey = phaseKey(experience.key, experience.phase ?? 1);
    const stuck = hasOwn(sticky, stickyKey) ? sticky[stickyKey] : null;
    const prep = prepared(experience);
    let assignment;
    if (experience.type === "bandit") {
      if (context === null && visitor !== null) context = policyContext(visitor.channel, visitor.country, visitor.device, segments);
      assignment = assignBandit(experience, visitorId, context, policies[experience.key] ?? null, stuck);
    } else if (HASHED_TYPES.has(experience.type) && experience.bucketing === "ninetailed") {
      const ninetailed = assignNinetailed(experience, visitorId);
      if (ninetailed === null) {
        (skipped ??= []).push(`${experience.key}: outside its traffic (${pyPercent0(experience.traffic_allocation ?? 1)})`);
        continue;
      }
      assignment = ninetailed;
    } else if (HASHED_TYPES.has(experience.type)) {
      assignment = assignHashed(experience, prep, visitorId, stuck);
    } else {
      // A plugin's experience type runs on the server only: the SDK cannot decide it.
      (skipped ??= []).push(`${experience.key}: no policy for type ${pyRepr(experience.type)}`);
      continue;
    }
    let reason;
    if (audience !== null) {
      const matched = (prep.matched ??= `audience ${pyRepr(audience.name)} matched (`);
      reason = `${matched}${explainKept(attributes, prep.explain)}); ${assignment.reason}`;
    } else reason = `everyone; ${assignment.reason}`;
    const paused = pausedReason(experience, assignment.variant);
    if (paused !== null) reason = `${paused}; baseline served, assignment kept: ${reason}`;
    assignment.reason = reason; // a fresh object from the assign function
    return assignment;
  }
  if (experiences.length === 0) return BASELINE("no experience on this entry: baseline");
  return BASELINE("baseline: " + skipped.join("; "));
}

function matchedText(audience) {
  return audience === null ? "everyone" : `audience ${pyRepr(audience.name)} matched`;
}

export function inGlobalHoldout(visitorId, share) {
  return share > 0 && (bucketHash(GLOBAL_HOLDOUT_SEED, visitorId, 2) || 0) < share;
}

/**
 * decide.decide(): one decision and one exposure per entry, in request order.
 *
 * entries: [{entry_id, experiences: [experience, ...]}] (experiences in priority order, with their
 * live pauses and phase). model: the compiled segment model or null. policies: reward models by
 * experience key. Returns {visitor, segments ([name, score] pairs), features, context, model_version,
 * decisions, exposures, assignments}.
 */
export function decideLocally({ visitor, profile, entries, model = null, now, policies = {}, globalHoldout = 0, newId }) {
  return decideEntries(normaliseVisitor(visitor), normaliseProfile(profile), entries, model, now, policies, globalHoldout, newId, true);
}

/**
 * decideLocally over a visitor and profile already normalised. records: also the exposure records
 * and the features and bandit context (decideLocally's answer); Vary.decide, which makes each
 * entry's exposure only when it is sent, passes false and reads `global` (the global holdout's
 * exposure, or null) instead.
 */
function decideEntries(visitor, profile, entries, model, now, policies, globalHoldout, newId, records) {
  // 1. context: consent gates everything after it
  const personalize = visitor.consent.personalization;
  const globalShare = personalize && entries.length ? globalHoldout : 0;
  const heldOut = inGlobalHoldout(visitor.id, globalShare)
    ? BASELINE(`global holdout: baseline content for every experience (${pyG(globalShare * 100)}% of visitors)`)
    : null;
  // 3. features, 4. segment scores (none without consent)
  let segments = [];
  let features = null;
  if (model !== null && personalize) {
    features = buildFeatures(visitor, profile, now);
    segments = scoreSegments(model, features);
  }
  const attributes = personalize ? audienceAttributes(visitor, profile, segments, now) : {};
  const context = records ? policyContext(visitor.channel, visitor.country, visitor.device, segments) : null;
  const decisions = [];
  const exposures = records ? [] : null;
  const assignments = [];
  const visitorRef = visitor.consent.analytics ? visitor.id : null;
  const sessionRef = visitorRef ? visitor.session_id : null;
  const modelVersion = model !== null && personalize ? model.version : null;
  const sticky = profile.assignments;
  const segmentScores = records || globalShare > 0 ? Object.fromEntries(segments) : null;
  for (const entry of entries) {
    // 5. experience per entry, 6. audience + bucketing
    let chosen;
    if (heldOut !== null) chosen = heldOut;
    else if (personalize) chosen = select(entry.experiences, attributes, visitor.id, sticky, now, context, policies, visitor, segments);
    else chosen = BASELINE("baseline: the visitor has not consented to personalization");
    // 7. variant content: variant 0 is the baseline entry itself, as is a paused variant's
    const experience = chosen.experience;
    const variant = chosen.variant;
    const experienceKey = experience !== null ? experience.key : null;
    const variantEntryId =
      experience === null || variant === 0 || isPaused(experience, variant) ? entry.entry_id : experience.variants[variant - 1];
    const exposureId = newId();
    decisions.push({
      entry_id: entry.entry_id,
      experience: experienceKey,
      variant,
      variant_entry_id: variantEntryId,
      is_control: variant === 0,
      holdout: chosen.holdout,
      propensity: chosen.propensity,
      reason: chosen.reason,
      exposure_id: exposureId,
    });
    // 8. exposure, one per entry served
    if (records) {
      exposures.push({
        id: exposureId,
        ts: now,
        visitor_id: visitorRef,
        session_id: sessionRef,
        channel: visitor.channel,
        entry_id: entry.entry_id,
        variant_entry_id: variantEntryId,
        experience: experienceKey,
        variant,
        is_control: variant === 0,
        holdout: chosen.holdout,
        propensity: chosen.propensity,
        model_version: modelVersion,
        segments: segmentScores,
        country: visitor.country,
        device: visitor.device,
        phase: experience !== null ? experience.phase ?? 1 : 1,
      });
    }
    if (experience !== null && visitorRef) {
      const key = phaseKey(experience.key, experience.phase ?? 1);
      if (!hasOwn(sticky, key)) {
        assignments.push([visitor.id, key, chosen.holdout ? HOLDOUT_STICKY : variant]);
      }
    }
  }
  // 9. the global holdout's own exposure
  let global = null;
  if (globalShare > 0) {
    const first = entries[0].entry_id;
    const inHoldout = heldOut !== null;
    global = {
      id: newId(),
      ts: now,
      visitor_id: visitorRef,
      session_id: sessionRef,
      channel: visitor.channel,
      entry_id: first,
      variant_entry_id: first,
      experience: GLOBAL_EXPERIENCE,
      variant: inHoldout ? 0 : 1,
      is_control: inHoldout,
      holdout: inHoldout,
      propensity: inHoldout ? globalShare : 1 - globalShare,
      model_version: modelVersion,
      segments: segmentScores,
      country: visitor.country,
      device: visitor.device,
      phase: 1,
    };
  }
  if (!records) return { segments, model_version: modelVersion, decisions, assignments, global };
  if (global !== null) exposures.push(global);
  return { visitor, segments, features, context, model_version: modelVersion, decisions, exposures, assignments };
}

// =================================================================================================
// 12. The client: bundle verification, local profile, exposures
// =================================================================================================

export const BUNDLE_FORMAT = 1;
export const SDK_VERSION = "0.1.0";
const ID_KEY = "vary_vid";
const PROFILE_PREFIX = "vary_profile:";
const SESSION_TIMEOUT_S = 1800;
const MAX_PAGES = 50;
const PAGE_STAMPS = 10;
const MAX_EVENTS = 32;
const EVENT_STAMPS = 20;
const BEACON_BYTES = 60000;

/** Why the SDK refused something: `code` is stable, `message` says what and where. */
export class VaryError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "VaryError";
    this.code = code;
  }
}

function toBytes(input) {
  if (input instanceof Uint8Array) return input;
  if (input instanceof ArrayBuffer) return new Uint8Array(input);
  if (ArrayBuffer.isView(input)) return new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
  if (typeof input === "string") return UTF8.encode(input);
  throw new VaryError("bad_input", "expected the bundle as bytes (Uint8Array, ArrayBuffer), JSON text or a parsed object");
}

/** Bytes from base64, base64url or hex text (or the bytes themselves). */
export function decodeBinary(value, what) {
  if (value instanceof Uint8Array || value instanceof ArrayBuffer || ArrayBuffer.isView(value)) return toBytes(value);
  if (typeof value !== "string") throw new VaryError("bad_key", `${what}: expected bytes or base64/hex text`);
  let text = value.trim().replace(/^(ed25519[=:])/i, "");
  if (/^[0-9a-fA-F]+$/.test(text) && text.length % 2 === 0 && (text.length === 64 || text.length === 128)) {
    return Uint8Array.from(text.match(/../g), (h) => parseInt(h, 16));
  }
  text = text.replace(/-----[^-]+-----/g, "").replace(/\s+/g, "").replace(/-/g, "+").replace(/_/g, "/");
  while (text.length % 4) text += "=";
  try {
    return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  } catch {
    throw new VaryError("bad_key", `${what}: not valid base64, base64url or hex`);
  }
}

let nodeWebcrypto = null;

/** WebCrypto: the global one, else (Node 18, where `crypto` is not a global) node:crypto's. */
async function webcrypto() {
  if (globalThis.crypto?.subtle) return globalThis.crypto;
  if (nodeWebcrypto === null) {
    try {
      const specifier = "node:" + "crypto"; // computed: bundlers for browsers must not try to resolve it
      nodeWebcrypto = (await import(/* webpackIgnore: true */ specifier)).webcrypto ?? false;
    } catch {
      nodeWebcrypto = false;
    }
  }
  return nodeWebcrypto || null;
}

/** A verification key from raw 32 bytes, SPKI (DER or PEM), text encodings of either, or a CryptoKey. */
async function importPublicKey(publicKey) {
  if (typeof CryptoKey !== "undefined" && publicKey instanceof CryptoKey) return publicKey;
  if (typeof publicKey === "string" && publicKey.trim().startsWith("{")) {
    const parsed = JSON.parse(publicKey);
    publicKey = parsed.public_key ?? parsed.key;
  } else if (isDict(publicKey) && !ArrayBuffer.isView(publicKey) && !(publicKey instanceof ArrayBuffer)) {
    publicKey = publicKey.public_key ?? publicKey.key;
  }
  const subtle = (await webcrypto())?.subtle;
  if (!subtle) throw new VaryError("no_webcrypto", "this runtime has no WebCrypto (crypto.subtle): the bundle's signature cannot be verified");
  const bytes = decodeBinary(publicKey, "publicKey");
  const format = bytes.length === 32 ? "raw" : "spki";
  try {
    return await subtle.importKey(format, bytes, { name: "Ed25519" }, false, ["verify"]);
  } catch (error) {
    throw new VaryError(
      "no_ed25519",
      `publicKey: could not import an Ed25519 ${format} key (${error && error.message}). ` +
        "WebCrypto Ed25519 needs Node >= 18.4 (20+ recommended), Deno, Cloudflare Workers, Vercel Edge, Chrome 137+, Firefox 129+, Safari 17+",
    );
  }
}

/** Whether signature is a valid Ed25519 signature of bytes under publicKey. */
export async function verifyBundleSignature(bytes, signature, publicKey) {
  const key = await importPublicKey(publicKey);
  const sig = decodeBinary(signature, "signature");
  if (sig.length !== 64) return false;
  return (await webcrypto()).subtle.verify({ name: "Ed25519" }, key, sig, toBytes(bytes));
}

/**
 * The bundle inside an encrypted envelope {"format", "version", "encrypted": "<b64 nonce>.<b64 AES-GCM
 * ciphertext+tag>"} (VARY_BUNDLE_ENCRYPTION_KEY on the server). The key ships with every SDK that
 * decides: it keeps rules from casual readers of a cache, nothing more.
 */
async function decryptBundle(envelope, decryptionKey) {
  if (decryptionKey === null) {
    throw new VaryError("encrypted", "the bundle is encrypted: pass decryptionKey (the server's VARY_BUNDLE_ENCRYPTION_KEY, base64)");
  }
  const [nonce, sealed] = envelope.encrypted.split(".");
  if (!nonce || !sealed) throw new VaryError("bad_bundle", "encrypted: expected <base64 nonce>.<base64 ciphertext>");
  const subtle = (await webcrypto())?.subtle;
  if (!subtle) throw new VaryError("no_webcrypto", "this runtime has no WebCrypto: an encrypted bundle cannot be read");
  const raw = decodeBinary(decryptionKey, "decryptionKey");
  if (![16, 24, 32].includes(raw.length)) throw new VaryError("bad_key", "decryptionKey: expected 16, 24 or 32 bytes (base64)");
  let plain;
  try {
    const key = await subtle.importKey("raw", raw, { name: "AES-GCM" }, false, ["decrypt"]);
    plain = await subtle.decrypt({ name: "AES-GCM", iv: decodeBinary(nonce, "nonce") }, key, decodeBinary(sealed, "ciphertext"));
  } catch {
    throw new VaryError("bad_key", "decryptionKey does not open this bundle (wrong key, or the bundle was altered)");
  }
  const bundle = JSON.parse(new TextDecoder().decode(plain));
  if (isDict(bundle) && bundle.version !== envelope.version) {
    throw new VaryError("bad_bundle", `the envelope says version ${envelope.version} but holds ${bundle.version}`);
  }
  return bundle;
}

function checkBundle(bundle) {
  if (!isDict(bundle)) throw new VaryError("bad_bundle", "the bundle is not a JSON object");
  if (bundle.format !== BUNDLE_FORMAT) {
    throw new VaryError("bundle_format", `bundle format ${JSON.stringify(bundle.format)} is not ${BUNDLE_FORMAT}: this SDK (${SDK_VERSION}) cannot read it; upgrade @vary/sdk`);
  }
  for (const field of ["version", "experiences", "entries"]) {
    if (bundle[field] === undefined) throw new VaryError("bad_bundle", `the bundle has no "${field}"`);
  }
  for (const [entry, keys] of Object.entries(bundle.entries)) {
    for (const key of keys) {
      if (!hasOwn(bundle.experiences, key)) throw new VaryError("bad_bundle", `entries.${entry} names experience ${JSON.stringify(key)}, which the bundle does not hold`);
    }
  }
}

/** A Storage-like object kept in memory (what the SDK uses without localStorage). */
export function memoryStorage() {
  const map = new Map();
  return {
    getItem: (k) => (map.has(k) ? map.get(k) : null),
    setItem: (k, v) => void map.set(k, String(v)),
    removeItem: (k) => void map.delete(k),
  };
}

/** localStorage when the runtime has a usable one (it can throw: private modes, sandboxed frames), else memory. */
export function defaultStorage() {
  try {
    const local = globalThis.localStorage;
    if (local) {
      local.setItem("vary_probe", "1");
      local.removeItem("vary_probe");
      return local;
    }
  } catch {
    /* fall through */
  }
  return memoryStorage();
}

function randomId() {
  const c = globalThis.crypto ?? (nodeWebcrypto || null);
  if (c && typeof c.randomUUID === "function") return c.randomUUID();
  const bytes = new Uint8Array(16);
  if (c && typeof c.getRandomValues === "function") c.getRandomValues(bytes);
  else for (let i = 0; i < 16; i++) bytes[i] = Math.floor(Math.random() * 256);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function boundedRecord(history, field, ts, maxFields, maxStamps) {
  const raw = history[field];
  let count = 0;
  let stamps = [];
  if (raw !== undefined) [count, stamps] = parseEntry(raw);
  else if (Object.keys(history).filter((k) => k.slice(0, 2) === field.slice(0, 2)).length >= maxFields) return;
  stamps.push(ts);
  stamps = stamps.slice(-maxStamps);
  history[field] = `${count + 1} ${stamps.map((s) => String(Math.floor(s))).join(" ")}`;
}

/**
 * One decided entry, in POST /v1/personalize's PersonalizedEntry shape (its own enumerable fields, so
 * JSON.stringify gives exactly that), holding privately what its exposure is made of.
 */
export class DecidedEntry {
  #context;

  constructor(decision, experience, fields, serverOnly, context) {
    this.entry_id = decision.entry_id;
    this.experience = decision.experience;
    this.variant = decision.variant;
    this.variant_entry_id = decision.variant_entry_id;
    this.is_control = decision.is_control;
    this.holdout = decision.holdout;
    this.propensity = decision.propensity;
    this.reason = decision.reason;
    this.exposure_id = decision.exposure_id;
    this.content_type = experience ? experience.content_type ?? null : null;
    this.fields = fields;
    if (serverOnly) this.server_only = true;
    this.#context = context;
  }

  /** The item POST /v1/exposures takes for this entry: the decision and the inputs it was made from. */
  exposure() {
    const { bundle_version, ts, visitor, profile } = this.#context;
    const { is_new: _isNew, ...used } = profile;
    return {
      bundle_version, ts, visitor, profile: used, entry_id: this.entry_id, experience: this.experience,
      variant: this.variant, propensity: this.propensity,
    };
  }
}

/** The answer of Vary.decide: POST /v1/personalize's shape, plus (not enumerable) what decide() remembered. */
export class Answer {
  #assignments;
  #global;

  constructor(visitorId, bundle, outcome, entries, assignments, global) {
    this.visitor_id = visitorId;
    this.locale = bundle.locale ?? null;
    this.segments = Object.fromEntries(outcome.segments);
    this.model_version = outcome.model_version;
    this.content_version = bundle.content_version;
    this.bundle_version = bundle.version;
    this.degraded = false;
    this.entries = entries;
    this.#assignments = assignments;
    this.#global = global;
  }

  /** The sticky assignments this decision made: [visitor id, key or key@p<phase>, variant (−1: held out)]. */
  get assignments() {
    return this.#assignments;
  }

  /** The global holdout's own exposure (variant, holdout, propensity), or null when there is none. */
  get global() {
    const x = this.#global;
    return x ? { variant: x.variant, holdout: x.holdout, propensity: x.propensity } : null;
  }
}

/**
 * A client over one bundle. Decisions are synchronous and local; exposures are queued and sent in
 * batches. Construct it with `await Vary.fromBundle(...)` or `await Vary.load(...)`.
 */
export class Vary {
  constructor(bundle, options = {}) {
    checkBundle(bundle);
    this.bundle = bundle;
    this.options = options;
    this.storage = options.storage ?? defaultStorage();
    this.clock = options.now ?? (() => Date.now() / 1000);
    this.endpoint = options.endpoint ? String(options.endpoint).replace(/\/+$/, "") : null;
    this.key = options.key ?? null;
    this.fetch = options.fetch ?? (typeof fetch === "function" ? fetch.bind(globalThis) : null);
    this.batchSize = options.batchSize ?? 20;
    this.flushDelayMs = options.flushDelayMs ?? 2000;
    this.onError = options.onError ?? (() => {});
    this.queue = [];
    this.timer = null;
    this.counter = 0;
    this.idPrefix = randomId().replace(/-/g, "").slice(0, 12);
    this.serverOnly = new Set(bundle.server_only ?? []);
    this.model = bundle.segment_model ?? null;
    this.policies = bundle.policies ?? {};
    this.requests = new Map();
    this.memoryId = null;
    this.nextId = () => this._newId();
    // What each experience's decisions share, made now rather than on the first visitor's decide().
    for (const key in bundle.experiences) if (isDict(bundle.experiences[key])) prepared(bundle.experiences[key]);
    this._listen();
  }

  /**
   * Verify (when publicKey is given) and read a bundle. Pass the bytes exactly as served: the
   * signature covers them, and a parsed object cannot be verified.
   */
  static async fromBundle(input, options = {}) {
    const { publicKey = null, signature = null } = options;
    await webcrypto();
    let bundle;
    const isBytes = typeof input === "string" || input instanceof ArrayBuffer || ArrayBuffer.isView(input);
    if (!isBytes) {
      if (publicKey !== null || signature !== null) {
        throw new VaryError("unverifiable", "a parsed bundle object cannot be verified: pass the bytes exactly as served (with publicKey and signature)");
      }
      bundle = input;
    } else {
      const bytes = toBytes(input);
      if (publicKey !== null || signature !== null) {
        if (publicKey === null) throw new VaryError("no_key", "signature given without publicKey");
        if (signature === null) throw new VaryError("no_signature", "publicKey given but the bundle came without a signature: refusing it");
        if (!(await verifyBundleSignature(bytes, signature, publicKey))) {
          throw new VaryError("bad_signature", "the bundle's Ed25519 signature does not verify with the configured public key: refusing it");
        }
      }
      try {
        bundle = JSON.parse(new TextDecoder().decode(bytes));
      } catch (error) {
        throw new VaryError("bad_bundle", `the bundle is not JSON: ${error.message}`);
      }
    }
    if (isDict(bundle) && typeof bundle.encrypted === "string") bundle = await decryptBundle(bundle, options.decryptionKey ?? null);
    return new Vary(bundle, options);
  }

  /** GET <endpoint>/v1/bundle (delivery key), verify it with publicKey, and return a client. */
  static async load({ endpoint, key, publicKey = null, locale = null, fields = false, signatureHeader = "X-Vary-Signature", fetch: fetchFn, ...options }) {
    const f = fetchFn ?? globalThis.fetch;
    const base = String(endpoint).replace(/\/+$/, "");
    const query = new URLSearchParams();
    if (locale) query.set("locale", locale);
    if (fields) query.set("fields", "true");
    const url = `${base}/v1/bundle${query.size || [...query].length ? `?${query}` : ""}`;
    const response = await f(url, { headers: { Authorization: `Bearer ${key}` } });
    if (!response.ok) throw new VaryError("bundle_unavailable", `GET ${url}: HTTP ${response.status}`);
    const bytes = new Uint8Array(await response.arrayBuffer());
    const signature = publicKey !== null ? response.headers.get(signatureHeader) : null;
    if (publicKey !== null && !signature) throw new VaryError("no_signature", `GET ${url} answered without a ${signatureHeader} header: refusing an unsigned bundle`);
    return Vary.fromBundle(bytes, { ...options, publicKey, signature, endpoint: base, key, fetch: f });
  }

  get version() {
    return this.bundle.version;
  }

  /** The first-party visitor id (created once, kept in storage under "vary_vid", as the front-end kit does). */
  visitorId() {
    let id = this.storage.getItem(ID_KEY) || this.memoryId;
    if (!id) {
      id = randomId();
      this._store(ID_KEY, id);
    }
    this.memoryId = id;
    return id;
  }

  /** A write to storage that may fail (quota, private mode): reported to onError, never thrown. */
  _store(key, value) {
    try {
      this.storage.setItem(key, value);
    } catch (error) {
      this.onError(error);
    }
  }

  /** The locally kept profile of a visitor (types.Profile's fields). */
  profile(visitorId = this.visitorId()) {
    const raw = this.storage.getItem(PROFILE_PREFIX + visitorId);
    if (!raw) return normaliseProfile({});
    try {
      return normaliseProfile(JSON.parse(raw));
    } catch {
      return normaliseProfile({});
    }
  }

  saveProfile(visitorId, profile) {
    const { is_new: _unused, ...plain } = profile;
    this._store(PROFILE_PREFIX + visitorId, JSON.stringify(plain));
  }

  /** Forget a visitor's local profile (erasure on this device). */
  forget(visitorId = this.visitorId()) {
    this.storage.removeItem(PROFILE_PREFIX + visitorId);
  }

  /** {entry_id, experiences}: the entry as decideEntries takes it, made once per entry id. */
  _entry(entryId) {
    let cached = this.requests.get(entryId);
    if (cached === undefined) {
      const keys = hasOwn(this.bundle.entries, entryId) ? this.bundle.entries[entryId] : [];
      cached = { entry_id: entryId, experiences: keys.map((key) => this.bundle.experiences[key]) };
      this.requests.set(entryId, cached);
    }
    return cached;
  }

  _newId() {
    this.counter += 1;
    return `${this.idPrefix}${this.counter.toString(16)}`;
  }

  /**
   * Decide every entry for a visitor, locally: the answer has POST /v1/personalize's shape
   * (entries with decision, reason and propensity, segment scores). Exposures are queued for
   * POST /v1/exposures unless `exposures: "manual"` (then send them with `vary.expose(entry)`).
   */
  decide(visitor = {}, entryIds = [], { now = this.clock(), profile = null, exposures = this.options.exposures ?? "auto" } = {}) {
    if (!Array.isArray(entryIds)) throw new VaryError("bad_input", "entryIds: expected an array of entry ids");
    const id = visitor.id ?? this.visitorId();
    const stored = profile !== null ? normaliseProfile(profile) : this.profile(id);
    const given = visitor.consent;
    const consent = given == null ? { personalization: true, analytics: true } : { personalization: true, analytics: true, ...given };
    // The visitor as decided (and as its exposures name it): Visitor's fields only, since the server's
    // Visitor forbids unknown ones; the stored traits under the request's, as the server lays them.
    const traits = visitor.traits == null ? { ...stored.traits } : { ...stored.traits, ...visitor.traits };
    const input = { id, consent, traits };
    // Visitor's other fields, in its order, one named read each (this runs on every decision).
    if (visitor.session_id !== undefined) input.session_id = visitor.session_id;
    if (visitor.channel !== undefined) input.channel = visitor.channel;
    if (visitor.locale !== undefined) input.locale = visitor.locale;
    if (visitor.device !== undefined) input.device = visitor.device;
    if (visitor.country !== undefined) input.country = visitor.country;
    if (visitor.referrer !== undefined) input.referrer = visitor.referrer;
    if (visitor.page !== undefined) input.page = visitor.page;
    if (visitor.utm !== undefined) input.utm = visitor.utm;
    const entries = entryIds.map((entryId) => this._entry(entryId));
    const outcome = decideEntries(
      normaliseVisitor(input), stored, entries, this.model, now, this.policies, this.bundle.global_holdout ?? 0, this.nextId, false,
    );
    const context = { bundle_version: this.bundle.version, ts: now, visitor: input, profile: stored };
    const fieldMap = this.bundle.fields;
    const experiences = this.bundle.experiences;
    const decisions = outcome.decisions;
    const served = decisions.map((decision) => {
      const experience = decision.experience !== null ? experiences[decision.experience] : null;
      const fields = fieldMap ? fieldMap[decision.variant_entry_id] ?? null : null;
      return new DecidedEntry(decision, experience, fields, this.serverOnly.has(decision.entry_id), context);
    });
    // What the server would remember: sticky assignments, traits, and (auto) frequency counters.
    if (profile === null && consent.analytics && consent.personalization) {
      const next = this.profile(id);
      for (const [, key, variant] of outcome.assignments) if (!hasOwn(next.assignments, key)) next.assignments[key] = variant;
      if (visitor.traits) Object.assign(next.traits, visitor.traits);
      if (exposures === "auto") for (const entry of served) this._count(next, entry, now);
      this.saveProfile(id, next);
    }
    if (exposures === "auto") for (const entry of served) this._enqueue(entry);
    return new Answer(id, this.bundle, outcome, served, outcome.assignments, outcome.global);
  }

  _count(profile, entry, now) {
    const key = entry.experience;
    if (key === null || key.startsWith("_")) return;
    profile.frequency[key] = countExposure(profile.frequency[key], now);
  }

  /** Send one entry's exposure now-ish (with `exposures: "manual"`, when the component is seen). */
  expose(entry) {
    const exposure = entry instanceof DecidedEntry ? entry.exposure() : null;
    if (!exposure) throw new VaryError("bad_input", "expose(): pass an entry from vary.decide()");
    if (exposure.visitor.consent.analytics && exposure.visitor.consent.personalization) {
      const next = this.profile(exposure.visitor.id);
      this._count(next, entry, exposure.ts);
      this.saveProfile(exposure.visitor.id, next);
    }
    this._enqueue(entry);
  }

  _enqueue(entry) {
    const exposure = entry.exposure();
    // No analytics consent: nothing that carries the visitor id leaves the device, so no local exposure.
    if (!exposure.visitor.consent.analytics) return;
    this.queue.push(exposure);
    if (this.queue.length >= this.batchSize && this.endpoint) this.flush().catch(() => {});
    else if (this.timer === null && this.endpoint && this.flushDelayMs >= 0 && typeof setTimeout === "function") {
      this.timer = setTimeout(() => {
        this.timer = null;
        this.flush().catch(() => {});
      }, this.flushDelayMs);
      if (typeof this.timer === "object" && typeof this.timer.unref === "function") this.timer.unref(); // Node: do not hold the process open
    }
  }

  /** The exposures waiting to be sent (for a server-side caller that posts them itself). */
  pending() {
    return [...this.queue];
  }

  /**
   * Send the queued exposures: POST /v1/exposures {"decisions": [...]} in batches. Edge functions
   * should `ctx.waitUntil(vary.flush())`. Resolves to the server's answers (beacons: `null`).
   */
  async flush({ beacon = true } = {}) {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const items = this.queue.splice(0);
    if (!items.length || !this.endpoint) {
      if (items.length && !this.endpoint) this.queue.unshift(...items);
      return [];
    }
    const answers = [];
    for (let start = 0; start < items.length; ) {
      let end = Math.min(items.length, start + this.batchSize);
      let body = JSON.stringify({ decisions: items.slice(start, end) });
      while (UTF8.encode(body).length > BEACON_BYTES && end - start > 1) {
        end = start + Math.max(1, Math.floor((end - start) / 2));
        body = JSON.stringify({ decisions: items.slice(start, end) });
      }
      answers.push(await this._post("/v1/exposures", body, beacon));
      start = end;
    }
    return answers;
  }

  async _post(path, body, beacon) {
    const nav = globalThis.navigator;
    if (beacon && nav && typeof nav.sendBeacon === "function" && this.key) {
      try {
        const blob = new Blob([body], { type: "text/plain;charset=UTF-8" });
        if (nav.sendBeacon(`${this.endpoint}${path}?key=${encodeURIComponent(this.key)}`, blob)) return null;
      } catch {
        /* fall through to fetch */
      }
    }
    if (!this.fetch) throw new VaryError("no_transport", "no fetch and no navigator.sendBeacon: cannot send exposures");
    try {
      const headers = { "Content-Type": "application/json" };
      if (this.key) headers.Authorization = `Bearer ${this.key}`;
      const response = await this.fetch(`${this.endpoint}${path}`, { method: "POST", keepalive: true, headers, body });
      const text = await response.text();
      if (!response.ok) throw new VaryError("exposures_refused", `POST ${path}: HTTP ${response.status} ${text.slice(0, 300)}`);
      return text ? JSON.parse(text) : null;
    } catch (error) {
      this.onError(error);
      throw error;
    }
  }

  _listen() {
    const target = globalThis.addEventListener ? globalThis : null;
    if (!target || typeof document === "undefined") return;
    const leave = () => {
      if (this.queue.length) void this.flush().catch(() => {});
    };
    target.addEventListener("pagehide", leave);
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "hidden") leave();
    });
  }

  /**
   * Record what the server's events would: a session (visits), page views, conversions, channels and
   * the bounded page/event history — so profile-based audiences and features work without the server.
   */
  track(type, { visitorId = this.visitorId(), sessionId = null, channel = "web", url = null, goal = null, name = null, now = this.clock() } = {}) {
    const p = this.profile(visitorId);
    const { is_new: _isNew, ...plain } = p;
    const session = sessionId ?? this.storage.getItem("vary_sid");
    const sessionKey = "vary_session:" + visitorId;
    const stale = p.last_seen == null || now - p.last_seen > SESSION_TIMEOUT_S;
    if (stale || (session && this.storage.getItem(sessionKey) !== session)) plain.visits += 1;
    if (session) this._store(sessionKey, session);
    if (plain.first_seen == null) plain.first_seen = now;
    plain.last_seen = now;
    if (!plain.channels.includes(channel)) plain.channels = [...plain.channels, channel].sort();
    plain.history = { ...plain.history };
    if (type === "page_view") {
      plain.page_views += 1;
      if (url) boundedRecord(plain.history, "p:" + String(url).split(/[?#]/)[0].slice(0, 256), now, MAX_PAGES, PAGE_STAMPS);
    } else {
      if (type === "conversion") {
        plain.conversions += 1;
        if (goal) plain.goals = { ...plain.goals, [goal]: (plain.goals[goal] ?? 0) + 1 };
      }
      boundedRecord(plain.history, "e:" + String(goal ?? name ?? type).slice(0, 128), now, MAX_EVENTS, EVENT_STAMPS);
    }
    this.saveProfile(visitorId, plain);
    return normaliseProfile(plain);
  }
}

export default Vary;

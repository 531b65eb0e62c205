"""JavaScript's value semantics for audience conditions: what GrowthBook's ``mongrule.ts`` gets from JS.

GrowthBook's conditions are specified by its JavaScript SDK, so evaluating them exactly (the
conformance cases in ``tests/personalization/decision/test_audiences.py``) means reproducing JS's
``ToString``, ``ToNumber``, truthiness, ``===``, relational comparison and ``JSON.stringify`` on
Python values — and its dot paths (``"a.0"``, ``"a.length"``) and the SDK's padded semantic-version
strings. :mod:`personalization.decision.audiences` (evaluation) and its explain and validate siblings
use these; nothing here knows about conditions. Regexes have their own module,
:mod:`~personalization.decision.audience_regex`.
"""

from __future__ import annotations

import json
import math
import re
from functools import lru_cache

# --------------------------------------------------------------------------------------------------
# JavaScript value semantics (ToString, ToNumber, truthiness, ===, <, JSON.stringify)
# --------------------------------------------------------------------------------------------------

_NAN = float("nan")
#: JS StrWhiteSpaceChar (WhiteSpace + LineTerminator), also what ``\s`` matches in a JS regex;
#: Python's ``str.strip()`` set differs slightly.
JS_WHITESPACE = " \t\n\v\f\r\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
# Unambiguous on purpose ("[0-9]+(?:\.[0-9]*)?", not "[0-9]+\.?[0-9]*"): the backtracking engine then
# stays linear on visitor strings such as "1" * 2000 + "x" (the ambiguous spelling is quadratic).
_JS_DECIMAL = re.compile(r"[+-]?(?:Infinity|(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)")
_JS_RADIX = re.compile(r"0([xXoObB])([0-9a-fA-F]+)")
_RADIX = {"x": 16, "o": 8, "b": 2}


def is_number(x: object) -> bool:
    """A JS number: int or float but not bool (Python's bool is an int subclass)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def num_str(x: float | int) -> str:
    """JS ``Number.prototype.toString()``: ``1.0 -> "1"``, ``1e-7 -> "1e-7"``, ``1e21 -> "1e+21"``."""
    if isinstance(x, int):
        if abs(x) <= 2**53:
            return str(x)
        try:
            x = float(x)
        except OverflowError:
            return "Infinity" if x > 0 else "-Infinity"
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "0"
    if x < 0:
        return "-" + num_str(-x)
    if x.is_integer() and x <= 2**53:
        return str(int(x))  # exact; larger integers use the shortest digits, padded, like JS
    # Shortest round-trip digits (repr) laid out by ECMA-262 Number::toString.
    mantissa, _, exp_s = repr(x).partition("e")
    whole, _, frac = mantissa.partition(".")
    raw = whole + frac
    digits = raw.lstrip("0")
    # n: position of the decimal point relative to the first significant digit (ECMA's "n").
    n = len(whole) + (int(exp_s) if exp_s else 0) - (len(raw) - len(digits))
    digits = digits.rstrip("0") or "0"
    k = len(digits)
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * (-n) + digits
    e = n - 1
    sign = "+" if e >= 0 else "-"
    head = digits[0] + ("." + digits[1:] if k > 1 else "")
    return f"{head}e{sign}{abs(e)}"


def js_str(x: object) -> str:
    """JS ``String(x)`` for JSON-shaped values (arrays join with commas, objects are opaque)."""
    if isinstance(x, str):
        return x
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, (int, float)):
        return num_str(x)
    if isinstance(x, (list, tuple)):
        return ",".join("" if v is None else js_str(v) for v in x)
    if isinstance(x, dict):
        return "[object Object]"
    return str(x)


def _str_to_number(s: str) -> float | int:
    """JS ``Number(string)``: trimmed decimal/hex/octal/binary literal, ``""`` -> 0, else NaN."""
    s = s.strip(JS_WHITESPACE)
    if not s:
        return 0
    if _JS_DECIMAL.fullmatch(s):
        return float(s)
    m = _JS_RADIX.fullmatch(s)
    if m:
        try:
            return int(m.group(2), _RADIX[m.group(1).lower()])
        except ValueError:
            return _NAN
    return _NAN


def to_number(x: object) -> float | int:
    """JS ``Number(x)`` (what ``x * 1`` and relational operators use)."""
    if isinstance(x, bool):
        return int(x)
    if isinstance(x, (int, float)):
        return x
    if x is None:
        return 0
    if isinstance(x, str):
        return _str_to_number(x)
    if isinstance(x, (list, tuple)):
        return _str_to_number(js_str(x))
    return _NAN


def truthy(x: object) -> bool:
    """JS truthiness: ``""``, ``0``, ``NaN``, ``null``, ``false`` are falsy; arrays/objects are truthy."""
    if x is None:
        return False
    if isinstance(x, (bool, str)):
        return bool(x)
    if isinstance(x, (int, float)):
        return x == x and x != 0
    return True


def strict_eq(a: object, b: object) -> bool:
    """JS ``a === b``: same type and value; arrays/objects only equal themselves (never, here)."""
    if isinstance(a, str):
        return isinstance(b, str) and a == b
    if a is None:
        return b is None
    if isinstance(a, bool):
        return isinstance(b, bool) and a == b
    if isinstance(a, (int, float)):
        return is_number(b) and a == b
    return a is b


def _utf16_order(a: str, b: str) -> int:
    """Compare strings by UTF-16 code units, as JS does (differs from code points only above U+FFFF)."""
    if not (a.isascii() and b.isascii()):
        ea, eb = a.encode("utf-16-be", "surrogatepass"), b.encode("utf-16-be", "surrogatepass")
        return (ea > eb) - (ea < eb)
    return (a > b) - (a < b)


def compare(a: object, b: object) -> int | None:
    """JS abstract relational comparison: -1/0/1, or ``None`` when undefined (a NaN was involved).

    Two strings compare as strings; anything else compares as numbers (``null`` -> 0, ``"8"`` -> 8,
    ``"abc"`` -> NaN).
    """
    ta, tb = type(a), type(b)
    if (ta is int or ta is float) and (tb is int or tb is float):
        return (a > b) - (a < b)  # type: ignore[operator]
    if ta is str and tb is str:
        return _utf16_order(a, b)  # type: ignore[arg-type]
    # ToPrimitive: arrays become their joined string, objects "[object Object]".
    pa = js_str(a) if isinstance(a, (list, tuple, dict)) else a
    pb = js_str(b) if isinstance(b, (list, tuple, dict)) else b
    if isinstance(pa, str) and isinstance(pb, str):
        return _utf16_order(pa, pb)
    na, nb = to_number(pa), to_number(pb)
    if na != na or nb != nb:
        return None
    return (na > nb) - (na < nb)


def json_key(x: object) -> str:
    """``JSON.stringify(x)`` as JS would write it, used for deep equality of literal arrays/objects."""
    if isinstance(x, str):
        return json.dumps(x, ensure_ascii=False)
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, (int, float)):
        s = num_str(x)
        return "null" if s in ("NaN", "Infinity", "-Infinity") else s
    if isinstance(x, (list, tuple)):
        return "[" + ",".join(json_key(v) for v in x) + "]"
    if isinstance(x, dict):
        # JS property order: array-index keys ascending first, then the rest in insertion order.
        keys = [str(k) for k in x]
        index_keys = sorted((k for k in keys if _is_index_key(k)), key=int)
        other_keys = [k for k in keys if not _is_index_key(k)]
        items = {str(k): v for k, v in x.items()}
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + json_key(items[k]) for k in index_keys + other_keys) + "}"
    return json.dumps(str(x), ensure_ascii=False)


def _is_index_key(k: str) -> bool:
    """Whether ``k`` is a canonical JS array index (``"0"``, ``"12"``, not ``"01"``)."""
    return k.isascii() and k.isdigit() and (k == "0" or k[0] != "0") and int(k) < 2**32 - 1


def js_type(x: object) -> str:
    """GrowthBook's ``getType``: null, array, string, number, boolean, object (else unknown)."""
    if x is None:
        return "null"
    if isinstance(x, (list, tuple)):
        return "array"
    if isinstance(x, str):
        return "string"
    if isinstance(x, bool):
        return "boolean"
    if isinstance(x, (int, float)):
        return "number"
    if isinstance(x, dict):
        return "object"
    return "unknown"


# --------------------------------------------------------------------------------------------------
# Paths and versions
# --------------------------------------------------------------------------------------------------


def get_path(obj: object, path: str) -> object:
    """Value at a dot path; ``None`` (JS ``null``) when any step is missing.

    As in JS, ``"a.0"`` indexes into an array and ``"a.length"`` is an array's length.
    """
    if "." not in path and type(obj) is dict:
        return obj.get(path)
    current = obj
    for part in path.split("."):
        if isinstance(current, dict):
            if part not in current:
                return None
            current = current[part]
        elif isinstance(current, (list, tuple)):
            if part == "length":
                current = len(current)
            elif _is_index_key(part) and int(part) < len(current):
                current = current[int(part)]
            else:
                return None
        else:
            return None
    return current


_JS_LINE_TERMINATORS = "\n\r\u2028\u2029"
_VERSION_SPLIT = re.compile(r"[-.]")
_ALL_DIGITS = re.compile(r"[0-9]+")


@lru_cache(maxsize=4096)
def _padded_version_str(v: str) -> str:
    """Version string made comparable as a plain string (GrowthBook ``paddedVersionString``).

    Numeric parts are left-padded to 5 so ``" 9" < "10"``; a release without a pre-release tag gets a
    trailing ``~`` (the largest ASCII character) so ``1.0.0 > 1.0.0-beta``. Cached: condition-side
    versions repeat on every request.
    """
    parts = _VERSION_SPLIT.split(_strip_version(v))
    if len(parts) == 3:
        parts.append("~")
    return "-".join(p.rjust(5, " ") if _ALL_DIGITS.fullmatch(p) else p for p in parts)


def _strip_version(v: str) -> str:
    """JS ``v.replace(/(^v|\\+.*$)/g, "")``: drop a leading ``v`` and a ``+build`` suffix, in linear time.

    The regex, run by a backtracking engine, is quadratic on visitor input such as ``"+" * n + "\\n"``.
    JS ``.`` stops at line terminators, so the suffix starts at the first ``+`` after the last one.
    """
    start = 1 if v.startswith("v") else 0
    last_break = max(v.rfind(c) for c in _JS_LINE_TERMINATORS)
    plus = v.find("+", max(start, last_break + 1))
    return v[start:] if plus == -1 else v[start:plus]


def padded_version(v: object) -> str:
    """``paddedVersionString`` for any value: numbers are stringified, anything else falsy is ``"0"``."""
    if is_number(v):
        v = num_str(v)  # type: ignore[arg-type]
    if not v or not isinstance(v, str):
        v = "0"
    return _padded_version_str(v)

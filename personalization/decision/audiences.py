"""Audience conditions in GrowthBook's MongoDB-style syntax (SDK spec 0.8.0).

Why GrowthBook's syntax and semantics: an audience written once must mean the same thing everywhere.
Evaluating conditions exactly as GrowthBook's SDKs do makes audiences portable (a condition copied
from or to GrowthBook targets the same visitors), and GrowthBook's public cross-SDK test cases
(``tests/personalization/decision/test_audiences.py``, 248 ``evalCondition`` cases) pin the behaviour down.
The reference is the JavaScript SDK (``packages/sdk-js/src/mongrule.ts``), where the spec and its
cases come from; where the Python SDK differs from JS (numeric comparison of strings, comparisons on a
missing attribute) Vary follows JS and the cases. That means JavaScript's coercions are reproduced on
purpose: a missing attribute is ``null`` (``null < 10`` is true, as ``Number(null)`` is 0), ``"8"``
compares numerically against ``5``, and a plain string condition matches ``String(value)``.

Syntax, in brief::

    condition   := {key: clause, ...}                     all keys must pass
    key         := "$or" | "$nor" | "$and"  -> [condition, ...]
                 | "$not"                   -> condition
                 | attribute path ("a.b.c") -> value clause
    value clause := literal                 string/number/bool/null: loose equality;
                                            array/object: deep (JSON) equality
                 | {"$op": arg, ...}        all operators must pass

    operators:  $eq $ne $lt $lte $gt $gte          JS strict (in)equality / relational comparison
                $veq $vne $vlt $vlte $vgt $vgte    semantic versions ("v1.2.3-rc.1+build")
                $in $nin $ini $nini                membership (array attribute: any element)
                $all $alli $elemMatch $size        array tests
                $inGroup $notInGroup               membership in a saved group (list of ids)
                $regex $regexi                     regular-expression search
                $exists $type $not

Error model (why evaluation never raises): conditions run on every request, so a mistake in an
audience must cost at most that audience, never the request.

* Unknown operator, ``$in`` without a list, a regex that does not compile -> that clause is False.
* Structurally malformed conditions (``$or`` not a list, a sub-condition that is not an object) ->
  False ("fail closed": an audience nobody can read targets nobody). JavaScript would throw or pass
  vacuously here; no conformance case depends on it.
* Reporting is separate: :func:`validate_condition` lists every such problem with a JSON-path-ish
  location for marketers, and :func:`check_condition` raises :class:`ConditionError` with them, for
  the write path (compiling audiences), never for the per-request path.

Regexes use Python's :mod:`re` with two translations so common JS patterns behave alike: ``$`` means
end of input (JS without the ``m`` flag; Python's ``$`` would also match before a final newline), and
``(?<name>…)``/``\\k<name>`` named groups become Python's spelling. Compiled patterns are cached.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

__all__ = [
    "ConditionError",
    "eval_condition",
    "explain_condition",
    "validate_condition",
    "check_condition",
]

SavedGroups = Mapping[str, Any]

# --------------------------------------------------------------------------------------------------
# JavaScript value semantics (ToString, ToNumber, truthiness, ===, <, JSON.stringify)
# --------------------------------------------------------------------------------------------------

_NAN = float("nan")
# JS StrWhiteSpaceChar: WhiteSpace + LineTerminator (Python's str.strip() set differs slightly).
_JS_WS = " \t\n\v\f\r\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_JS_DECIMAL = re.compile(r"[+-]?(?:Infinity|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)")
_JS_RADIX = re.compile(r"0([xXoObB])([0-9a-fA-F]+)")
_RADIX = {"x": 16, "o": 8, "b": 2}


def _is_number(x: object) -> bool:
    """A JS number: int or float but not bool (Python's bool is an int subclass)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _num_str(x: float | int) -> str:
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
        return "-" + _num_str(-x)
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


def _js_str(x: object) -> str:
    """JS ``String(x)`` for JSON-shaped values (arrays join with commas, objects are opaque)."""
    if isinstance(x, str):
        return x
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, (int, float)):
        return _num_str(x)
    if isinstance(x, (list, tuple)):
        return ",".join("" if v is None else _js_str(v) for v in x)
    if isinstance(x, dict):
        return "[object Object]"
    return str(x)


def _str_to_number(s: str) -> float | int:
    """JS ``Number(string)``: trimmed decimal/hex/octal/binary literal, ``""`` -> 0, else NaN."""
    s = s.strip(_JS_WS)
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


def _to_number(x: object) -> float | int:
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
        return _str_to_number(_js_str(x))
    return _NAN


def _truthy(x: object) -> bool:
    """JS truthiness: ``""``, ``0``, ``NaN``, ``null``, ``false`` are falsy; arrays/objects are truthy."""
    if x is None:
        return False
    if isinstance(x, (bool, str)):
        return bool(x)
    if isinstance(x, (int, float)):
        return x == x and x != 0
    return True


def _strict_eq(a: object, b: object) -> bool:
    """JS ``a === b``: same type and value; arrays/objects only equal themselves (never, here)."""
    if isinstance(a, str):
        return isinstance(b, str) and a == b
    if a is None:
        return b is None
    if isinstance(a, bool):
        return isinstance(b, bool) and a == b
    if isinstance(a, (int, float)):
        return _is_number(b) and a == b
    return a is b


def _utf16_order(a: str, b: str) -> int:
    """Compare strings by UTF-16 code units, as JS does (differs from code points only above U+FFFF)."""
    if not (a.isascii() and b.isascii()):
        ea, eb = a.encode("utf-16-be", "surrogatepass"), b.encode("utf-16-be", "surrogatepass")
        return (ea > eb) - (ea < eb)
    return (a > b) - (a < b)


def _compare(a: object, b: object) -> int | None:
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
    pa = _js_str(a) if isinstance(a, (list, tuple, dict)) else a
    pb = _js_str(b) if isinstance(b, (list, tuple, dict)) else b
    if isinstance(pa, str) and isinstance(pb, str):
        return _utf16_order(pa, pb)
    na, nb = _to_number(pa), _to_number(pb)
    if na != na or nb != nb:
        return None
    return (na > nb) - (na < nb)


def _json_key(x: object) -> str:
    """``JSON.stringify(x)`` as JS would write it, used for deep equality of literal arrays/objects."""
    if isinstance(x, str):
        return json.dumps(x, ensure_ascii=False)
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, (int, float)):
        s = _num_str(x)
        return "null" if s in ("NaN", "Infinity", "-Infinity") else s
    if isinstance(x, (list, tuple)):
        return "[" + ",".join(_json_key(v) for v in x) + "]"
    if isinstance(x, dict):
        # JS property order: array-index keys ascending first, then the rest in insertion order.
        keys = [str(k) for k in x]
        index_keys = sorted((k for k in keys if _is_index_key(k)), key=int)
        other_keys = [k for k in keys if not _is_index_key(k)]
        items = {str(k): v for k, v in x.items()}
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + _json_key(items[k]) for k in index_keys + other_keys) + "}"
    return json.dumps(str(x), ensure_ascii=False)


def _is_index_key(k: str) -> bool:
    """Whether ``k`` is a canonical JS array index (``"0"``, ``"12"``, not ``"01"``)."""
    return k.isascii() and k.isdigit() and (k == "0" or k[0] != "0") and int(k) < 2**32 - 1


def _js_type(x: object) -> str:
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
# Paths, versions, regexes
# --------------------------------------------------------------------------------------------------


def _get_path(obj: object, path: str) -> object:
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


_VERSION_STRIP = re.compile(r"^v|\+.*\Z")
_VERSION_SPLIT = re.compile(r"[-.]")
_ALL_DIGITS = re.compile(r"[0-9]+")


@lru_cache(maxsize=4096)
def _padded_version_str(v: str) -> str:
    """Version string made comparable as a plain string (GrowthBook ``paddedVersionString``).

    Numeric parts are left-padded to 5 so ``" 9" < "10"``; a release without a pre-release tag gets a
    trailing ``~`` (the largest ASCII character) so ``1.0.0 > 1.0.0-beta``. Cached: condition-side
    versions repeat on every request.
    """
    parts = _VERSION_SPLIT.split(_VERSION_STRIP.sub("", v))
    if len(parts) == 3:
        parts.append("~")
    return "-".join(p.rjust(5, " ") if _ALL_DIGITS.fullmatch(p) else p for p in parts)


def _padded_version(v: object) -> str:
    """``paddedVersionString`` for any value: numbers are stringified, anything else falsy is ``"0"``."""
    if _is_number(v):
        v = _num_str(v)  # type: ignore[arg-type]
    if not v or not isinstance(v, str):
        v = "0"
    return _padded_version_str(v)


def _translate_js_regex(pattern: str) -> str:
    """Rewrite the JS-only bits of a pattern into Python ``re`` syntax.

    ``$`` outside a character class becomes ``\\Z`` (JS end of input), ``(?<name>`` becomes
    ``(?P<name>`` and ``\\k<name>`` becomes ``(?P=name)``. Everything else passes through.
    """
    if "$" not in pattern and "(?<" not in pattern and "\\k<" not in pattern:
        return pattern
    out: list[str] = []
    i, n, in_class = 0, len(pattern), False
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            if not in_class and pattern[i + 1] == "k" and i + 2 < n and pattern[i + 2] == "<":
                end = pattern.find(">", i + 3)
                if end != -1:
                    out.append(f"(?P={pattern[i + 3:end]})")
                    i = end + 1
                    continue
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            if c == "]":
                in_class = False
        elif c == "[":
            in_class = True
        elif c == "$":
            c = r"\Z"
        elif pattern.startswith("(?<", i) and i + 3 < n and pattern[i + 3] not in "=!":
            out.append("(?P<")
            i += 3
            continue
        out.append(c)
        i += 1
    return "".join(out)


@lru_cache(maxsize=1024)
def _regex(pattern: str, insensitive: bool) -> re.Pattern[str] | None:
    """Compiled pattern, or ``None`` if it does not compile (cached either way: bad patterns too)."""
    try:
        return re.compile(_translate_js_regex(pattern), re.IGNORECASE if insensitive else 0)
    except (re.error, RecursionError, OverflowError):
        return None


def _regex_error(pattern: str, insensitive: bool) -> str | None:
    """Why ``pattern`` does not compile, or ``None`` if it does."""
    try:
        re.compile(_translate_js_regex(pattern), re.IGNORECASE if insensitive else 0)
    except re.error as exc:
        return str(exc)
    except (RecursionError, OverflowError) as exc:  # pragma: no cover - pathological patterns
        return type(exc).__name__
    return None


# --------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------


def _is_operator_object(x: object) -> bool:
    """A non-empty mapping whose keys all start with ``$`` (else it is a literal to compare)."""
    if not isinstance(x, dict) or not x:
        return False
    for k in x:
        if not (isinstance(k, str) and k.startswith("$")):
            return False
    return True


def eval_condition(
    attributes: dict[str, Any], condition: dict[str, Any], saved_groups: SavedGroups | None = None
) -> bool:
    """Whether ``attributes`` satisfy ``condition`` (GrowthBook ``evalCondition``).

    ``saved_groups`` maps a group id to its member list for ``$inGroup``/``$notInGroup``. Never
    raises: anything malformed evaluates to False (see the module docstring). Attributes and
    conditions are JSON-shaped (``dict``/``list``/scalars), which is what keeps this fast enough to
    run per request: type checks are against ``dict``, not the ``Mapping`` ABC.
    """
    try:
        return _eval_condition(attributes, condition, saved_groups or {})
    except RecursionError:  # absurdly deep nesting: fail closed like any other malformed condition
        return False


def _eval_condition(obj: object, condition: object, groups: SavedGroups) -> bool:
    if not isinstance(condition, dict):
        return False
    for key, value in condition.items():
        if key == "$or":
            if not isinstance(value, list) or not _eval_or(obj, value, groups):
                return False
        elif key == "$nor":
            if not isinstance(value, list) or _eval_or(obj, value, groups):
                return False
        elif key == "$and":
            if not isinstance(value, list):
                return False
            for sub in value:
                if not _eval_condition(obj, sub, groups):
                    return False
        elif key == "$not":
            if not isinstance(value, dict) or _eval_condition(obj, value, groups):
                return False
        elif not _eval_value(value, _get_path(obj, key) if isinstance(key, str) else None, groups):
            return False
    return True


def _eval_or(obj: object, conditions: list[Any], groups: SavedGroups) -> bool:
    """``$or``: any sub-condition passes; an empty list passes (GrowthBook's rule)."""
    if not conditions:
        return True
    for sub in conditions:
        if _eval_condition(obj, sub, groups):
            return True
    return False


def _eval_value(condition: object, value: object, groups: SavedGroups, insensitive: bool = False) -> bool:
    """One attribute value against a literal or an operator object (GrowthBook ``evalConditionValue``)."""
    if isinstance(condition, dict):
        if len(condition) == 1:
            # Fast path, the common ``{"$op": arg}``: a known operator key is an operator object.
            for op, arg in condition.items():
                fn = _OPERATORS.get(op) if type(op) is str else None
                if fn is not None:
                    return fn(value, arg, groups)
        if not _is_operator_object(condition):
            return _json_key(value) == _json_key(condition)
        for op, arg in condition.items():
            fn = _OPERATORS.get(op)
            if fn is None or not fn(value, arg, groups):
                return False
        return True
    if isinstance(condition, str):
        if insensitive:
            return _js_str(value).lower() == condition.lower()
        return _js_str(value) == condition  # JS: value + "" === condition
    if isinstance(condition, bool):
        return value is not None and _truthy(value) == condition
    if isinstance(condition, (int, float)):
        return _to_number(value) == condition  # JS: value * 1 === condition
    if condition is None:
        return value is None
    return _json_key(value) == _json_key(condition)  # arrays (and any other literal): deep equality


def _is_in(actual: object, expected: list[Any], insensitive: bool = False) -> bool:
    """``$in``: ``actual`` (or, for an array, any of its elements) strictly equals an expected item."""
    if insensitive:
        expected = [e.lower() if isinstance(e, str) else e for e in expected]
        if isinstance(actual, (list, tuple)):
            actual = [a.lower() if isinstance(a, str) else a for a in actual]
        elif isinstance(actual, str):
            actual = actual.lower()
    if type(actual) is str:
        # JSON values: a string equals only a string, so ``===`` against each item is ``in``.
        return actual in expected
    if isinstance(actual, (list, tuple)):
        for a in actual:
            for e in expected:
                if _strict_eq(a, e):
                    return True
        return False
    for e in expected:
        if _strict_eq(actual, e):
            return True
    return False


def _is_in_all(actual: object, expected: list[Any], groups: SavedGroups, insensitive: bool) -> bool:
    """``$all``: every expected clause matches at least one element of the array attribute."""
    if not isinstance(actual, (list, tuple)):
        return False
    for clause in expected:
        if not any(_eval_value(clause, a, groups, insensitive) for a in actual):
            return False
    return True


def _group(groups: SavedGroups, group_id: object) -> list[Any]:
    """Members of a saved group; unknown ids (and non-list values) are an empty group."""
    members = groups.get(group_id if isinstance(group_id, str) else _js_str(group_id))
    return members if isinstance(members, list) else []


def _elem_match(actual: object, expected: object, groups: SavedGroups) -> bool:
    """``$elemMatch``: some truthy element matches (an operator object or a nested condition)."""
    if not isinstance(actual, (list, tuple)):
        return False
    if _is_operator_object(expected):
        return any(_truthy(a) and _eval_value(expected, a, groups) for a in actual)
    return any(_truthy(a) and _eval_condition(a, expected, groups) for a in actual)


def _op_regex(insensitive: bool) -> Callable[[object, object, SavedGroups], bool]:
    def op(actual: object, pattern: object, _g: SavedGroups) -> bool:
        if not isinstance(pattern, str):
            return False
        compiled = _regex(pattern, insensitive)
        return compiled is not None and compiled.search(_js_str(actual)) is not None

    return op


def _op_compare(test: Callable[[int], bool]) -> Callable[[object, object, SavedGroups], bool]:
    def op(actual: object, expected: object, _g: SavedGroups) -> bool:
        c = _compare(actual, expected)
        return c is not None and test(c)

    return op


def _op_version(test: Callable[[str, str], bool]) -> Callable[[object, object, SavedGroups], bool]:
    def op(actual: object, expected: object, _g: SavedGroups) -> bool:
        return test(_padded_version(actual), _padded_version(expected))

    return op


_OPERATORS: dict[str, Callable[[object, Any, SavedGroups], bool]] = {
    "$eq": lambda a, e, g: _strict_eq(a, e),
    "$ne": lambda a, e, g: not _strict_eq(a, e),
    "$lt": _op_compare(lambda c: c < 0),
    "$lte": _op_compare(lambda c: c <= 0),
    "$gt": _op_compare(lambda c: c > 0),
    "$gte": _op_compare(lambda c: c >= 0),
    "$veq": _op_version(lambda a, e: a == e),
    "$vne": _op_version(lambda a, e: a != e),
    "$vlt": _op_version(lambda a, e: a < e),
    "$vlte": _op_version(lambda a, e: a <= e),
    "$vgt": _op_version(lambda a, e: a > e),
    "$vgte": _op_version(lambda a, e: a >= e),
    "$exists": lambda a, e, g: (a is not None) if _truthy(e) else (a is None),
    "$in": lambda a, e, g: isinstance(e, list) and _is_in(a, e),
    "$nin": lambda a, e, g: isinstance(e, list) and not _is_in(a, e),
    "$ini": lambda a, e, g: isinstance(e, list) and _is_in(a, e, True),
    "$nini": lambda a, e, g: isinstance(e, list) and not _is_in(a, e, True),
    "$inGroup": lambda a, e, g: _is_in(a, _group(g, e)),
    "$notInGroup": lambda a, e, g: not _is_in(a, _group(g, e)),
    "$not": lambda a, e, g: not _eval_value(e, a, g),
    "$size": lambda a, e, g: isinstance(a, (list, tuple)) and _eval_value(e, len(a), g),
    "$elemMatch": _elem_match,
    "$all": lambda a, e, g: isinstance(e, list) and _is_in_all(a, e, g, False),
    "$alli": lambda a, e, g: isinstance(e, list) and _is_in_all(a, e, g, True),
    "$regex": _op_regex(False),
    "$regexi": _op_regex(True),
    "$type": lambda a, e, g: _js_type(a) == e,
}

# --------------------------------------------------------------------------------------------------
# Explanation (decision reasons marketers read)
# --------------------------------------------------------------------------------------------------

_EXPLAIN_MAX = 200
_SYMBOLS = {
    "$eq": "=", "$ne": "≠", "$lt": "<", "$lte": "≤", "$gt": ">", "$gte": "≥",
    "$veq": "=", "$vne": "≠", "$vlt": "<", "$vlte": "≤", "$vgt": ">", "$vgte": "≥",
    "$in": "in", "$nin": "not in", "$ini": "in", "$nini": "not in",
    "$inGroup": "in group", "$notInGroup": "not in group",
    "$regex": "matches", "$regexi": "matches",
    "$all": "has all of", "$alli": "has all of",
}  # fmt: skip


def _fmt(x: object) -> str:
    """A value as a marketer reads it: floats to 2 decimals, strings bare, short lists."""
    if x is None:
        return "(not set)"
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, float):
        if not math.isfinite(x):
            return _num_str(x)
        s = f"{x:.2f}".rstrip("0").rstrip(".")
        return "0" if s == "-0" else s
    if isinstance(x, int):
        return str(x)
    if isinstance(x, str):
        return x if len(x) <= 40 else x[:39] + "…"
    if isinstance(x, (list, tuple)):
        key = tuple(x) if len(x) <= 16 else None
        if key is not None:
            try:
                cached = _FMT_SEQ.get(key)
            except TypeError:  # unhashable items (nested lists or objects): format every time
                key = cached = None
            if cached is not None:
                return cached
        shown = ", ".join(_fmt(v) for v in x[:6])
        text = f"[{shown}{', …' if len(x) > 6 else ''}]"
        # Lists of strings (countries, channels, plans) repeat on every request: keep their text.
        # Only all-string keys are stored, and a string never equals a non-string, so a lookup
        # can only ever hit a list that formats identically.
        if key is not None and len(_FMT_SEQ) < 4096 and all(type(v) is str for v in key):
            _FMT_SEQ[key] = text
        return text
    if isinstance(x, dict):
        return "{…}"
    return str(x)


_FMT_SEQ: dict[tuple[object, ...], str] = {}


def _explain_clause(subject: str, actual: object, clause: object, show_actual: bool = True) -> str:
    """``subject actual op expected`` for each operator of one value clause.

    ``show_actual=False`` describes only the shape (used inside ``$elemMatch``, where there is no
    single actual value to show).
    """
    shown = f" {_fmt(actual)}" if show_actual else ""
    if not _is_operator_object(clause):
        return f"{subject}{shown} = {_fmt(clause)}"
    parts: list[str] = []
    for op, arg in clause.items():  # type: ignore[union-attr]
        if op == "$exists":
            parts.append(f"{subject} {'exists' if _truthy(arg) else 'does not exist'}")
        elif op == "$not":
            parts.append(f"not ({_explain_clause(subject, actual, arg, show_actual)})")
        elif op == "$size":
            size = len(actual) if isinstance(actual, (list, tuple)) else None
            parts.append(_explain_clause(f"{subject} size", size, arg, show_actual))
        elif op == "$type":
            parts.append(f"{subject} type{f' {_js_type(actual)}' if show_actual else ''} = {_fmt(arg)}")
        elif op == "$elemMatch":
            if _is_operator_object(arg):
                inner = _explain_clause("item", None, arg, show_actual=False)
            else:
                inner = _explain({}, arg, show_actual=False) if isinstance(arg, dict) else "?"
            parts.append(f"{subject} has an item where ({inner})")
        elif op in _SYMBOLS:
            parts.append(f"{subject}{shown} {_SYMBOLS[op]} {_fmt(arg)}")
        else:
            parts.append(f"{subject} {op} {_fmt(arg)} (unknown operator)")
    return ", ".join(parts)


def _explain(attributes: dict[str, Any], condition: dict[str, Any], show_actual: bool = True) -> str:
    parts: list[str] = []
    for key, value in condition.items():
        if key in ("$or", "$and", "$nor") and isinstance(value, list):
            label = {"$or": "any of", "$and": "all of", "$nor": "none of"}[key]
            inner = "; ".join(_explain(attributes, sub, show_actual) if isinstance(sub, dict) else "?" for sub in value)
            parts.append(f"{label} ({inner})")
        elif key == "$not" and isinstance(value, dict):
            parts.append(f"not ({_explain(attributes, value, show_actual)})")
        else:
            parts.append(_explain_clause(str(key), _get_path(attributes, str(key)), value, show_actual))
    return ", ".join(parts)


def explain_condition(attributes: dict[str, Any], condition: dict[str, Any]) -> str:
    """A short phrase of what ``condition`` compared, for a marketer-readable decision reason.

    E.g. ``segments.price_sensitive 0.81 ≥ 0.6, country US in [CA, US]``. It describes the
    comparisons (with the visitor's actual values), not whether they passed: pair it with
    :func:`eval_condition`. At most 200 characters, truncated with ``…``.
    """
    if not isinstance(condition, dict):
        return "(invalid condition)"
    try:
        text = _explain(attributes, condition) or "everyone"
    except RecursionError:
        text = "(condition nested too deeply)"
    return text if len(text) <= _EXPLAIN_MAX else text[: _EXPLAIN_MAX - 1] + "…"


# --------------------------------------------------------------------------------------------------
# Validation (reporting mis-modelled audiences)
# --------------------------------------------------------------------------------------------------


class ConditionError(ValueError):
    """A condition that would silently never (or always) match; ``problems`` says where and why."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid audience condition: " + "; ".join(problems))


_LIST_OPS = frozenset({"$in", "$nin", "$ini", "$nini", "$all", "$alli"})
_COMPARE_OPS = frozenset({"$eq", "$ne", "$lt", "$lte", "$gt", "$gte"})
_VERSION_OPS = frozenset({"$veq", "$vne", "$vlt", "$vlte", "$vgt", "$vgte"})
_TYPES = ("string", "number", "boolean", "array", "object", "null")
_LOGICAL = ("$or", "$nor", "$and", "$not")


def _describe(x: object) -> str:
    return _js_type(x) if x is not None else "null"


def validate_condition(condition: object, *, saved_groups: SavedGroups | None = None) -> list[str]:
    """Problems that make ``condition`` mean something other than intended; empty if it is fine.

    Each problem reads ``<location>: <what is wrong>``, the location JSON-path-ish from ``$``
    (``$.country.$in: expected a list, got string``), so marketers can find the clause. Evaluation
    tolerates all of these (they evaluate to False); this is what tells someone about them. Pass
    ``saved_groups`` to also check that ``$inGroup``/``$notInGroup`` ids exist.
    """
    problems: list[str] = []
    try:
        _validate_condition(condition, "$", problems, saved_groups)
    except RecursionError:
        problems.append("$: nested too deeply to evaluate")
    return problems


def check_condition(condition: object, *, saved_groups: SavedGroups | None = None) -> dict[str, Any]:
    """``condition`` itself if :func:`validate_condition` finds nothing; else raise :class:`ConditionError`."""
    problems = validate_condition(condition, saved_groups=saved_groups)
    if problems:
        raise ConditionError(problems)
    return condition  # type: ignore[return-value]


def _validate_condition(cond: object, loc: str, problems: list[str], groups: SavedGroups | None) -> None:
    if not isinstance(cond, dict):
        problems.append(f"{loc}: expected an object of attribute conditions, got {_describe(cond)}")
        return
    for key, value in cond.items():
        if not isinstance(key, str):
            problems.append(f"{loc}: keys must be strings, got {_describe(key)}")
            continue
        here = f"{loc}.{key}"
        if key in ("$or", "$nor", "$and"):
            if not isinstance(value, list):
                problems.append(f"{here}: expected a list of conditions, got {_describe(value)}")
                continue
            for i, sub in enumerate(value):
                _validate_condition(sub, f"{here}[{i}]", problems, groups)
        elif key == "$not":
            _validate_condition(value, here, problems, groups)
        elif key in _OPERATORS or _did_you_mean(key, _LOGICAL):
            # "$groups" is a legitimate (GrowthBook) attribute name; "$in" or "$orr" here is a slip.
            hint = _did_you_mean(key, _LOGICAL)
            what = f"{key} is a value operator; put it under an attribute, e.g. {{\"country\": {{\"{key}\": ...}}}}" if key in _OPERATORS else f"unknown logical operator {key}{hint}"
            problems.append(f"{here}: {what}")
        elif not key or "" in key.split("."):
            problems.append(f"{here}: empty attribute path segment")
        else:
            _validate_value(value, here, problems, groups)


def _validate_value(clause: object, loc: str, problems: list[str], groups: SavedGroups | None) -> None:
    if not isinstance(clause, dict):
        return  # a literal: loose (primitive) or deep (array) equality
    if not clause:
        problems.append(f"{loc}: empty object only matches an attribute that is exactly {{}}")
        return
    dollar = [k for k in clause if isinstance(k, str) and k.startswith("$")]
    if not dollar:
        return  # a literal object compared for deep equality
    if len(dollar) != len(clause):
        plain = ", ".join(str(k) for k in clause if k not in dollar)
        problems.append(f"{loc}: mixes operators with plain keys ({plain}); it is compared as a literal object, operators are ignored")
        return
    for op, arg in clause.items():
        _validate_operator(op, arg, f"{loc}.{op}", problems, groups)


def _validate_operator(op: str, arg: object, loc: str, problems: list[str], groups: SavedGroups | None) -> None:
    if op not in _OPERATORS:
        problems.append(f"{loc}: unknown operator {op}{_did_you_mean(op, tuple(_OPERATORS))}")
    elif op in _LIST_OPS:
        if not isinstance(arg, list):
            problems.append(f"{loc}: expected a list, got {_describe(arg)}")
        elif op in ("$all", "$alli"):
            for i, item in enumerate(arg):
                _validate_value(item, f"{loc}[{i}]", problems, groups)
    elif op in ("$regex", "$regexi"):
        if not isinstance(arg, str):
            problems.append(f"{loc}: expected a regular expression string, got {_describe(arg)}")
        else:
            err = _regex_error(arg, op == "$regexi")
            if err is not None:
                problems.append(f"{loc}: regular expression does not compile: {err}")
    elif op in _COMPARE_OPS:
        if isinstance(arg, (list, tuple, dict)):
            problems.append(f"{loc}: expected a string, number, boolean or null, got {_describe(arg)} (never matches)")
    elif op in _VERSION_OPS:
        if not (isinstance(arg, str) or _is_number(arg)):
            problems.append(f"{loc}: expected a version string such as \"1.2.3\", got {_describe(arg)}")
    elif op == "$exists":
        if not isinstance(arg, bool):
            problems.append(f"{loc}: expected true or false, got {_describe(arg)}")
    elif op == "$type":
        if arg not in _TYPES:
            problems.append(f"{loc}: expected one of {', '.join(_TYPES)}, got {_fmt(arg)}")
    elif op == "$size":
        if not (_is_number(arg) or _is_operator_object(arg)):
            problems.append(f"{loc}: expected a number or an operator object such as {{\"$gt\": 2}}, got {_describe(arg)}")
        elif isinstance(arg, dict):
            _validate_value(arg, loc, problems, groups)
    elif op == "$elemMatch":
        if not isinstance(arg, dict) or not arg:
            problems.append(f"{loc}: expected a non-empty object, got {_describe(arg)}")
        elif _is_operator_object(arg):
            _validate_value(arg, loc, problems, groups)
        else:
            _validate_condition(arg, loc, problems, groups)
    elif op == "$not":
        if isinstance(arg, dict):
            _validate_value(arg, loc, problems, groups)
    elif op in ("$inGroup", "$notInGroup"):
        if not isinstance(arg, str):
            problems.append(f"{loc}: expected a saved group id (string), got {_describe(arg)}")
        elif groups is not None and arg not in groups:
            problems.append(f"{loc}: unknown saved group {arg!r}")


def _did_you_mean(word: str, choices: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""

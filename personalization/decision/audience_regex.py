"""Audience regexes (``$regex``, ``$regexi``): JavaScript ``RegExp`` syntax, run in linear time by RE2.

Why RE2: the patterns come from content, the text they run on comes from visitors (pages, referrers,
traits). Python's backtracking :mod:`re` took 3.3 s for ``^(a+)+$`` against a 27-character page,
blocking the event loop (and ``/health``) for everyone. RE2 (the ``google-re2`` binding) matches in
time linear in the input, whatever the pattern; it cannot run backreferences or lookaround, which
is the price of that guarantee.

Why reject instead of approximating: an audience must mean the same thing wherever it is decided —
here, in GrowthBook, and in a browser's ``new RegExp(pattern)`` / ``new RegExp(pattern, "i")``
(GrowthBook's ``mongrule.ts``; the JS SDK decides from the same bundle). So a pattern is accepted
only when RE2 can run it *and* RE2 decides every input the way the browser does, as far as the
pattern shows. :func:`regex_error` says why not, and the content compiler turns that into a content
issue naming the entry (the experience is switched off); evaluation treats such a pattern as one
that does not compile: the clause is False, never an error, never a slow match.

* Rejected: backreferences (``\\1``, ``\\k<name>``), lookahead and lookbehind, any other ``(?``
  group (inline flags, ``(?P<…>``: not JavaScript), a quantifier on an assertion (``^*``: a
  browser throws, RE2 matches), escapes a browser reads as a plain letter but RE2 does not
  (``\\a \\z \\A \\p \\Q …``), legacy octal escapes, ``\\S`` inside a class, UTF-16 surrogate
  escapes, characters beyond U+FFFF in a class or under a quantifier (a browser sees two UTF-16
  units there), and whatever RE2 itself refuses (``a{1001}``, over-long patterns).
* Translated to RE2's spelling of the browser's meaning: ``.`` (not ``\\n \\r \\u2028 \\u2029``),
  ``\\s``/``\\S`` (JavaScript's Unicode whitespace set), ``\\uHHHH``, ``\\cX``, ``\\0``, ``[\\b]``,
  ``[`` inside a class (a browser has no POSIX ``[:alpha:]``), ``[]`` (matches nothing), ``[^]``
  (any character), and ``(?<name>…)`` (a plain group: names do not change whether it matches).
  ``^``/``$`` already mean start/end of input in RE2, ``\\d \\w \\b`` are ASCII in both.
* Not decidable from the pattern, so they remain: case-insensitive matching of the few characters
  whose Unicode case folding differs from JavaScript's ``toUpperCase`` (KELVIN SIGN, LONG S), and
  text with characters beyond U+FFFF (emoji) under ``.`` or a negated class, which a browser counts
  as two UTF-16 units.

Bounds: a pattern has at most :data:`MAX_PATTERN_CHARS` characters and compiles to at most
:data:`MAX_PROGRAM_SIZE` RE2 instructions; text longer than :data:`MAX_INPUT_CHARS` (2,048, the
bound on URLs) never matches — the clause is False, as for a pattern that does not compile.
Compiled patterns are cached (bad ones too).
"""

from __future__ import annotations

import json
from functools import lru_cache

import re2

from personalization.decision.audience_values import JS_WHITESPACE

__all__ = ["MAX_INPUT_CHARS", "MAX_PATTERN_CHARS", "MAX_PROGRAM_SIZE", "regex_error", "regex_search"]

#: Text longer than this never matches a ``$regex`` clause (the bound on :data:`~personalization.types.Url`).
MAX_INPUT_CHARS = 2048
#: Longer patterns are rejected.
MAX_PATTERN_CHARS = 1024
#: Patterns that compile to more RE2 instructions are rejected (counted repetitions such as
#: ``(?:.?){999}`` multiply them): with the input bound this keeps one clause to milliseconds, about
#: 0.05 s at worst when RE2's DFA gives up and it simulates the NFA (0.2 s at 22,000 instructions).
MAX_PROGRAM_SIZE = 4000
#: RE2's memory budget per compiled pattern (program and DFA cache); RE2's default is 8 MiB.
_MAX_MEM = 512 * 1024

_QUANTIFIERS = "*+?{"
_ASSERTIONS = frozenset({"^", "$", "\\b", "\\B"})
_WS_CLASS = "".join(f"\\x{{{ord(c):04x}}}" for c in JS_WHITESPACE)
_ANY = "\\x00-\\x{10ffff}"
_NOT_LINE_TERMINATOR = "[^\\n\\r\\x{2028}\\x{2029}]"
_NAME_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_$")
_NAME_REST = _NAME_START | frozenset("0123456789")
_HEX = frozenset("0123456789abcdefABCDEF")
_ASCII_LETTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


class _Unsupported(Exception):
    """A pattern RE2 cannot run, or would decide differently from a browser; the message says which.

    ``parse_error`` marks RE2's own syntax errors ("does not compile") apart from the refusals above
    ("cannot be used").
    """

    def __init__(self, message: str, *, parse_error: bool = False) -> None:
        super().__init__(message)
        self.parse_error = parse_error


def regex_search(pattern: str, insensitive: bool, text: str) -> bool:
    """Whether ``pattern`` (a JS regex, ``i`` flag if ``insensitive``) finds a match in ``text``.

    False when the pattern is rejected (see :func:`regex_error`) or ``text`` is longer than
    :data:`MAX_INPUT_CHARS`. Linear in ``len(text)``; never raises.
    """
    compiled = _compiled(pattern, insensitive)
    if compiled is None or len(text) > MAX_INPUT_CHARS:
        return False
    # UTF-8 bytes: the binding then skips mapping byte offsets back to characters (4x faster).
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:  # lone UTF-16 surrogates: replace them, as RE2 matches valid UTF-8
        data = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode("utf-8")
    return compiled.search(data) is not None


def regex_error(pattern: str, insensitive: bool) -> str | None:
    """Why ``pattern`` cannot be used as an audience regex, or ``None`` if it can.

    The reason reads after "regular expression": ``does not compile: missing ): "(a"`` for a syntax
    error, ``"(a)\\1" cannot be used: \\1 is a backreference …`` for a pattern refused above.
    """
    try:
        _compile(pattern, insensitive)
    except _Unsupported as exc:
        shown = pattern if len(pattern) <= 80 else pattern[:77] + "..."
        quoted = json.dumps(shown.encode("utf-8", "backslashreplace").decode("utf-8"), ensure_ascii=False)
        if exc.parse_error:
            return f"does not compile: {exc} (in {quoted})"
        return f"{quoted} cannot be used: {exc}"
    return None


@lru_cache(maxsize=1024)
def _compiled(pattern: str, insensitive: bool) -> re2._Regexp | None:
    try:
        return _compile(pattern, insensitive)
    except _Unsupported:
        return None


def _compile(pattern: str, insensitive: bool) -> re2._Regexp:
    if len(pattern) > MAX_PATTERN_CHARS:
        raise _Unsupported(f"longer than {MAX_PATTERN_CHARS} characters ({len(pattern)})")
    options = re2.Options()
    options.log_errors = False  # a rejected pattern is reported as a content issue, not to stderr
    options.case_sensitive = not insensitive
    options.max_mem = _MAX_MEM
    options.never_capture = True  # only whether it matches counts
    try:
        compiled = re2.compile(_translate(pattern), options)
    except UnicodeEncodeError:
        raise _Unsupported("contains half of a UTF-16 pair: write the whole character") from None
    except re2.error as exc:
        detail = exc.args[0] if exc.args else exc
        text = detail.decode("utf-8", "replace") if isinstance(detail, bytes) else str(detail)
        raise _Unsupported(text, parse_error=True) from None
    if compiled.programsize > MAX_PROGRAM_SIZE:
        raise _Unsupported(f"too complex: {compiled.programsize} RE2 instructions, at most {MAX_PROGRAM_SIZE} "
                           "(fewer or smaller counted repetitions such as {0,30})")
    return compiled


def _translate(pattern: str) -> str:
    """RE2 syntax for a JavaScript pattern with the same meaning; raises ``_Unsupported`` if there is none."""
    out: list[str] = []
    names: set[str] = set()
    i, n = 0, len(pattern)
    last = ""  # the previous atom, to refuse quantified assertions
    while i < n:
        c = pattern[i]
        if c in _QUANTIFIERS and last in _ASSERTIONS and (c != "{" or _is_braced_quantifier(pattern, i)):
            raise _Unsupported(f"quantifier {c!r} after the assertion {last!r} (a browser refuses it)")
        if c == "\\":
            text, i = _escape(pattern, i, in_class=False)
            last = text if text in ("\\b", "\\B") else "atom"
            out.append(text)
            continue
        if c == "[":
            text, i = _char_class(pattern, i)
        elif c == "(":
            text, i = _group_open(pattern, i, names)
        elif c == ".":
            text, i = _NOT_LINE_TERMINATOR, i + 1
        else:
            if ord(c) > 0xFFFF and i + 1 < n and pattern[i + 1] in _QUANTIFIERS:
                raise _Unsupported(f"quantifier after {c!r}, a character a browser sees as two UTF-16 units")
            text, i = c, i + 1
        last = c if c in "^$" else "atom"
        out.append(text)
    return "".join(out)


def _is_braced_quantifier(pattern: str, i: int) -> bool:
    """``{n}``, ``{n,}`` or ``{n,m}`` at ``i`` (else a browser reads ``{`` as a literal)."""
    end = pattern.find("}", i)
    if end == -1:
        return False
    low, _, high = pattern[i + 1 : end].partition(",")
    return low.isdigit() and (high == "" or high.isdigit())


def _char_class(pattern: str, i: int) -> tuple[str, int]:
    """Translate the class starting at ``pattern[i] == "["``; return it and the index after ``]``."""
    if pattern.startswith("[]", i):
        return f"[^{_ANY}]", i + 2  # JS: the empty class matches nothing (RE2 would read "]" as a member)
    if pattern.startswith("[^]", i):
        return f"[{_ANY}]", i + 3  # JS: any character, line terminators included
    out = ["["]
    i += 1
    if i < len(pattern) and pattern[i] == "^":
        out.append("^")
        i += 1
    while i < len(pattern):
        c = pattern[i]
        if c == "]":
            out.append("]")
            return "".join(out), i + 1
        if c == "\\":
            text, i = _escape(pattern, i, in_class=True)
            out.append(text)
            continue
        if ord(c) > 0xFFFF:
            raise _Unsupported(f"{c!r} in a character class: a browser sees it as two UTF-16 units")
        out.append("\\[" if c == "[" else c)  # no POSIX [:alpha:] classes in a browser
        i += 1
    raise _Unsupported("missing ] to close a character class", parse_error=True)


def _group_open(pattern: str, i: int, names: set[str]) -> tuple[str, int]:
    """Translate a ``(`` at ``i``: plain, non-capturing or named groups pass; the rest is refused."""
    if not pattern.startswith("(?", i):
        return "(", i + 1
    head = pattern[i : i + 4]
    if head.startswith("(?:"):
        return "(?:", i + 3
    if head.startswith(("(?=", "(?!")):
        raise _Unsupported(f"lookahead {head[:3]}…) needs backtracking, which RE2 does not do")
    if head.startswith(("(?<=", "(?<!")):
        raise _Unsupported(f"lookbehind {head}…) needs backtracking, which RE2 does not do")
    if head.startswith("(?<"):
        end = pattern.find(">", i + 3)
        name = pattern[i + 3 : end] if end != -1 else ""
        if not name or name[0] not in _NAME_START or any(ch not in _NAME_REST for ch in name):
            raise _Unsupported(f"group name {name!r} is not a JavaScript identifier (ASCII letters, digits, _ and $)")
        if name in names:
            raise _Unsupported(f"group name {name!r} is used twice")
        names.add(name)
        return "(", end + 1
    raise _Unsupported(f"{pattern[i:i + 3]!r} is not JavaScript regular-expression syntax (inline flags and "
                       "(?P…) groups are Python/Perl only)")


def _escape(pattern: str, i: int, *, in_class: bool) -> tuple[str, int]:
    """Translate the escape at ``pattern[i] == "\\\\"``; return RE2 text and the index after it."""
    if i + 1 >= len(pattern):
        raise _Unsupported("ends with a lone backslash", parse_error=True)
    c = pattern[i + 1]
    after = i + 2
    if c in "dDwWfnrtv":
        return "\\" + c, after
    if c == "s":
        return (_WS_CLASS if in_class else f"[{_WS_CLASS}]"), after
    if c == "S":
        if in_class:
            raise _Unsupported("\\S inside a character class: write the class without it, e.g. (?:[…]|\\S)")
        return f"[^{_WS_CLASS}]", after
    if c in "bB":
        if in_class:
            return ("\\x08" if c == "b" else "B"), after  # JS: [\b] is backspace, [\B] the letter B
        return "\\" + c, after
    if c == "0" and not (after < len(pattern) and pattern[after].isdigit()):
        return "\\x00", after
    if c.isdigit():
        raise _Unsupported(f"\\{c} is a backreference (or a legacy octal escape): it needs backtracking, "
                           "which RE2 does not do")
    if c == "k":
        raise _Unsupported("\\k<name> is a named backreference: it needs backtracking, which RE2 does not do")
    if c == "x":
        digits = pattern[after : after + 2]
        if len(digits) == 2 and all(h in _HEX for h in digits):
            return f"\\x{{{digits}}}", after + 2
        raise _Unsupported("\\x needs two hex digits (a browser would read a plain x)")
    if c == "u":
        digits = pattern[after : after + 4]
        if len(digits) == 4 and all(h in _HEX for h in digits):
            if 0xD800 <= int(digits, 16) <= 0xDFFF:
                raise _Unsupported(f"\\u{digits} is half of a UTF-16 pair: write the character itself")
            return f"\\x{{{digits}}}", after + 4
        raise _Unsupported("\\u needs four hex digits (a browser would read a plain u)")
    if c == "c":
        letter = pattern[after : after + 1]
        if letter and letter in _ASCII_LETTERS:
            return f"\\x{{{ord(letter) % 32:02x}}}", after + 1
        raise _Unsupported("\\c needs a letter A-Z")
    if c in _ASCII_LETTERS:
        raise _Unsupported(f"\\{c}: a browser reads it as the letter {c}, RE2 as something else or not at all; "
                           f"write {c} (or the JavaScript escape you meant)")
    if ord(c) > 0xFFFF:
        raise _Unsupported(f"escaped {c!r}: a browser sees it as two UTF-16 units")
    if ord(c) < 0x80:
        return "\\" + c, after  # escaped punctuation (and space, _): the character itself, in both
    return c, after  # JS identity escape of a non-ASCII character

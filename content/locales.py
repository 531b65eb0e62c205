"""Which of a space's locales serves a requested language tag (BCP 47), decided once per tag.

Front ends send what the browser or OS says (``de-AT``, ``zh-CN``, ``en_US``, ``pt``); a space has a
handful of Contentful locale codes (``de-DE``, ``zh-Hant-TW``). The rules, in order:

1. **Same tag**, compared case-insensitively with ``_`` read as ``-`` (``en_us`` is ``en-US``).
2. **Lookup** (RFC 4647 §3.4): drop subtags from the end until a space locale matches
   (``zh-Hant-HK`` → ``zh-Hant``; ``de-CH-1996`` → ``de-CH`` → ``de``).
3. **Same language and script**: the space's locale of that language, the default locale first, then
   in the space's order (``de-AT`` → ``de-DE``) — but never across scripts: a tag's script is its
   4-letter subtag or, where a language is written in several, the script its region implies
   (``zh-CN`` is Simplified, ``zh-TW`` Traditional; ``sr-RS`` Cyrillic, ``sr-ME`` Latin), so ``zh-CN`` is
   not served ``zh-Hant-TW``.
4. Else the default locale. Each served locale's own ``fallbackCode`` chain then fills missing fields
   (:func:`content.resolve.fallback_chain`).
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["LocaleMatcher", "normalize", "script_of"]

#: Region → script for languages written in more than one (CLDR likely subtags); the ``None`` key is
#: the script of the bare language.
_SCRIPTS: dict[str, dict[str | None, str]] = {
    "zh": {None: "hans", "cn": "hans", "sg": "hans", "my": "hans", "tw": "hant", "hk": "hant", "mo": "hant"},
    "sr": {None: "cyrl", "rs": "cyrl", "ba": "cyrl", "xk": "cyrl", "me": "latn"},
    "uz": {None: "latn", "uz": "latn", "af": "arab"},
    "az": {None: "latn", "az": "latn", "ir": "arab"},
    "pa": {None: "guru", "in": "guru", "pk": "arab"},
    "bs": {None: "latn", "ba": "latn"},
    "mn": {None: "cyrl", "mn": "cyrl", "cn": "mong"},
}
#: How many distinct requested tags are remembered (tags come from public requests: bounded).
_CACHE_SIZE = 1024


def normalize(tag: str) -> str:
    """Lower case, ``_`` read as ``-``, surrounding blanks dropped."""
    return tag.strip().replace("_", "-").lower()


def script_of(tag: str) -> str | None:
    """The script a normalized tag is written in, when known: its own 4-letter subtag, else the
    one its language and region imply; ``None`` for single-script languages."""
    parts = tag.split("-")
    for part in parts[1:]:
        if len(part) == 4 and part.isalpha():
            return part
    scripts = _SCRIPTS.get(parts[0])
    if scripts is None:
        return None
    region = next(
        (p for p in parts[1:] if (len(p) == 2 and p.isalpha()) or (len(p) == 3 and p.isdigit())), None
    )
    return scripts.get(region, scripts[None])


class LocaleMatcher:
    """Matches requested tags to a space's locale codes (rules in the module docstring)."""

    __slots__ = ("_by_tag", "_cache", "_default", "_order")

    def __init__(self, codes: Iterable[str], default: str) -> None:
        codes = list(codes)
        self._default = default
        self._by_tag = {normalize(code): code for code in codes}
        self._order = [default, *(code for code in codes if code != default)]
        self._cache: dict[str, str] = {}

    def match(self, requested: str | None) -> str:
        """The space locale that serves ``requested``; the default locale for none or no match."""
        if not requested:
            return self._default
        served = self._cache.get(requested)
        if served is None:
            served = self._match(normalize(requested))
            if len(self._cache) < _CACHE_SIZE:
                self._cache[requested] = served
        return served

    def _match(self, wanted: str) -> str:
        parts = wanted.split("-")
        for end in range(len(parts), 0, -1):
            code = self._by_tag.get("-".join(parts[:end]))
            if code is not None:
                return code
        script = script_of(wanted)
        for code in self._order:
            tag = normalize(code)
            if tag.split("-", 1)[0] != parts[0]:
                continue
            theirs = script_of(tag)
            if script is None or theirs is None or theirs == script:
                return code
        return self._default

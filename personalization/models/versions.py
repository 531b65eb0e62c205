"""Model versions: one safe shape, checked wherever a version enters Vary.

A version names a file on disk (``<version>.skops``), a Redis key (``vary:models:card:<version>``),
a line in a log and a cell on a dashboard page, and it arrives from outside: a card in an upload, the
body of an activate or roll-back request, a URL path, the command line. So it is held to a shape none
of those can misread — letters, digits, ``.``, ``_`` and ``-``, beginning with a letter or digit, at
most 128 characters — which every version Vary generates fits (``seg-20261203181732-6a2ff76f``,
``pol-…``). ``../../etc/passwd``, ``.hidden``, a space, a slash or a trailing newline do not.

A version is also immutable once registered: the registry refuses a second upload under the same
version (:class:`~personalization.errors.ModelVersionExists`) instead of replacing its card.
"""

from __future__ import annotations

import re

from personalization.errors import InvalidInput, Problem

__all__ = ["MAX_VERSION_LENGTH", "VERSION_PATTERN", "check_version", "is_version"]

MAX_VERSION_LENGTH = 128
#: Matched with ``fullmatch``: ``$`` would let a trailing newline through.
VERSION_PATTERN = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_VERSION_LENGTH - 1}}}")

_RULE = (
    "use letters, digits, '.', '_' and '-', beginning with a letter or digit, "
    f"at most {MAX_VERSION_LENGTH} characters"
)


def is_version(text: object) -> bool:
    """Whether ``text`` has the shape of a model version."""
    return isinstance(text, str) and VERSION_PATTERN.fullmatch(text) is not None


def check_version(version: object, field: str = "version") -> str:
    """``version`` if it has the shape of a model version; otherwise an :class:`InvalidInput`
    (a 400) whose problem names ``field`` — where the version came from (``card.version``)."""
    if is_version(version):
        assert isinstance(version, str)
        return version
    shown = repr(version) if len(repr(version)) <= 80 else repr(version)[:77] + "..."
    message = f"{shown} is not a model version: {_RULE}"
    raise InvalidInput(f"{field}: {message}", problems=[Problem(field, message)])

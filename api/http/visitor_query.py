"""The visitor context of ``GET /v1/entries/{id}`` from query parameters: the same visitor as
``POST /v1/personalize``'s body, so a GET decision is the same decision.

Plain fields are parameters of their own (``visitor_id``, ``channel``, ``page``, ``referrer``, …,
declared on the route). The two maps are spelled with dots:

* ``utm.<name>=<text>`` → ``visitor.utm[<name>]`` (text as given);
* ``traits.<name>=<value>`` → ``visitor.traits[<name>]``; ``traits.<name>.<key>=<value>`` → one level
  of nested object. A value is read as JSON when it is a JSON number, ``true``/``false``/``null``,
  a quoted string or a list (``traits.tags=["a","b"]``), and as text otherwise (``traits.plan=pro``);
  a repeated parameter is a list (``traits.tags=a&traits.tags=b``). Quote text that looks like JSON
  to keep it text (``traits.zip="01234"``).

Anything wrong is a 400 naming the parameter (:class:`~personalization.errors.InvalidInput`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from personalization.errors import InvalidInput, Problem
from personalization.types import TraitValue, Visitor

__all__ = ["visitor_maps"]

_JSON_START = frozenset('-0123456789"[tfn')
_TRAIT = msgspec.json.Decoder(TraitValue)


def _value(raw: str) -> object:
    """A query value: JSON when it reads as JSON, else the text itself."""
    if raw and raw[0] in _JSON_START:
        try:
            return msgspec.json.decode(raw)
        except msgspec.DecodeError:
            pass
    return raw


def _problem(parameter: str, message: str) -> InvalidInput:
    return InvalidInput(f"query parameter {parameter}: {message}", problems=[Problem(parameter, message)])


def visitor_maps(params: Iterable[tuple[str, str]]) -> tuple[dict[str, str], dict[str, Any]]:
    """``utm`` and ``traits`` from the ``utm.*``/``traits.*`` query parameters (others are ignored),
    each value checked as the POST body's would be; raises :class:`InvalidInput` naming the parameter."""
    utm: dict[str, str] = {}
    grouped: dict[str, list[str]] = {}
    for name, raw in params:
        if name == "utm" or name == "traits":
            raise _problem(name, f"name the field: {name}.<name>=<value>")
        if name.startswith("utm."):
            key = name[4:]
            if not key or "." in key:
                raise _problem(name, "expected utm.<name>")
            if key in utm:
                raise _problem(name, "given twice")
            if len(key) > 64 or len(raw) > 256:
                raise _problem(name, "a UTM name has at most 64 characters and its value at most 256")
            utm[key] = raw
        elif name.startswith("traits."):
            grouped.setdefault(name, []).append(raw)
    traits: dict[str, Any] = {}
    plain: set[str] = set()  # traits given as a value (traits.<name>), not as an object
    for name, raws in grouped.items():
        path = name[len("traits."):].split(".")
        if not all(path) or len(path) > 2:
            raise _problem(name, "expected traits.<name> or traits.<name>.<key> (one level of nesting)")
        values = [_value(raw) for raw in raws]
        value: object = values[0] if len(values) == 1 else values
        if len(path) == 1:
            plain.add(path[0])
            if path[0] in traits:
                raise _problem(name, "the trait is also given as an object (traits.<name>.<key>)")
            traits[path[0]] = value
        else:
            outer = traits.setdefault(path[0], {})
            if not isinstance(outer, dict) or path[0] in plain:
                # named by the trait, whichever of the two forms came first in the query
                raise _problem(f"traits.{path[0]}", "the trait is also given as a value (traits.<name>)")
            outer[path[1]] = value
    for name, value in traits.items():
        try:
            traits[name] = _TRAIT.decode(msgspec.json.encode(value))
        except msgspec.ValidationError as exc:
            raise _problem(f"traits.{name}", str(exc).partition(" - at ")[0]) from exc
    try:  # the maps' own bounds (lengths, counts) exactly as the POST body's
        msgspec.convert({"id": "-", "utm": utm, "traits": traits}, Visitor)
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).partition(" - at `$.")
        field = where.rstrip("`").split("[")[0] or "visitor"
        raise _problem(f"{field}.*", message) from exc
    return utm, traits

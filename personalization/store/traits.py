"""Traits that persist: what ``identify`` events and personalize requests say about a visitor, kept.

A front end identifies a visitor once (``{"type": "identify", "traits": {"plan": "pro"}}``); later
decisions match trait audiences without the front end sending the traits again. Traits live in one
hash per visitor, ``vary:vh:{<visitor tag>}:tr`` (:func:`~personalization.store.keys.traits_key`):
trait name → its JSON value. It is read with the profile (a third hash in the same round trip,
so a decision still costs one round trip) and erased with the rest of the visitor (same hash tag).

Rules:

* **Latest wins**, trait by trait; a JSON ``null`` clears a trait.
* **Bounded**: at most :data:`MAX_TRAITS` traits and :data:`MAX_TRAIT_BYTES` bytes (Σ UTF-8 length
  of name + JSON value) per visitor. A merge that would pass a bound is refused as a whole with a
  4xx naming the first trait that passes it (:func:`check_merge`); the Lua merge
  (``scripts/traits_merge.lua``) re-checks atomically, so a race or a replayed event cannot pass it
  either (there the merge is skipped, the event still counted).
* **Consent**: stored only for events and requests with analytics consent (events without it are
  dropped before this; personalize requests store nothing without both consents).

Request traits override stored ones for that call (:func:`effective_traits`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import msgspec
from redis.asyncio import Redis

from personalization.errors import InvalidInput, Problem
from personalization.store.keys import traits_key
from personalization.types import TraitValue

__all__ = [
    "MAX_TRAITS",
    "MAX_TRAIT_BYTES",
    "REMEMBER_LUA",
    "TRAITS_LUA",
    "TraitsOverBound",
    "check_merge",
    "effective_traits",
    "encode_traits",
    "load_traits",
    "merged_changes",
    "parse_traits",
]

MAX_TRAITS = 100
MAX_TRAIT_BYTES = 8192

_SCRIPTS = Path(__file__).parent / "scripts"
#: ``vary_traits(...)``: the merge, prepended to the scripts that call it.
TRAITS_LUA = (_SCRIPTS / "traits_merge.lua").read_text()
REMEMBER_LUA = TRAITS_LUA + (_SCRIPTS / "traits_remember.lua").read_text()

_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(TraitValue)


class TraitsOverBound(InvalidInput):
    """Storing these traits would pass a visitor's bound; ``trait`` is the first one that does."""

    def __init__(self, trait: str, message: str, where: str = "traits") -> None:
        super().__init__(f"{where}.{trait}: {message}", problems=[Problem(f"{where}.{trait}", message)])
        self.trait = trait
        self.detail = message


def _encoded(value: TraitValue) -> bytes:
    return _ENCODER.encode(value)


def _size(name: str, encoded: bytes) -> int:
    return len(name.encode("utf-8", "surrogatepass")) + len(encoded)


def _total_size(traits: Mapping[str, TraitValue]) -> int:
    """Σ :func:`_size` over ``traits``, with one encode and one UTF-8 pass instead of one of each
    per trait (issue 22: 0.98 → 0.77 µs per ``check_merge`` of three traits). A compact JSON list is
    ``[`` + its items' own encodings joined by ``,`` + ``]``, and UTF-8 (``surrogatepass`` too)
    encodes code point by code point, so both sums are exact."""
    if not traits:
        return 0
    values = len(_ENCODER.encode(list(traits.values()))) - len(traits) - 1  # brackets and commas
    return values + len("".join(traits).encode("utf-8", "surrogatepass"))


def encode_traits(traits: Mapping[str, TraitValue]) -> list[str | bytes]:
    """Flat ``name, JSON value`` arguments for the Lua merge."""
    flat: list[str | bytes] = []
    for name, value in traits.items():
        flat += [name, _encoded(value)]
    return flat


def parse_traits(raw: Mapping[bytes | str, bytes | str] | None) -> dict[str, TraitValue]:
    """The traits hash as values; a field that does not decode (written by a newer version) is skipped."""
    if not raw:
        return {}
    traits: dict[str, TraitValue] = {}
    for key, value in raw.items():
        name = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
        try:
            traits[name] = _DECODER.decode(value)
        except msgspec.DecodeError:
            continue
    return traits


def check_merge(
    stored: Mapping[str, TraitValue], incoming: Mapping[str, TraitValue], where: str = "traits"
) -> dict[str, TraitValue]:
    """The traits after merging ``incoming`` over ``stored`` (latest wins, ``None`` clears); raises
    :class:`TraitsOverBound` naming the first incoming trait at which a bound is passed."""
    merged = dict(stored)
    for name, value in incoming.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    if len(merged) > MAX_TRAITS:
        extra = [name for name in incoming if name not in stored and incoming[name] is not None]
        trait = extra[max(0, MAX_TRAITS - (len(merged) - len(extra)))] if extra else next(iter(incoming))
        raise TraitsOverBound(trait, f"a visitor keeps at most {MAX_TRAITS} traits ({len(merged)} with this one)", where)
    total = _total_size(merged)
    if total > MAX_TRAIT_BYTES:
        kept = {name: value for name, value in merged.items() if name not in incoming}
        running = sum(_size(name, _encoded(value)) for name, value in kept.items())
        for name, value in incoming.items():
            if value is None:
                continue
            running += _size(name, _encoded(value))
            if running > MAX_TRAIT_BYTES:
                raise TraitsOverBound(
                    name, f"a visitor's traits may take at most {MAX_TRAIT_BYTES} bytes ({total} with these)", where
                )
    return merged


def merged_changes(stored: Mapping[str, TraitValue], incoming: Mapping[str, TraitValue]) -> dict[str, TraitValue]:
    """The incoming traits that would change what is stored (nothing to write when empty).

    Nothing stored yet (a new visitor, most personalize requests): every trait but a ``None`` (a
    clear of nothing) changes it, with no encode to compare (issue 22: 0.37 → 0.30 µs)."""
    if not stored:
        return {name: value for name, value in incoming.items() if value is not None}
    return {
        name: value
        for name, value in incoming.items()
        if (name in stored) != (value is not None) or (value is not None and _encoded(stored[name]) != _encoded(value))
    }


def effective_traits(stored: Mapping[str, TraitValue], request: Mapping[str, TraitValue]) -> dict[str, TraitValue]:
    """What a decision sees: the stored traits with the request's laid over them (for this call)."""
    if not stored:
        return dict(request)
    return {**stored, **request}


async def load_traits(redis: Redis, visitor_ids: Iterable[str]) -> dict[str, dict[str, TraitValue]]:
    """The stored traits of each visitor, in one pipelined round trip (the recorder's bound check)."""
    ids = list(dict.fromkeys(visitor_ids))
    if not ids:
        return {}
    pipe = redis.pipeline(transaction=False)
    for visitor_id in ids:
        pipe.hgetall(traits_key(visitor_id))
    replies = await pipe.execute()
    return {visitor_id: parse_traits(raw) for visitor_id, raw in zip(ids, replies, strict=True)}

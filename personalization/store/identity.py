"""One person across ids: linking anonymous visitor ids to a known customer (``user_id``), with proof.

Customers switch devices and channels mid-journey; a person is what Vary measures and personalizes
for. An ``identify`` event may carry a ``user_id``; Vary then **links** the event's visitor id to
that user's *person* (Segment's alias/identify semantics: many ids → one person).

**Proof.** The delivery key is public, so anyone could claim a victim's ``user_id`` and read the
merged profile through the decisions it drives. A link therefore needs an identity token the
customer's backend signed with ``VARY_IDENTITY_SECRET`` (:func:`sign_identity`,
:func:`verify_identity`: ``<expires>.<hex HMAC-SHA256(secret, "vary-identity-v1\\n<expires>\\n<user_id>")>``,
as Intercom's identity verification), or the admin key (back-office calls). docs/decisions.md has
the format and Python and Node snippets.

**The person id** is random (``vp-`` + 128 bits), created on the first link of a ``user_id`` and kept
in ``vary:person:{<digest of the user id>}`` (:func:`~personalization.store.keys.person_index_key`).
Everything of the person lives under its person id like a visitor's (``vary:vh:{<tag of the person
id>}:…``), so exposures, events, aggregation, history and erasure work for it unchanged. It is never a
function of the ``user_id``: no public caller can send it as a ``visitor_id`` to reach a person
without the proof (it reaches only the person's own devices, in their exposure tokens).

**Layout.** The linked id's profile hash holds ``person`` → the person id (read with the profile:
no extra command on the decision path); the person's ``…:ids`` hash lists its linked ids (≤
:data:`MAX_IDS`: ``0`` reserved, ``1`` merged); its profile holds ``user`` → the user id, and the
merge ranks ``as:<experience>`` / ``tt:<trait>``.

**Linking** (:func:`link`, four small round trips, each in one cluster slot, on a rare path):
the person of the user id (``SET NX GET``); a place among its ids (``identity_reserve.lua``: refused
when full); the pointer set and the id's snapshot taken atomically (``identity_alias.lua``); the
snapshot merged into the person once (``identity_merge.lua``, skipped when the id is marked merged).

**Merge rules** (each a commutative, idempotent operation, so linking A then B equals B then A and a
repeated link changes nothing): counters add (visits, page views, conversions, per goal); first seen
is the minimum, last seen the maximum; channels are a union; frequency-cap counters add within the
same day/week; a sticky assignment is the one of the id **seen first** (lowest ``first_seen``, then
the id), so the person keeps the variant they saw first; an assignment the person was served after
a link is kept; a trait is the one of the id **seen last** (highest ``last_seen``; traits the person
got directly rank by the person's last seen), at most 100 traits. The page/event history stays per
id: a decision sees the person's, then the current id's for pages the person's lacks.

**After a link** the person id is the visitor: decisions on a linked id bucket by the person id
(their first-seen assignments were copied, so nothing flips that was stored; an experience none of
the ids was assigned to, the global holdout and layers hash the person id, so a device's arm there
may change once, at the link), exposures are logged and events recorded under it
(:func:`resolve` maps ids at ingestion). Counts before the link are not re-attributed.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import msgspec
from redis.asyncio import Redis

from personalization.store.keys import (
    person_ids_key,
    person_index_key,
    profile_key,
    traits_key,
    visitor_key_prefix,
)
from personalization.store.traits import MAX_TRAITS
from personalization.types import Profile

__all__ = [
    "MAX_IDS",
    "PERSON_FIELD",
    "IdentityRefused",
    "Link",
    "LinkedProfile",
    "link",
    "linked_ids",
    "linked_profile",
    "person_field",
    "person_of_user",
    "resolve",
    "sign_identity",
    "verify_identity",
]

#: Most ids one person links (a public caller with one valid token cannot grow a person without bound).
MAX_IDS = 50
#: The profile-hash field of a linked id that names its person.
PERSON_FIELD = "person"
#: The profile-hash field of a person that names its user id.
USER_FIELD = "user"
_TOKEN_CONTEXT = "vary-identity-v1"
_SCRIPTS = Path(__file__).parent / "scripts"
_RESERVE = (_SCRIPTS / "identity_reserve.lua").read_text()
_ALIAS = (_SCRIPTS / "identity_alias.lua").read_text()
_MERGE = (_SCRIPTS / "identity_state.lua").read_text() + (_SCRIPTS / "identity_merge.lua").read_text()
#: Most lifetime-total fields a merge leaves in a person's ``…:t``, and the conversions one ``n:<goal>``
#: holds (outcome.lua's ``max_x_conversions``).
_MAX_TOTALS = 100
_MAX_CONVERSIONS = 100
_ENCODER = msgspec.json.Encoder()


class IdentityRefused(ValueError):
    """A ``user_id`` that may not be linked: ``field`` names what is wrong (a 4xx, never a 500)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.detail = message


class Link(msgspec.Struct, frozen=True, kw_only=True):
    """What a link did: the person id, and whether the id's data was merged now."""

    person_id: str
    merged: bool
    #: ``new`` first link, ``same`` linked to this person before, ``moved`` linked to another before.
    status: str


class LinkedProfile(Profile, frozen=True, kw_only=True):
    """A linked id's profile: its person's merged one, and the person id the decision buckets by."""

    person: str | None = None


def linked_profile(profile: Profile, person: str) -> LinkedProfile:
    """``profile`` as the profile of ``person``."""
    return LinkedProfile(**msgspec.structs.asdict(profile), person=person)


def _mac(secret: str, user_id: str, expires: int) -> str:
    message = f"{_TOKEN_CONTEXT}\n{expires}\n{user_id}".encode("utf-8", "surrogatepass")
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign_identity(secret: str, user_id: str, expires: int) -> str:
    """The identity token the customer's backend gives its front ends: ``<expires>.<hex mac>``."""
    return f"{expires}.{_mac(secret, user_id, expires)}"


def verify_identity(secret: str | None, user_id: str, token: str | None, now: float) -> None:
    """Raises :class:`IdentityRefused` unless ``token`` proves ``user_id`` (signed, not expired)."""
    if secret is None:
        raise IdentityRefused(
            "user_id", "linking a user_id needs the admin key or an identity token, and VARY_IDENTITY_SECRET is not set"
        )
    if not token:
        raise IdentityRefused("identity_token", "a user_id needs an identity token signed with VARY_IDENTITY_SECRET")
    expires_text, dot, mac = token.partition(".")
    if not dot or not expires_text.isdigit() or len(expires_text) > 12:
        raise IdentityRefused("identity_token", "expected <expires epoch seconds>.<hex HMAC-SHA256>")
    if not hmac.compare_digest(mac.encode(), _mac(secret, user_id, int(expires_text)).encode()):
        raise IdentityRefused("identity_token", "the signature does not match this user_id")
    if int(expires_text) < now:
        raise IdentityRefused("identity_token", "the token has expired")


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _pairs(flat: list[bytes | str]) -> dict[str, str]:
    return {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat) - 1, 2)}


async def person_of_user(redis: Redis, user_id: str, *, create: bool) -> str | None:
    """The person id of ``user_id`` (created when ``create`` and there is none yet)."""
    key = person_index_key(user_id)
    if not create:
        found = await redis.get(key)
        return None if found is None else _text(found)
    fresh = f"vp-{os.urandom(16).hex()}"
    held = await redis.set(key, fresh, nx=True, get=True)
    return fresh if held is None else _text(held)


async def link(redis: Redis, visitor_id: str, user_id: str, *, ttl_s: int, max_ids: int = MAX_IDS) -> Link:
    """Link ``visitor_id`` to the person of ``user_id`` and merge what it holds into the person
    (see the module docstring; the caller has checked the proof). Raises :class:`IdentityRefused`
    when the person already links ``max_ids`` other ids."""
    person = await person_of_user(redis, user_id, create=True)
    assert person is not None
    if visitor_id == person:
        return Link(person_id=person, merged=False, status="same")
    ids = person_ids_key(person)
    if not int(await redis.eval(_RESERVE, 1, ids, visitor_id, max_ids, ttl_s)):
        raise IdentityRefused("user_id", f"this person already links {max_ids} ids, the most one person may")
    status, profile, traits, exposed, flags, totals, journey, left = await redis.eval(
        _ALIAS, 6, profile_key(visitor_id), traits_key(visitor_id), *_state_keys(visitor_id), person, ttl_s
    )
    snapshot = _ENCODER.encode({
        "p": _pairs(profile), "tr": _pairs(traits), "x": _pairs(exposed), "xf": _pairs(flags), "t": _pairs(totals),
        "cx": [None if v is None else _text(v) for v in journey] or [None] * 5, "left": [int(n) for n in left] or [0] * 4,
    })
    merged = await redis.eval(
        _MERGE, 7, profile_key(person), traits_key(person), ids, *_state_keys(person),
        visitor_id, user_id, ttl_s, MAX_TRAITS, snapshot, _MAX_TOTALS, _MAX_CONVERSIONS,
    )
    return Link(person_id=person, merged=bool(int(merged)), status=_text(status))


def _state_keys(visitor_id: str) -> list[str]:
    """The aggregation state of one id: ``…:x``, ``…:xf``, ``…:t``, ``…:cx`` (layout in
    :mod:`personalization.store.keys`)."""
    prefix = visitor_key_prefix(visitor_id)
    return [prefix + "x", prefix + "xf", prefix + "t", prefix + "cx"]


async def resolve(redis: Redis, ids: Iterable[str]) -> dict[str, str]:
    """The person of each linked id among ``ids`` (unlinked ids are left out): one pipelined round
    trip of ``HGET <profile> person``."""
    unique = list(dict.fromkeys(ids))
    if not unique:
        return {}
    pipe = redis.pipeline(transaction=False)
    for visitor_id in unique:
        pipe.hget(profile_key(visitor_id), PERSON_FIELD)
    replies = await pipe.execute()
    return {visitor_id: _text(found) for visitor_id, found in zip(unique, replies, strict=True) if found}


async def linked_ids(redis: Redis, person_id: str) -> tuple[list[str], str | None]:
    """The ids linked to a person, and its user id (one pipelined round trip)."""
    pipe = redis.pipeline(transaction=False)
    pipe.hkeys(person_ids_key(person_id))
    pipe.hget(profile_key(person_id), USER_FIELD)
    ids, user = await pipe.execute()
    return sorted(_text(i) for i in ids), None if user is None else _text(user)


def person_field(raw: Mapping[bytes | str, bytes | str]) -> str | None:
    """The person id a profile hash points at (``None``: not linked)."""
    found = raw.get(PERSON_FIELD.encode()) if raw and isinstance(next(iter(raw)), bytes) else raw.get(PERSON_FIELD)
    return None if found is None else _text(found)

"""Record format versions of what Vary stores in Redis streams, so old and new workers coexist.

During a rolling upgrade, workers of two versions write to and read from the same streams. The
contract that keeps each from misreading the other:

* **Readers are tolerant.** Stored records are msgspec Structs decoded by field name: unknown fields
  are ignored (no ``forbid_unknown_fields`` on a stored record) and an absent field takes its
  default. A change that only adds a field with a default, or leaves a default-valued field out,
  keeps the format compatible both ways.
* **Each stream entry says its format.** Beside its ``data`` field (the record as JSON), an entry
  written by this version carries ``v`` (:data:`FORMAT_FIELD`): the record format. An entry without
  it is format 1 (everything written before formats had numbers). Readers that only need the
  compatible subset ignore it (older readers take ``data`` alone); a future change that alters the
  meaning of an existing field must bump the format, and readers branch on :func:`record_format`.
* **Lua scripts are addressed by their SHA-1.** A script's text (with a version line in its header)
  is its identity: a worker ``EVALSHA``-s the script it ships and loads it on ``NOSCRIPT``, so two
  versions of one script live side by side in Redis's script cache and a worker never runs the
  other version's script.

Formats of the exposure stream (``vary:exposures``, :class:`~personalization.types.Exposure`):

====== =====================================================================================
format what changed
====== =====================================================================================
1      every field written (``"country":null``, ``"phase":1``, ``"shadow_version":null`` …)
2      default-valued fields left out (``omit_defaults``; ~130 bytes less per exposure); ``v`` set
====== =====================================================================================

The event stream (``vary:events``) has one format (no ``v``). Its records are the API's event
Structs, which are strict on input (``forbid_unknown_fields``: a client's misspelt field is refused);
readers of *stored* events use :data:`personalization.measurement.stored_events.STORED_EVENT_DECODER`
instead, which ignores fields a newer version added and skips (raising ``UnknownEventKind``) kinds
this version does not know, so the tolerance above holds for events too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["EXPOSURE_FORMAT", "FORMAT_FIELD", "record_format"]

#: The stream-entry field holding the record format (absent: format 1).
FORMAT_FIELD = "v"
#: The exposure record format this version writes (``scripts/write_batch.lua`` writes the same number).
EXPOSURE_FORMAT = 2


def record_format(fields: Mapping[Any, Any]) -> int:
    """The record format of one stream entry's fields (bytes or str keys): ``v``, or 1 without it."""
    value = fields.get(FORMAT_FIELD.encode(), fields.get(FORMAT_FIELD))
    if value is None:
        return 1
    return int(value.decode() if isinstance(value, bytes) else value)

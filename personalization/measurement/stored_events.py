"""Reading events back from the event stream: tolerant of what a newer Vary wrote.

Why not :data:`~personalization.measurement.events.EVENT_DECODER`: that decoder is the API's input
validation and is strict on purpose (``forbid_unknown_fields``: a typo in a client's field name is a
400, not silently dropped data). A record in ``vary:events`` was already validated, by the version of
Vary that wrote it. While a deployment rolls, an *older* aggregator, sink or export reads records a
*newer* API wrote; with the strict decoder a conversion carrying a field added in the new version
did not decode and was dead-lettered as poison, and a new event kind was logged as an error.

What the stored-record reader does instead (:data:`STORED_EVENT_DECODER`):

* a record this version reads as is decodes exactly as before (the strict decoder runs first, so
  the common case costs nothing extra);
* a record with fields this version does not know decodes with those fields ignored (they are not
  kept: a sink or an export re-encoding it writes what this version knows);
* a record of a kind (``type``) this version does not know raises :class:`UnknownEventKind`, a
  :class:`msgspec.ValidationError`, so every reader that already skips undecodable records skips it,
  and the aggregator counts it apart (``Aggregator.unknown_kinds``) instead of calling it poison;
* anything else that fails (broken JSON, a value out of range) fails as before.
"""

from __future__ import annotations

from typing import Any, get_args

import msgspec

from personalization.measurement.events import EVENT_DECODER, Event, EventBase

__all__ = ["STORED_EVENT_DECODER", "StoredEventDecoder", "UnknownEventKind"]


class UnknownEventKind(msgspec.ValidationError):
    """A stored event of a kind this version does not know (written by a newer Vary)."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"Unknown event kind {kind!r} (written by a newer version?) - at `$.type`")
        self.kind = kind


#: Each event kind's tag → the field names its Struct has (``type`` included).
_FIELDS: dict[str, frozenset[str]] = {
    cls.__struct_config__.tag: frozenset((*cls.__struct_fields__, cls.__struct_config__.tag_field))
    for cls in get_args(Event)
    if issubclass(cls, EventBase)
}


class StoredEventDecoder:
    """``decode(bytes) -> Event`` for records read from the event stream (see the module doc)."""

    def decode(self, data: bytes | bytearray | memoryview | str) -> Event:
        try:
            return EVENT_DECODER.decode(data)
        except msgspec.ValidationError as strict:
            raw: Any = msgspec.json.decode(data)  # valid JSON: the strict decode got past the syntax
            if not isinstance(raw, dict):
                raise
            kind = raw.get("type")
            known = _FIELDS.get(kind) if isinstance(kind, str) else None
            if known is None:
                if isinstance(kind, str):
                    raise UnknownEventKind(kind) from strict
                raise
            kept = {name: value for name, value in raw.items() if name in known}
            if len(kept) == len(raw):  # no unknown field: the strict error stands
                raise
            return msgspec.convert(kept, Event)  # __post_init__'s checks raise ValidationError here too


#: The one decoder for stored events (stateless; shared).
STORED_EVENT_DECODER = StoredEventDecoder()

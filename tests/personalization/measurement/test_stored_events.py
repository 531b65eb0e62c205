"""The stored-event reader (personalization/measurement/stored_events.py): tolerant of what a newer
version adds, as strict as before about everything else."""

from __future__ import annotations

import msgspec
import pytest

from personalization.measurement.events import EVENT_DECODER, EVENT_ENCODER, Purchase, Survey
from personalization.measurement.stored_events import STORED_EVENT_DECODER, UnknownEventKind


def test_a_record_this_version_wrote_decodes_as_the_strict_decoder_does() -> None:
    event = Survey(visitor_id="v", metric="sus", answers=[5, 1, 5, 1, 5, 1, 5, 1, 5, 1], ts=1_700_000_000.0)
    data = EVENT_ENCODER.encode(event)
    assert STORED_EVENT_DECODER.decode(data) == EVENT_DECODER.decode(data) == event


def test_unknown_fields_are_dropped_but_known_ones_still_validated() -> None:
    kept = STORED_EVENT_DECODER.decode(
        b'{"type":"purchase","visitor_id":"v","order_id":"o","value":12.5,"currency":"EUR","tax":{"vat":2}}'
    )
    assert kept == Purchase(visitor_id="v", order_id="o", value=12.5, currency="EUR")
    with pytest.raises(msgspec.ValidationError, match="ISO 4217"):  # __post_init__ runs on the tolerant path
        STORED_EVENT_DECODER.decode(b'{"type":"purchase","visitor_id":"v","order_id":"o","value":1,'
                                    b'"currency":"ZZZ","tax":1}')
    with pytest.raises(msgspec.ValidationError, match=r"\$\.value"):  # a known field's bound still holds
        STORED_EVENT_DECODER.decode(b'{"type":"purchase","visitor_id":"v","order_id":"o","value":-1,"tax":1}')


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"{not json", msgspec.DecodeError),
        (b"[1, 2]", msgspec.ValidationError),
        (b'{"visitor_id":"v"}', msgspec.ValidationError),  # no type at all
        (b'{"type":7,"visitor_id":"v"}', msgspec.ValidationError),
        (b'{"type":"conversion","visitor_id":"v"}', msgspec.ValidationError),  # goal missing
    ],
)
def test_what_is_broken_stays_an_error(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error) as raised:
        STORED_EVENT_DECODER.decode(data)
    assert not isinstance(raised.value, UnknownEventKind)


def test_an_unknown_kind_is_named_and_is_a_validation_error() -> None:
    with pytest.raises(UnknownEventKind) as raised:
        STORED_EVENT_DECODER.decode(b'{"type":"video_play","visitor_id":"v","seconds":3}')
    assert raised.value.kind == "video_play"
    assert isinstance(raised.value, msgspec.ValidationError)  # readers that skip bad records skip it too

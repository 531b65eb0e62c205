"""Retries with backoff, against the real ``contentful`` client and a misbehaving fake CDA.

Where ``with_retries`` sleeps, the tests pass a fake ``sleep`` that records the delays; the one test
where the SDK itself waits (a 429 with ``X-Contentful-RateLimit-Reset: 1``) takes about a second.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

import pytest

from content import ContentAccessError, ContentFormatError, ContentSourceError
from content.retry import backoff_delay, is_retryable, with_retries
from tests.content.contentful_server import FakeContentful, Fault
from tests.content.live_sources import delivery_source


class Sleeps(list[float]):
    """A ``sleep`` that only records how long it was asked to sleep."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


# -- the policy ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (ContentSourceError("network"), True),
        (ContentSourceError("rate limit", status=429), True),
        (ContentSourceError("server", status=500), True),
        (ContentSourceError("gateway", status=503), True),
        (ContentSourceError("bad request", status=400), False),
        (ContentAccessError("token", status=401), False),
        (ContentAccessError("denied", status=403), False),
        (ContentAccessError("no space", status=404), False),
        (ContentFormatError("not JSON"), False),
        (ValueError("a bug"), False),
    ],
)
def test_what_is_retried(error: Exception, retryable: bool) -> None:
    assert is_retryable(error) is retryable


def test_backoff_is_full_jitter_and_capped() -> None:
    rng = random.Random(7)
    for retry in range(10):
        for _ in range(50):
            assert 0.0 <= backoff_delay(retry, 0.5, 8.0, rng) <= min(8.0, 0.5 * 2**retry)
    late = [backoff_delay(6, 0.5, 8.0, rng) for _ in range(200)]
    assert max(late) > 6.0 and min(late) < 2.0  # spread over the whole capped range


def test_seeded_delays_are_reproducible() -> None:
    def delays(seed: int) -> list[float]:
        sleeps = Sleeps()
        with pytest.raises(ContentSourceError):
            with_retries(_always(ContentSourceError("down")), sleep=sleeps, rng=random.Random(seed))
        return sleeps

    assert delays(1) == delays(1) != delays(2)
    assert len(delays(1)) == 3  # four attempts, three sleeps


def test_gives_up_with_the_last_error_and_logs_every_retry(caplog: pytest.LogCaptureFixture) -> None:
    errors = iter([ContentSourceError("first", status=502), ContentSourceError("second"), ContentSourceError("third", status=429)])

    def call() -> None:
        raise next(errors)

    sleeps = Sleeps()
    with caplog.at_level(logging.WARNING, logger="vary.content"):
        with pytest.raises(ContentSourceError, match="third"):
            with_retries(call, attempts=3, base_delay=0.1, sleep=sleeps, rng=random.Random(0))
    assert len(sleeps) == 2 and sleeps[0] <= 0.1 and sleeps[1] <= 0.2
    messages = [r.getMessage() for r in caplog.records if r.name == "vary.content"]
    assert len(messages) == 2
    assert messages[0].startswith("content sync failed (HTTP 502: first); retry 1 of 2 in")
    assert messages[1].startswith("content sync failed (no response: second); retry 2 of 2 in")


def test_not_retried_errors_are_raised_at_once() -> None:
    sleeps = Sleeps()
    with pytest.raises(ContentFormatError):
        with_retries(_always(ContentFormatError("broken")), sleep=sleeps)
    with pytest.raises(KeyError):  # not a content error at all: a bug, raised as it is
        with_retries(_always(KeyError("x")), sleep=sleeps)
    assert sleeps == []
    with pytest.raises(ValueError, match="attempts"):
        with_retries(lambda: None, attempts=0)


def _always(error: Exception) -> Any:
    def call() -> None:
        raise error

    return call


# -- against the real client ---------------------------------------------------------------------------


def test_server_errors_are_retried(contentful_server: FakeContentful) -> None:
    contentful_server.faults.append(Fault(path="/sync", status=500, times=2))
    source, sleeps = delivery_source(contentful_server), Sleeps()

    items = with_retries(source.load, sleep=sleeps, rng=random.Random(0))

    assert len(items.entries) == 19 and len(sleeps) == 2
    assert contentful_server.faults[0].hits == 2


def test_rate_limit_with_reset_header_is_waited_out_by_the_sdk(contentful_server: FakeContentful) -> None:
    contentful_server.faults.append(
        Fault(path="/locales", status=429, headers={"X-Contentful-RateLimit-Reset": "1"})
    )
    source, sleeps = delivery_source(contentful_server), Sleeps()

    started = time.monotonic()
    items = with_retries(source.load, sleep=sleeps)

    assert len(items.entries) == 19
    assert time.monotonic() - started >= 1.0  # the SDK slept the reset time (× 1.0–1.2)
    assert sleeps == []  # so with_retries never saw an error


def test_rate_limit_without_reset_header_is_retried(
    contentful_server: FakeContentful, caplog: pytest.LogCaptureFixture
) -> None:
    # contentful 2.5 raises KeyError on such a 429; the source turns it into a retryable error.
    contentful_server.faults.append(Fault(path="/locales", status=429, times=2))
    source, sleeps = delivery_source(contentful_server), Sleeps()

    with caplog.at_level(logging.WARNING, logger="vary.content"):
        items = with_retries(source.load, sleep=sleeps)

    assert len(items.entries) == 19 and len(sleeps) == 2
    assert all("HTTP 429" in r.getMessage() for r in caplog.records if r.name == "vary.content")


def test_a_refused_token_is_not_retried(contentful_server: FakeContentful) -> None:
    source, sleeps = delivery_source(contentful_server, access_token="wrong"), Sleeps()

    with pytest.raises(ContentAccessError) as caught:
        with_retries(source.load, sleep=sleeps)

    assert caught.value.status == 401 and sleeps == []
    assert len(contentful_server.requests_to("locales")) == 1


def test_a_slow_response_times_out_and_is_retried(contentful_server: FakeContentful) -> None:
    contentful_server.faults.append(Fault(path="/sync", status=None, delay_s=0.6))
    source, sleeps = delivery_source(contentful_server, timeout_s=0.2), Sleeps()

    with pytest.raises(ContentSourceError, match="could not reach Contentful") as caught:
        source.load()
    assert caught.value.status is None and is_retryable(caught.value)

    contentful_server.faults[0].hits = 0  # slow once more, then fast
    started = time.monotonic()
    items = with_retries(source.load, sleep=sleeps)
    assert len(items.entries) == 19 and len(sleeps) == 1
    assert time.monotonic() - started < 1.5

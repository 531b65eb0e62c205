"""Recording events: profile counters, the ``vary:events`` stream, idempotency by ``event_id``.

One Lua script per event does everything that must agree — the duplicate check, the profile
counters and the stream append — so a retried batch (same ``event_id``s) is counted once even when
two workers receive it at the same time. A whole batch is sent in one pipelined round trip.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from redis.asyncio import Redis

from personalization.events import EVENT_ENCODER, EVENT_STREAM, Conversion, Event, PageView, Survey
from personalization.profiles import PROFILE_TTL_S, SESSION_TIMEOUT_S, profile_key

__all__ = ["EventRecorder", "EventProblem", "check_event", "SURVEY_RANGES"]

EVENT_ID_TTL_S = 7 * 86_400

#: Allowed score range per survey metric (inclusive).
SURVEY_RANGES: dict[str, tuple[float, float]] = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7), "sus": (0, 100)}


class EventProblem(ValueError):
    """An event that decoded but makes no sense (e.g. an NPS of 11); the message says which field."""


def check_event(event: Event) -> None:
    """Rules msgspec's types cannot say; raises :class:`EventProblem` naming the field."""
    if isinstance(event, Survey):
        if event.metric == "sus":
            if event.answers is None and event.score is None:
                raise EventProblem("answers: a sus survey needs its 10 answers (1-5 each)")
            return
        if event.score is None:
            raise EventProblem(f"score: a {event.metric} survey needs a score")
        low, high = SURVEY_RANGES[event.metric]
        if not low <= event.score <= high:
            raise EventProblem(f"score: {event.metric} is scored {low:g}-{high:g}, got {event.score:g}")


# KEYS[1] profile, KEYS[2] dedupe key ("" when no event_id: then a throwaway key), KEYS[3] stream
# ARGV: ts, session, channel, page_view 0/1, goal, session timeout, ttl, has_event_id 0/1, dedupe ttl, payload
_RECORD = """
if ARGV[8] == '1' then
  if redis.call('SET', KEYS[2], 1, 'NX', 'EX', tonumber(ARGV[9])) == false then return 0 end
end
local key = KEYS[1]
local ts = tonumber(ARGV[1])
local last = tonumber(redis.call('HGET', key, 'last_seen') or '0')
local session = ARGV[2]
local new_visit = false
if last == 0 then
  new_visit = true
elseif session ~= '' then
  if redis.call('HGET', key, 'session') ~= session then new_visit = true end
elseif ts - last > tonumber(ARGV[6]) then
  new_visit = true
end
if new_visit then redis.call('HINCRBY', key, 'visits', 1) end
if session ~= '' then redis.call('HSET', key, 'session', session) end
redis.call('HSETNX', key, 'first_seen', ARGV[1])
if ts > last then redis.call('HSET', key, 'last_seen', ARGV[1]) end
if ARGV[3] ~= '' then redis.call('HSET', key, 'ch:' .. ARGV[3], 1) end
if ARGV[4] == '1' then redis.call('HINCRBY', key, 'page_views', 1) end
if ARGV[5] ~= '' then
  redis.call('HINCRBY', key, 'conversions', 1)
  redis.call('HINCRBY', key, 'g:' .. ARGV[5], 1)
end
redis.call('EXPIRE', key, tonumber(ARGV[7]))
redis.call('XADD', KEYS[3], '*', 'data', ARGV[10])
return 1
"""


class EventRecorder:
    """Counts events into profiles and appends them to the events stream, idempotently."""

    def __init__(self, redis: Redis, stream: str = EVENT_STREAM, ttl_s: int = PROFILE_TTL_S) -> None:
        self._redis = redis
        self._stream = stream
        self._ttl_s = ttl_s
        self._script = redis.register_script(_RECORD)

    async def record(self, events: Sequence[Event], received_at: float | None = None) -> int:
        """Record a batch in one round trip; returns how many were new (duplicates are skipped)."""
        if not events:
            return 0
        now = time.time() if received_at is None else received_at
        pipe = self._redis.pipeline(transaction=False)
        for event in events:
            if event.ts is None:
                event = _with_ts(event, now)
            ts = event.ts if event.ts is not None else now
            dedupe = f"vary:v:{{{event.visitor_id}}}:e:{event.event_id}" if event.event_id else "vary:noop"
            await self._script(
                keys=[profile_key(event.visitor_id), dedupe, self._stream],
                args=[
                    repr(ts),
                    event.session_id or "",
                    event.channel or "",
                    "1" if isinstance(event, PageView) else "0",
                    event.goal if isinstance(event, Conversion) else "",
                    SESSION_TIMEOUT_S,
                    self._ttl_s,
                    "1" if event.event_id else "0",
                    EVENT_ID_TTL_S,
                    EVENT_ENCODER.encode(event),
                ],
                client=pipe,
            )
        results = await pipe.execute()
        return sum(int(r) for r in results)


def _with_ts(event: Event, ts: float) -> Event:
    from msgspec.structs import replace

    return replace(event, ts=ts)

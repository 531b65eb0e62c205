"""Known bots and crawlers: served like anyone, never counted in results.

The delivery key is public, and crawlers (search engines, link previews, uptime checks) fetch pages
that personalize. Their exposures would add visitors who never convert to whichever variant they
hit, so a decision for a user agent on the maintained ``crawler-user-agents`` list
(https://github.com/monperrus/crawler-user-agents, ~1,500 patterns, updated with new bots) logs no
exposure; it is counted instead, per experience, as ``discarded: {"bot": n}`` in the results.

Generic HTTP libraries (``curl``, ``python-httpx``, ``node-fetch`` …) are on that list too, but a
server-side integration calls ``/v1/personalize`` with exactly those on behalf of real visitors, so
they are not treated as bots here. A bot that pretends to be a browser is not caught by this (the
aggregator's per-visitor limits still bound what one visitor id can do).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from functools import lru_cache

import crawleruseragents
from redis.asyncio import Redis
from redis.exceptions import RedisError

from personalization.store.keys import agg_key
from personalization.types import Exposure

__all__ = ["MAX_USER_AGENT", "count_bot_decisions", "is_bot"]

log = logging.getLogger("vary.measurement")

#: Only this much of a user agent is matched (real ones are ~150 characters; matching is linear in it).
MAX_USER_AGENT = 256
_LIBRARIES = re.compile(
    r"(?:python-httpx|python-requests|python-urllib|aiohttp|curl|wget|node-fetch|axios|undici|got|okhttp"
    r"|go-http-client|java|apache-httpclient|guzzlehttp|ruby|faraday|dart)\b",
    re.IGNORECASE,
)


def is_bot(user_agent: str | None) -> bool:
    """Whether ``user_agent`` is a known bot or crawler (no user agent: not a bot)."""
    if not user_agent:
        return False
    return _is_bot(user_agent[:MAX_USER_AGENT])


@lru_cache(maxsize=4096)  # user agents repeat: most requests cost one dict lookup
def _is_bot(user_agent: str) -> bool:
    if _LIBRARIES.match(user_agent):
        return False
    return crawleruseragents.is_crawler(user_agent)


async def count_bot_decisions(redis: Redis, exposures: Iterable[Exposure]) -> None:
    """Count the exposures a bot's decision did not log: ``discarded:bot`` of each experience.
    Best effort: a Redis error is logged, never raised (the bot was served either way)."""
    keys = [agg_key(x.experience, "all") for x in exposures if x.experience]
    if not keys:
        return
    try:
        pipe = redis.pipeline(transaction=False)
        for key in keys:
            pipe.hincrby(key, "discarded:bot", 1)
        await pipe.execute()
    except (RedisError, OSError) as exc:
        log.warning("bot decisions not counted: %s", exc)

"""Demo traffic with known effects, driven through the real HTTP API (``vary simulate``).

A demo whose results page shows nothing but noise teaches nothing, and a measurement pipeline is
only trusted once it finds an effect someone planted on purpose. So this module simulates seeded
visitors whose behaviour depends on *what they were served* and on a *latent segment*, and sends
everything through the public API exactly as a front end would — ``POST /v1/events`` and
``POST /v1/personalize`` with a delivery key — so the exposure writer, the event recorder, the
aggregator and the results endpoint are all exercised for real.

One visitor, in order:

1. **Context** (:func:`~personalization.demo.shop.plan_visitor`): channel (web / ios / android / email), device, country,
   locale, where the visit came from (referrer + UTM tags) and consent. The latent segment
   ``price_sensitive`` is *true* for visitors arriving on a ``sale`` or ``coupon`` campaign or from
   a coupon site — the same signals the demo segment model learned, so Vary's model scores most of
   them as ``price_sensitive`` and the results' segment breakdown sees (most of) the same people.
2. **Landing**: a ``page_view`` on ``home`` (before the decision, so the profile has a visit).
3. **Decision**: ``POST /v1/personalize`` for ``heroHome``, ``bannerShipping`` and
   ``bannerNewsletter``; holdout counts as control.
4. **Journey** (:func:`~personalization.demo.shop.journey_events`): banner / hero clicks, product page views, a search task,
   checkout (task with duration and success, or an abandonment), a purchase whose probability
   depends on the variants served and the latent segment, a newsletter ``signup`` conversion,
   surveys (NPS, CSAT, CES, SUS), feedback with problem tags and an ``identify``.
5. Some visitors come back on **another channel** (a second decision — the sticky variant — and
   maybe a repeat purchase), which feeds repeat-purchase and channel-switching metrics.

The planted effects are in :class:`~personalization.demo.shop.Effects`; the default is the issue's: on
``banner-shipping-test``, variant 1 (free shipping over $50) makes price-sensitive visitors
purchase 20 % more often; and the ``hero-sale`` personalization's treated visitors (everyone it serves
outside its holdout) purchase ``personalization_lift`` more often than its holdout — sized, with the
holdout share, by the power calculation in :mod:`personalization.demo.power`. ``Effects.harms``
(``vary simulate --harm``, :mod:`personalization.demo.harm`) makes one variant's visitors answer worse,
so a guardrail has something to catch. Everything a visitor does is drawn from one ``random.Random`` seeded by
``(seed, index)`` and Vary's assignment is a hash of the visitor id, so a run is reproducible
whatever the concurrency.

Who the visitors are and what they do is :mod:`personalization.demo.shop` (their arrivals come from
:mod:`personalization.demo.visitors`, the generator the demo training data uses too); this module
drives them through the HTTP API (:func:`simulate`) and counts what happened.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec

from personalization.demo.shop import (
    ENTRIES,
    HERO_SALE,
    NEWSLETTER_TEST,
    PRICE_SENSITIVE_CAMPAIGNS,
    SHIPPING_TEST,
    Effects,
    SimVisitor,
    journey_events,
    plan_visitor,
    purchase_probability,
)
from personalization.demo.harm import Harm, parse_harm
from personalization.demo.visitors import COUPON_SITES

#: The simulation's public surface: the run and its summary here, the shop's model re-exported.
__all__ = [
    "ENTRIES",
    "SHIPPING_TEST",
    "HERO_SALE",
    "NEWSLETTER_TEST",
    "PRICE_SENSITIVE_CAMPAIGNS",
    "COUPON_SITES",
    "Effects",
    "Harm",
    "parse_harm",
    "SimVisitor",
    "SimulationSummary",
    "plan_visitor",
    "purchase_probability",
    "journey_events",
    "simulate",
    "format_summary",
]

_ENCODER = msgspec.json.Encoder()


@dataclass(slots=True)
class SimulationSummary:
    """What a run did, for the command's output and for tests."""

    visitors: int = 0
    requests: int = 0
    events: int = 0
    accepted: int = 0
    dropped: int = 0
    rejected: int = 0
    errors: int = 0
    decisions: int = 0
    #: Visitors the simulation made price-sensitive (the latent truth).
    price_sensitive: int = 0
    #: Served variants per experience (holdout counted as ``"holdout"``).
    served: dict[str, dict[str, int]] = field(default_factory=dict)
    #: Visitors in the space's global holdout (every entry's baseline, no experience).
    global_holdout: int = 0
    #: First-visit decisions whose assigned variant a guardrail had paused (the baseline was shown).
    paused_shown: int = 0
    error_samples: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    def error(self, message: str) -> None:
        """Count a failed request; keep the first few messages for the output."""
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(message)



# ----------------------------------------------------------------------------------------- HTTP


class _Client:
    """The three calls a front end makes, counting requests and errors into the summary."""

    def __init__(self, http: httpx.AsyncClient, summary: SimulationSummary) -> None:
        self._http = http
        self.summary = summary

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        self.summary.requests += 1
        try:
            response = await self._http.post(path, content=_ENCODER.encode(body))
        except httpx.HTTPError as exc:
            self.summary.error(f"POST {path}: {type(exc).__name__}: {exc}")
            return None
        if response.status_code >= 300:
            self.summary.error(f"POST {path}: {response.status_code} {response.text[:200]}")
            return None
        result: dict[str, Any] = response.json()
        return result

    async def events(self, events: list[dict[str, Any]]) -> None:
        if not events:
            return
        self.summary.events += len(events)
        reply = await self._post("/v1/events", {"events": events})
        if reply is not None:
            self.summary.accepted += int(reply.get("accepted", 0))
            self.summary.dropped += int(reply.get("dropped", 0))
            self.summary.rejected += len(reply.get("rejected", []))

    async def personalize(self, visitor: SimVisitor, channel: str, session: int) -> dict[str, int] | None:
        """The variant each experience *showed* (holdout, or a variant a guardrail paused, → 0: the
        baseline entry came back), or ``None`` when the request failed. The summary counts the
        assigned variants, as the results do (intent to treat)."""
        reply = await self._post(
            "/v1/personalize", {"visitor": visitor.visitor_json(channel, session), "entries": list(ENTRIES)}
        )
        if reply is None:
            return None
        served: dict[str, int] = {}
        held_out = False
        for entry in reply.get("entries", []):
            experience = entry.get("experience")
            if not experience:
                held_out = held_out or str(entry.get("reason", "")).startswith("global holdout")
                continue
            baseline_shown = entry.get("variant_entry_id", "") == entry.get("entry_id")
            served[experience] = 0 if entry.get("holdout") or baseline_shown else int(entry.get("variant", 0))
            if session == 1 and baseline_shown and int(entry.get("variant", 0)) > 0 and not entry.get("holdout"):
                self.summary.paused_shown += 1
            if session == 1:
                self.summary.decisions += 1
                label = "holdout" if entry.get("holdout") else str(entry.get("variant", 0))
                counts = self.summary.served.setdefault(experience, {})
                counts[label] = counts.get(label, 0) + 1
        if session == 1 and held_out:
            self.summary.global_holdout += 1
        return served


class _EventBatcher:
    """Events of many visitors, sent ``size`` at a time — as a tag manager or collector forwards them.

    One request per visitor for a handful of events would double the HTTP cost of a run (most of
    it is per request, not per event). Buffered events carry no ``ts`` and Vary stamps them on
    receipt, which is after the decision they follow, so batching never moves an event before its
    exposure.
    """

    def __init__(self, client: _Client, size: int) -> None:
        self._client = client
        self._size = size
        self._pending: list[dict[str, Any]] = []

    async def add(self, events: list[dict[str, Any]]) -> None:
        self._pending.extend(events)
        if len(self._pending) >= self._size:
            await self.flush()

    async def flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self._size], self._pending[self._size :]
            await self._client.events(batch)


async def _one_visitor(client: _Client, events: _EventBatcher, seed: int, index: int, effects: Effects) -> None:
    visitor, rng = plan_visitor(seed, index, effects)
    summary = client.summary
    summary.visitors += 1
    summary.price_sensitive += visitor.price_sensitive
    served = await client.personalize(visitor, visitor.channel, 1)
    if served is None:
        return
    landing: dict[str, Any] = {"type": "page_view", "visitor_id": visitor.id, "session_id": f"{visitor.id}-s1",
                               "channel": visitor.channel, "touchpoint": "home", "page": "/"}
    if visitor.referrer:
        landing["referrer"] = visitor.referrer
    if not visitor.analytics:
        landing["analytics"] = False
    first = journey_events(visitor, served, rng, effects)
    await events.add([landing, *first])
    if visitor.return_channel is not None:
        again = await client.personalize(visitor, visitor.return_channel, 2)
        if again is None:
            return
        bought = any(e["type"] == "purchase" for e in first)
        await events.add(
            journey_events(visitor, again, rng, effects, channel=visitor.return_channel, session=2,
                           bought_before=bought)
        )


async def simulate(
    base_url: str,
    key: str,
    visitors: int,
    *,
    seed: int = 0,
    concurrency: int = 8,
    effects: Effects = Effects(),
    batch_size: int = 250,
    timeout_s: float = 30.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> SimulationSummary:
    """Simulate ``visitors`` visitors against the Vary API at ``base_url`` with delivery key ``key``.

    ``concurrency`` visitors are in flight at once (each one's requests are sequential, as in a
    browser); their events go to ``POST /v1/events`` in batches of ``batch_size`` (≤ 500, the API's
    limit). Failed requests are counted in :attr:`SimulationSummary.errors` — with the first few
    messages kept — and the run goes on; a visitor whose decision failed stops there.
    ``transport`` lets tests run against an in-process ASGI app.
    """
    if visitors < 0:
        raise ValueError(f"visitors must be >= 0, got {visitors}")
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    if not 1 <= batch_size <= 500:
        raise ValueError(f"batch_size must be 1-500, got {batch_size}")
    summary = SimulationSummary()
    started = time.perf_counter()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, timeout=timeout_s, limits=limits, transport=transport
    ) as http:
        client = _Client(http, summary)
        events = _EventBatcher(client, batch_size)
        next_index = iter(range(visitors))

        async def worker() -> None:
            for index in next_index:  # one shared iterator: each index is taken exactly once
                await _one_visitor(client, events, seed, index, effects)

        await asyncio.gather(*(worker() for _ in range(min(concurrency, max(visitors, 1)))))
        await events.flush()
    summary.elapsed_s = time.perf_counter() - started
    return summary


def format_summary(summary: SimulationSummary) -> str:
    """The lines ``vary simulate`` prints."""
    rate = summary.visitors / summary.elapsed_s if summary.elapsed_s > 0 else 0.0
    lines = [
        f"simulated {summary.visitors:,} visitors ({summary.price_sensitive:,} price-sensitive) in "
        f"{summary.elapsed_s:.1f} s ({rate:,.0f}/s)",
        f"  requests {summary.requests:,}, decisions in experiences {summary.decisions:,}, errors {summary.errors:,}",
        f"  events sent {summary.events:,}: accepted {summary.accepted:,}, dropped (no consent) "
        f"{summary.dropped:,}, rejected {summary.rejected:,}",
    ]
    if summary.global_holdout:
        lines.append(f"  global holdout (baseline everywhere): {summary.global_holdout:,} visitors")
    if summary.paused_shown:
        lines.append(f"  paused by a guardrail (baseline shown): {summary.paused_shown:,} decisions")
    for experience in sorted(summary.served):
        counts = summary.served[experience]
        shown = ", ".join(f"{label} {counts[label]:,}" for label in sorted(counts))
        lines.append(f"  {experience}: {shown}")
    for message in summary.error_samples:
        lines.append(f"  error: {message}")
    return "\n".join(lines)

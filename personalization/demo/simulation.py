"""Demo traffic with known effects, driven through the real HTTP API (``vary simulate``).

A demo whose results page shows nothing but noise teaches nothing, and a measurement pipeline is
only trusted once it finds an effect someone planted on purpose. So this module simulates seeded
visitors whose behaviour depends on *what they were served* and on a *latent segment*, and sends
everything through the public API exactly as a front end would — ``POST /v1/events`` and
``POST /v1/personalize`` with a delivery key — so the exposure writer, the event recorder, the
aggregator and the results endpoint are all exercised for real.

One visitor, in order:

1. **Context** (:func:`plan_visitor`): channel (web / ios / android / email), device, country,
   locale, where the visit came from (referrer + UTM tags) and consent. The latent segment
   ``price_sensitive`` is *true* for visitors arriving on a ``sale`` or ``coupon`` campaign or from
   a coupon site — the same signals the demo segment model learned, so Vary's model scores most of
   them as ``price_sensitive`` and the results' segment breakdown sees (most of) the same people.
2. **Landing**: a ``page_view`` on ``home`` (before the decision, so the profile has a visit).
3. **Decision**: ``POST /v1/personalize`` for ``heroHome``, ``bannerShipping`` and
   ``bannerNewsletter``; holdout counts as control.
4. **Journey** (:func:`journey_events`): banner / hero clicks, product page views, a search task,
   checkout (task with duration and success, or an abandonment), a purchase whose probability
   depends on the variants served and the latent segment, a newsletter ``signup`` conversion,
   surveys (NPS, CSAT, CES, SUS), feedback with problem tags and an ``identify``.
5. Some visitors come back on **another channel** (a second decision — the sticky variant — and
   maybe a repeat purchase), which feeds repeat-purchase and channel-switching metrics.

The planted effects are in :class:`Effects`; the default is the issue's: on
``banner-shipping-test``, variant 1 (free shipping over $50) makes price-sensitive visitors
purchase 20 % more often. Everything a visitor does is drawn from one ``random.Random`` seeded by
``(seed, index)`` and Vary's assignment is a hash of the visitor id, so a run is reproducible
whatever the concurrency.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec

from personalization.demo.traffic import COUPON_SITES, TrafficMix, traffic

__all__ = [
    "ENTRIES",
    "SHIPPING_TEST",
    "HERO_SALE",
    "NEWSLETTER_TEST",
    "PRICE_SENSITIVE_CAMPAIGNS",
    "COUPON_SITES",
    "Effects",
    "SimVisitor",
    "SimulationSummary",
    "plan_visitor",
    "purchase_probability",
    "journey_events",
    "simulate",
    "format_summary",
]

#: The demo baseline entries requested on the home page.
ENTRIES: tuple[str, ...] = ("heroHome", "bannerShipping", "bannerNewsletter")
SHIPPING_TEST = "banner-shipping-test"
HERO_SALE = "hero-sale"
HERO_NORTH_AMERICA = "hero-north-america"
NEWSLETTER_TEST = "newsletter-copy"
#: UTM campaigns that make a visitor (latently) price-sensitive.
PRICE_SENSITIVE_CAMPAIGNS: frozenset[str] = frozenset({"sale", "coupon"})

_CHANNELS = {"web": 0.55, "ios": 0.18, "android": 0.17, "email": 0.10}
_COUNTRIES = {"US": 0.40, "CA": 0.10, "DE": 0.12, "GB": 0.15, "FR": 0.10, "JP": 0.08, "": 0.05}
_PROBLEMS = ("shipping cost unclear", "coupon not applied", "slow checkout", "search results irrelevant",
             "size guide missing")
_ENCODER = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Effects:
    """The truth a simulation plants: base rates and multiplicative lifts (0.2 = +20 %).

    Only ``shipping_lift`` is the issue's headline effect; the others make the demo look like a
    real shop (several experiments, each with something to find) without touching it: every
    experience is randomised independently, so their lifts only add noise to the shipping test.
    """

    #: P(purchase) of a visitor who is not price-sensitive, on control everywhere.
    purchase_rate: float = 0.08
    #: P(purchase) of a price-sensitive visitor on control everywhere.
    price_sensitive_purchase_rate: float = 0.12
    #: ``banner-shipping-test`` variant 1 (free shipping), price-sensitive visitors only.
    shipping_lift: float = 0.20
    #: ``banner-shipping-test`` variant 2 (fast delivery), visitors who are not price-sensitive.
    fast_delivery_lift: float = 0.10
    #: ``hero-sale`` variant (the sale hero) for the price-sensitive visitors it targets.
    sale_hero_lift: float = 0.15
    #: P(newsletter signup) on control, and the lift of the welcome-discount copy.
    signup_rate: float = 0.06
    newsletter_discount_lift: float = 0.30
    #: P(a buyer orders again on their return visit).
    repeat_purchase_rate: float = 0.25
    #: P(the visitor comes back on another channel).
    return_rate: float = 0.12
    #: P(no analytics consent): exposures are anonymous and events are dropped by Vary.
    analytics_opt_out: float = 0.03
    #: P(no personalization consent): the baseline is served and nothing is measured.
    personalization_opt_out: float = 0.02


@dataclass(frozen=True, slots=True)
class SimVisitor:
    """One simulated visitor's context and latent segment (what Vary is told, and what it is not)."""

    index: int
    id: str
    channel: str
    device: str | None
    country: str | None
    locale: str
    referrer: str | None
    utm: dict[str, str]
    price_sensitive: bool
    analytics: bool
    personalization: bool
    return_channel: str | None

    def visitor_json(self, channel: str | None = None, session: int = 1) -> dict[str, Any]:
        """The ``visitor`` object of ``POST /v1/personalize``."""
        body: dict[str, Any] = {
            "id": self.id,
            "session_id": f"{self.id}-s{session}",
            "channel": channel or self.channel,
            "locale": self.locale,
            "consent": {"personalization": self.personalization, "analytics": self.analytics},
        }
        if self.device:
            body["device"] = self.device
        if self.country:
            body["country"] = self.country
        if session == 1:  # the campaign brought the first visit only
            if self.referrer:
                body["referrer"] = self.referrer
            if self.utm:
                body["utm"] = self.utm
        return body


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
    error_samples: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    def error(self, message: str) -> None:
        """Count a failed request; keep the first few messages for the output."""
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(message)


def _pick(rng: random.Random, options: Mapping[str, float]) -> str:
    return rng.choices(tuple(options), weights=tuple(options.values()))[0]


#: Shares set so ~30 % of simulated visitors are price-sensitive (more sale traffic than the demo data).
SIMULATION_TRAFFIC = TrafficMix(
    email_campaigns={"sale": 0.45, "loyalty": 0.30, "brand": 0.25},
    web_sources={"direct": 0.28, "organic": 0.22, "paid_search": 0.16, "social": 0.14, "coupon": 0.14,
                 "display": 0.06},
    app_sources={"direct": 0.45, "paid_search": 0.10, "social": 0.15, "coupon": 0.08, "push": 0.22},
    paid_search_campaigns={"sale": 0.5, "brand": 0.35, "spring_launch": 0.15},
    social_campaigns={"sale": 0.5, "brand": 0.3, "spring_launch": 0.2},
    search_query="sofa",
)


def _traffic(rng: random.Random, channel: str) -> tuple[str | None, dict[str, str]]:
    """Referrer and UTM tags of the first visit (:data:`SIMULATION_TRAFFIC`)."""
    return traffic(rng, channel, SIMULATION_TRAFFIC)


def plan_visitor(seed: int, index: int, effects: Effects = Effects()) -> tuple[SimVisitor, random.Random]:
    """Visitor ``index`` of run ``seed`` and the random generator the rest of its journey draws from.

    The generator is seeded by the string ``"<seed>:<index>"`` (hashed with SHA-512 by
    :mod:`random`, so it does not depend on ``PYTHONHASHSEED``): visitor *i* is the same in every
    run with the same seed, whichever worker simulates it.
    """
    rng = random.Random(f"vary-sim:{seed}:{index}")
    channel = _pick(rng, _CHANNELS)
    if channel == "web":
        device: str | None = _pick(rng, {"desktop": 0.5, "mobile": 0.42, "tablet": 0.08})
    elif channel == "email":
        device = _pick(rng, {"desktop": 0.45, "mobile": 0.55})
    else:
        device = _pick(rng, {"mobile": 0.88, "tablet": 0.12})
    if rng.random() < 0.03:
        device = None
    country = _pick(rng, _COUNTRIES) or None
    referrer, utm = _traffic(rng, channel)
    domain = (referrer or "").split("//")[-1].split("/")[0].removeprefix("www.")
    price_sensitive = utm.get("campaign") in PRICE_SENSITIVE_CAMPAIGNS or domain in COUPON_SITES
    analytics = rng.random() >= effects.analytics_opt_out
    personalization = rng.random() >= effects.personalization_opt_out
    return_channel = None
    if rng.random() < effects.return_rate:
        return_channel = rng.choice([c for c in _CHANNELS if c != channel])
    visitor = SimVisitor(
        index=index,
        id=f"sim-{seed}-{index:06d}",
        channel=channel,
        device=device,
        country=country,
        locale="de-DE" if country == "DE" else "en-US",
        referrer=referrer,
        utm=utm,
        price_sensitive=price_sensitive,
        analytics=analytics,
        personalization=personalization,
        return_channel=return_channel,
    )
    return visitor, rng


def purchase_probability(visitor: SimVisitor, served: Mapping[str, int], effects: Effects) -> float:
    """P(purchase) given the latent segment and the variants served (experience → variant, 0 = control).

    This is where the planted effects live: the measured uplift of ``banner-shipping-test`` variant 1
    among price-sensitive visitors should come out near ``effects.shipping_lift``.
    """
    if visitor.price_sensitive:
        p = effects.price_sensitive_purchase_rate
        if served.get(SHIPPING_TEST) == 1:
            p *= 1.0 + effects.shipping_lift
        if served.get(HERO_SALE, 0) >= 1:
            p *= 1.0 + effects.sale_hero_lift
    else:
        p = effects.purchase_rate
        if served.get(SHIPPING_TEST) == 2:
            p *= 1.0 + effects.fast_delivery_lift
    return min(1.0, p)


def _lognormal_ms(rng: random.Random, median_s: float, sigma: float) -> int:
    return max(1, min(86_400_000, int(1000.0 * median_s * math.exp(rng.gauss(0.0, sigma)))))


def _order_value(rng: random.Random, price_sensitive: bool) -> float:
    median = 55.0 if price_sensitive else 95.0
    return round(median * math.exp(rng.gauss(0.0, 0.5)), 2)


def journey_events(
    visitor: SimVisitor,
    served: Mapping[str, int],
    rng: random.Random,
    effects: Effects = Effects(),
    *,
    channel: str | None = None,
    session: int = 1,
    bought_before: bool = False,
) -> list[dict[str, Any]]:
    """Everything the visitor does after the decision in one session, as ``POST /v1/events`` objects.

    ``session`` 2 is the return visit on :attr:`SimVisitor.return_channel`: a few page views and, for
    earlier buyers, maybe a repeat order. Events carry no ``ts``: Vary stamps the time it receives
    them, which is after the exposure they follow, as in a live front end.
    """
    channel = channel or visitor.channel
    sid = f"{visitor.id}-s{session}"
    events: list[dict[str, Any]] = []

    def add(kind: str, touchpoint: str, **fields: Any) -> None:
        event = {"type": kind, "visitor_id": visitor.id, "session_id": sid, "channel": channel,
                 "touchpoint": touchpoint, **fields}
        if not visitor.analytics:
            event["analytics"] = False
        events.append(event)

    currency = "EUR" if visitor.country in ("DE", "FR") else "USD"
    if session > 1:
        for _ in range(1 + int(rng.expovariate(1.0))):
            add("page_view", "product", page=f"/p/{rng.randint(1000, 9999)}")
        if bought_before and rng.random() < effects.repeat_purchase_rate:
            add("purchase", "checkout", order_id=f"{visitor.id}-o2", value=_order_value(rng, visitor.price_sensitive),
                currency=currency)
        return events

    shipping = served.get(SHIPPING_TEST, 0)
    click_p = 0.10 if visitor.price_sensitive and shipping == 1 else 0.05
    if rng.random() < click_p:
        add("click", "home", target="bannerShipping")
    if rng.random() < (0.20 if served.get(HERO_SALE, 0) >= 1 else 0.12):
        add("click", "home", target="heroHome")
    for _ in range(1 + int(rng.expovariate(1 / 1.5))):
        add("page_view", "product", page=f"/p/{rng.randint(1000, 9999)}")
    if rng.random() < 0.4:
        add("task", "search", name="search", success=rng.random() < 0.8, duration_ms=_lognormal_ms(rng, 15.0, 0.6))

    buys = rng.random() < purchase_probability(visitor, served, effects)
    reaches_checkout = buys or rng.random() < 0.15
    if reaches_checkout:
        add("page_view", "cart", page="/cart")
        add("page_view", "checkout", page="/checkout")
        # Fast delivery (variant 2) shortens checkout a little: a UX effect to show in task time.
        median_s = 80.0 if shipping == 2 else 95.0
        if buys:
            add("task", "checkout", name="checkout", success=True, duration_ms=_lognormal_ms(rng, median_s, 0.5))
            add("purchase", "checkout", order_id=f"{visitor.id}-o1", value=_order_value(rng, visitor.price_sensitive),
                currency=currency)
            if rng.random() < 0.3:
                good = 0.8 if shipping else 0.7
                score = rng.choice([4, 5]) if rng.random() < good else rng.choice([1, 2, 3])
                add("survey", "checkout", metric="csat", score=score)
            if rng.random() < 0.2:
                add("survey", "checkout", metric="ces", score=max(1, min(7, round(rng.gauss(2.6, 1.2)))))
            if rng.random() < 0.3:
                add("identify", "checkout", traits={"customer": True, "currency": currency})
        elif rng.random() < 0.5:
            add("task", "checkout", name="checkout", success=False, duration_ms=_lognormal_ms(rng, 140.0, 0.6))
        else:
            add("abandonment", "checkout", task="checkout", step=rng.choice(["shipping", "payment", "review"]))
            if visitor.price_sensitive and shipping != 1 and rng.random() < 0.15:
                add("feedback", "checkout", text="How much is shipping?", problem="shipping cost unclear")

    signup_p = effects.signup_rate * (1.0 + effects.newsletter_discount_lift if served.get(NEWSLETTER_TEST) else 1.0)
    if rng.random() < signup_p:
        add("conversion", "newsletter", goal="signup")
    if rng.random() < 0.08:
        mean = 8.2 if buys else 6.8
        add("survey", "home", metric="nps", score=max(0, min(10, round(rng.gauss(mean, 1.8)))))
    if rng.random() < 0.02:
        answers = [max(1, min(5, round(rng.gauss(4.0 if i % 2 == 0 else 2.0, 0.8)))) for i in range(10)]
        add("survey", "checkout" if reaches_checkout else "home", metric="sus", answers=answers)
    if rng.random() < 0.03:
        add("feedback", rng.choice(["search", "product", "checkout"]), text="Something was off",
            problem=rng.choice(_PROBLEMS))
    return events


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
        """Served variants by experience (holdout → 0), or ``None`` when the request failed."""
        reply = await self._post(
            "/v1/personalize", {"visitor": visitor.visitor_json(channel, session), "entries": list(ENTRIES)}
        )
        if reply is None:
            return None
        served: dict[str, int] = {}
        for entry in reply.get("entries", []):
            experience = entry.get("experience")
            if not experience:
                continue
            served[experience] = 0 if entry.get("holdout") else int(entry.get("variant", 0))
            if session == 1:
                self.summary.decisions += 1
                label = "holdout" if entry.get("holdout") else str(entry.get("variant", 0))
                counts = self.summary.served.setdefault(experience, {})
                counts[label] = counts.get(label, 0) + 1
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
    for experience in sorted(summary.served):
        counts = summary.served[experience]
        shown = ", ".join(f"{label} {counts[label]:,}" for label in sorted(counts))
        lines.append(f"  {experience}: {shown}")
    for message in summary.error_samples:
        lines.append(f"  error: {message}")
    return "\n".join(lines)

"""The simulated shop behind ``vary simulate``: who the visitors are, what they do after a decision,
and the effects planted in their behaviour.

Everything a visitor does depends on *what they were served* and on a *latent segment*
(``price_sensitive``), so the measured results have something true to find:

* :func:`plan_visitor` — the visitor's context (channel, device, country, referrer, UTM tags, drawn
  by :func:`personalization.demo.visitors.draw_arrival`), locale, consent, a possible return on
  another channel, and the latent segment: *true* for visitors arriving on a ``sale`` or
  ``coupon`` campaign or from a coupon site — the same signals the demo segment model learned.
* :func:`purchase_probability` — where the planted :class:`Effects` live.
* :func:`journey_events` — clicks, product views, tasks, checkout, purchases, signups, surveys and
  feedback after the decision, as ``POST /v1/events`` objects; harm planted with ``--harm``
  (:mod:`personalization.demo.harm`) makes the answers of one variant's visitors worse.

Everything is drawn from one ``random.Random`` per visitor, seeded by ``(seed, index)``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from personalization.demo.harm import Harm, apply_harms, harm_factor
from personalization.demo.power import DEMO_PERSONALIZATION_LIFT
from personalization.demo.visitors import CHANNELS, COUPON_SITES, TrafficMix, VisitorMix, draw_arrival

__all__ = [
    "ENTRIES",
    "SHIPPING_TEST",
    "HERO_SALE",
    "HERO_NORTH_AMERICA",
    "NEWSLETTER_TEST",
    "CHECKOUT_SURVEY",
    "PRICE_SENSITIVE_CAMPAIGNS",
    "SIMULATION_TRAFFIC",
    "SIMULATION_VISITORS",
    "Effects",
    "SimVisitor",
    "plan_visitor",
    "purchase_probability",
    "journey_events",
]

#: The demo baseline entries requested on the home page.
ENTRIES: tuple[str, ...] = ("heroHome", "bannerShipping", "bannerNewsletter")
SHIPPING_TEST = "banner-shipping-test"
HERO_SALE = "hero-sale"
HERO_NORTH_AMERICA = "hero-north-america"
NEWSLETTER_TEST = "newsletter-copy"
#: The demo space's survey shown after a successful checkout (``varySurvey`` ``checkout-csat``).
CHECKOUT_SURVEY = "checkout-csat"
#: UTM campaigns that make a visitor (latently) price-sensitive.
PRICE_SENSITIVE_CAMPAIGNS: frozenset[str] = frozenset({"sale", "coupon"})

#: P(a buyer checks the order status in their account), P(a buyer answers the follow-up email's NPS).
_ORDER_STATUS_RATE = 0.5
_EMAIL_NPS_RATE = 0.25

_PROBLEMS = ("shipping cost unclear", "coupon not applied", "slow checkout", "search results irrelevant",
             "size guide missing")


@dataclass(frozen=True, slots=True)
class Effects:
    """The truth a simulation plants: base rates and multiplicative lifts (0.2 = +20 %).

    ``shipping_lift`` (an A/B test's segment effect) and ``personalization_lift`` (hero-sale vs its
    holdout) are the headline effects; the others make the demo look like a real shop (several
    experiments, each with something to find) without touching them: every experience is randomised
    independently and the lifts multiply, so each only adds noise to the others' comparisons.
    """

    #: P(purchase) of a visitor who is not price-sensitive, on control everywhere.
    purchase_rate: float = 0.08
    #: P(purchase) of a price-sensitive visitor on control everywhere.
    price_sensitive_purchase_rate: float = 0.12
    #: ``banner-shipping-test`` variant 1 (free shipping), price-sensitive visitors only.
    shipping_lift: float = 0.20
    #: ``banner-shipping-test`` variant 2 (fast delivery), visitors who are not price-sensitive.
    fast_delivery_lift: float = 0.10
    #: ``hero-sale`` personalization: P(purchase) × (1 + this) for *every* visitor it serves the sale
    #: hero (its treated arm outside the holdout), so the true lift of treated vs holdout is exactly
    #: this. The default is chosen by the power calculation in :mod:`personalization.demo.power`.
    personalization_lift: float = DEMO_PERSONALIZATION_LIFT
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
    #: P(the visitor answers the site's "how satisfied are you?" CSAT pop-up on the first visit) —
    #: more than a real site gets, so a CSAT guardrail has answers to test at a few thousand visitors.
    site_csat_rate: float = 0.15
    #: Harm planted on purpose (``vary simulate --harm``): none by default.
    harms: tuple[Harm, ...] = ()


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


#: The simulated population: :data:`SIMULATION_TRAFFIC`, 3 % of visitors without a known device.
SIMULATION_VISITORS = VisitorMix(traffic=SIMULATION_TRAFFIC, no_device_share=0.03)


def plan_visitor(seed: int, index: int, effects: Effects = Effects()) -> tuple[SimVisitor, random.Random]:
    """Visitor ``index`` of run ``seed`` and the random generator the rest of its journey draws from.

    The generator is seeded by the string ``"<seed>:<index>"`` (hashed with SHA-512 by
    :mod:`random`, so it does not depend on ``PYTHONHASHSEED``): visitor *i* is the same in every
    run with the same seed, whichever worker simulates it.
    """
    rng = random.Random(f"vary-sim:{seed}:{index}")
    arrival = draw_arrival(rng, SIMULATION_VISITORS)
    channel, country, referrer, utm = arrival.channel, arrival.country, arrival.referrer, arrival.utm
    domain = (referrer or "").split("//")[-1].split("/")[0].removeprefix("www.")
    price_sensitive = utm.get("campaign") in PRICE_SENSITIVE_CAMPAIGNS or domain in COUPON_SITES
    analytics = rng.random() >= effects.analytics_opt_out
    personalization = rng.random() >= effects.personalization_opt_out
    return_channel = None
    if rng.random() < effects.return_rate:
        return_channel = rng.choice([c for c in CHANNELS if c != channel])
    visitor = SimVisitor(
        index=index,
        id=f"sim-{seed}-{index:06d}",
        channel=channel,
        device=arrival.device,
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
    among price-sensitive visitors should come out near ``effects.shipping_lift``, and hero-sale's
    ``personalization_lift`` (treated vs holdout) near ``effects.personalization_lift``.
    """
    if visitor.price_sensitive:
        p = effects.price_sensitive_purchase_rate
        if served.get(SHIPPING_TEST) == 1:
            p *= 1.0 + effects.shipping_lift
    else:
        p = effects.purchase_rate
        if served.get(SHIPPING_TEST) == 2:
            p *= 1.0 + effects.fast_delivery_lift
    if served.get(HERO_SALE, 0) >= 1:  # hero-sale's treated arm (its holdout is served 0)
        p *= 1.0 + effects.personalization_lift
    return min(1.0, p * harm_factor(effects.harms, "purchase", served))


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
    them, which is after the exposure they follow, as in a live front end. ``served`` is what the
    visitor was *shown* (experience → variant; a paused variant shows the baseline, 0).
    """
    events = _journey(visitor, served, rng, effects, channel=channel, session=session, bought_before=bought_before)
    return _checkout_survey(apply_harms(events, effects.harms, served, visitor.id, session), visitor.id)


def _checkout_survey(events: list[dict[str, Any]], visitor_id: str) -> list[dict[str, Any]]:
    """The demo space's checkout survey (``checkout-csat``: after a successful checkout, everyone
    sampled) as the kit reports it: ``survey_shown`` after the first order, then the answer drawn in
    :func:`_journey` (about 30 %) or, for most of the others, ``survey_dismissed``.

    Added after the harms and drawn from a stream of its own, so the other draws — and the planted
    effects — stay exactly as they were."""
    at = next((i for i, e in enumerate(events) if e["type"] == "purchase" and e.get("order_id", "").endswith("-o1")),
              None)
    if at is None:
        return events
    order = events[at]
    base = {k: order[k] for k in ("visitor_id", "session_id", "channel", "analytics") if k in order}
    prompt = [{"type": "survey_shown", **base, "touchpoint": "checkout", "survey": CHECKOUT_SURVEY, "metric": "csat"}]
    answered = any(e.get("survey") == CHECKOUT_SURVEY for e in events)
    if not answered and random.Random(f"vary-sim-survey:{visitor_id}").random() < 0.6:
        prompt.append({**prompt[0], "type": "survey_dismissed"})
    return events[: at + 1] + prompt + events[at + 1 :]


def _journey(
    visitor: SimVisitor,
    served: Mapping[str, int],
    rng: random.Random,
    effects: Effects,
    *,
    channel: str | None,
    session: int,
    bought_before: bool,
) -> list[dict[str, Any]]:
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
        if channel == "email":  # the visitor came back by clicking the newsletter
            add("page_view", "email", page="/newsletter")
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
            if rng.random() < 0.3:  # the answer to the checkout survey (its showing: _checkout_survey)
                good = 0.8 if shipping else 0.7
                score = rng.choice([4, 5]) if rng.random() < good else rng.choice([1, 2, 3])
                add("survey", "checkout", metric="csat", score=score, survey=CHECKOUT_SURVEY)
            if rng.random() < 0.2:
                add("survey", "checkout", metric="ces", score=max(1, min(7, round(rng.gauss(2.6, 1.2)))))
            if rng.random() < 0.3:
                add("identify", "checkout", traits={"customer": True, "currency": currency})
            # Engage (after the purchase): order status in the account, the follow-up email's NPS.
            if rng.random() < _ORDER_STATUS_RATE:
                add("page_view", "account", page="/account/orders")
            if rng.random() < _EMAIL_NPS_RATE:
                add("survey", "email", metric="nps", score=max(0, min(10, round(rng.gauss(8.0, 1.8)))))
        elif rng.random() < 0.5:
            add("task", "checkout", name="checkout", success=False, duration_ms=_lognormal_ms(rng, 140.0, 0.6))
        else:
            add("abandonment", "checkout", task="checkout", step=rng.choice(["shipping", "payment", "review"]))
            if visitor.price_sensitive and shipping != 1 and rng.random() < 0.15:
                add("feedback", "checkout", text="How much is shipping?", problem="shipping cost unclear")

    signup_p = effects.signup_rate * (1.0 + effects.newsletter_discount_lift if served.get(NEWSLETTER_TEST) else 1.0)
    signup_p *= harm_factor(effects.harms, "signup", served)
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
    # The site's CSAT pop-up draws from a stream of its own: the draws above stay as they were.
    cx = random.Random(f"vary-sim-cx:{visitor.id}")
    if cx.random() < effects.site_csat_rate:
        good = (0.8 if shipping else 0.7) if not buys else 0.85
        add("survey", "home", metric="csat", score=cx.choice([4, 5]) if cx.random() < good else cx.choice([1, 2, 3]))
    return events


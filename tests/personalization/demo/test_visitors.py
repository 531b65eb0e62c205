"""One synthetic visitor generator for the demo training data and ``vary simulate``."""

from __future__ import annotations

import random

from personalization.demo import data
from personalization.demo.shop import SIMULATION_VISITORS, plan_visitor
from personalization.demo.visitors import CHANNELS, COUNTRIES, draw_arrival


def test_arrivals_are_seeded_and_cover_the_mix() -> None:
    first = [draw_arrival(random.Random(5), data.DEMO_VISITORS) for _ in range(3)]
    assert first == [draw_arrival(random.Random(5), data.DEMO_VISITORS) for _ in range(3)]
    rng = random.Random(1)
    arrivals = [draw_arrival(rng, SIMULATION_VISITORS) for _ in range(2000)]
    assert {a.channel for a in arrivals} == set(CHANNELS)
    assert {a.country for a in arrivals} == {c or None for c in COUNTRIES}
    assert None in {a.device for a in arrivals}
    assert all(a.utm.get("medium") == "email" for a in arrivals if a.channel == "email")


def test_the_demo_data_and_the_simulation_draw_their_visitors_from_it() -> None:
    rng, again = random.Random(9), random.Random(9)
    visitor = data._visitor(rng, 3, 9)
    arrival = draw_arrival(again, data.DEMO_VISITORS)
    assert (visitor.channel, visitor.device, visitor.country, visitor.referrer, visitor.utm) == (
        arrival.channel, arrival.device, arrival.country, arrival.referrer, arrival.utm,
    )
    assert rng.random() == again.random()  # the same draws, no more

    simulated, _ = plan_visitor(4, 17)
    arrival = draw_arrival(random.Random("vary-sim:4:17"), SIMULATION_VISITORS)
    assert (simulated.channel, simulated.device, simulated.country, simulated.referrer, simulated.utm) == (
        arrival.channel, arrival.device, arrival.country, arrival.referrer, arrival.utm,
    )

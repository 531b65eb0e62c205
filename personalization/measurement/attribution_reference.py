"""The attribution rules of ``scripts/outcome.lua``, in plain Python, to read, review and test against.

The aggregator counts inside Redis, in Lua, because a visitor's state must be read and updated
atomically (:mod:`personalization.measurement.attribution` states the rules in prose). Lua spread
over two scripts and a stream consumer is hard to review, so this module writes the same rules out
as one pure function over the records the scripts receive (:func:`~personalization.measurement.
attribution.exposure_record`, :func:`~personalization.measurement.attribution.event_record`, with the
visitor key prefix filled in), processed in the given order, with no Redis. The tests run seeded
random sequences through both and compare the counters field by field
(``tests/personalization/measurement/test_attribution_reference.py``).

Covered: every field of the per-experience hashes ``vary:agg:{<x>}:all``, ``:ch:<channel>``,
``:seg:<segment>`` and ``:day:<YYYY-MM-DD>`` (phases included: ``<x>@p<n>``) — ``<v>:exposures``,
``<v>:anonymous``, ``<v>:visitors``, ``variant_conflicts``, ``<v>:events:<goal>``, ``<v>:conv:<goal>``,
``<v>:vsum|vsumsq:<goal>``, the CUPED sums ``<v>:xsum|xsumsq|xysum:<goal>`` (value) and
``<v>:xcsum|xcsumsq|xcysum:<goal>`` (conversions), ``<v>:returning``, ``<v>:buyers``,
``<v>:repeat_buyers``, the per-currency ``<v>:cur:<CUR>:orders|revenue|buyers|rsq|osq|ro``, survey
histograms ``<v>:<metric>:<score>`` and ``discarded:goal`` — and the content hashes
``vary:agg:content:all|day:<day>``. The visitor's totals are modelled as two maps (value, and
conversions, which the script keeps as ``n:<goal>`` fields of the same hash): the two agree for
every goal whose name does not itself start with ``n:``.

Not covered (the scripts keep doing them; nothing here claims to match): the per-touchpoint UX hashes
(``ux:<tp>``, ``problems:…``), the sets (``dims``, ``goals``, ``tps``, ``vary:agg:experiences``), the
journey (CX) counters of ``journey.lua``, the per-minute rate limit and the daily survey repeat
(``discarded:rate``, ``discarded:survey_repeat``: the reference assumes ``max_conversions_per_minute
= 0``), and replay de-duplication of stream entries (each record here is processed once).

Order matters for two rules only — the sticky variant is the first *processed* exposure's, and an
event is attributed against the exposures processed before it — so the input order is the
processing order. :func:`round_records` gives the aggregator's order for one round in which every
entry is read at once: the exposures by ``ts``, then the events by ``ts`` (ties by arrival).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from personalization.measurement.attribution import (
    MAX_PRE_EXPOSURE_CONVERSIONS,
    event_record,
    experience_of,
    exposure_record,
)
from personalization.measurement.events import Event
from personalization.measurement.goals import GoalPolicy
from personalization.store.keys import AGG_CONTENT_KEY, agg_key, visitor_key_prefix
from personalization.types import Exposure

__all__ = ["Counters", "aggregate", "round_records"]

#: Redis key → hash field → value (``HINCRBY`` counters as whole floats).
Counters = dict[str, dict[str, float]]


@dataclass
class _FirstExposure:
    """A visitor's state for one experience (``…:x`` field): fixed at the first processed exposure,
    except that an earlier-stamped exposure moves ``first`` and ``deadline`` back."""

    variant: str
    first: float
    deadline: float
    channel: str
    segment: str


@dataclass
class _Visitor:
    exposures: dict[str, _FirstExposure] = field(default_factory=dict)
    totals: dict[str, float] = field(default_factory=dict)  # lifetime value per goal (``…:t``)
    conversions: dict[str, int] = field(default_factory=dict)  # lifetime conversions (``…:t`` n:<goal>)
    flags: dict[str, float] = field(default_factory=dict)  # ``…:xf``: x/v sums, converted, orders
    orders: set[str] = field(default_factory=set)


class _Rules:
    """One pass over the records; mirrors ``outcome.lua`` function by function."""

    def __init__(self, policy: GoalPolicy | None) -> None:
        self.policy = policy
        self.out: Counters = {}
        self.visitors: dict[str, _Visitor] = {}
        self.union: set[str] | None = None
        if policy is not None:
            self.union = set(policy.default).union(*policy.by_experience.values())

    def add(self, key: str, name: str, amount: float) -> None:
        fields = self.out.setdefault(key, {})
        fields[name] = fields.get(name, 0.0) + amount

    def counts_goal(self, experience: str, goal: str) -> bool:
        return self.policy is None or goal in self.policy.allowed(experience_of(experience))

    def any_counts(self, goal: str) -> bool:
        return self.union is None or goal in self.union

    def exposure(self, r: Sequence[str]) -> None:
        prefix, experience, v, ts, deadline, ch, seg, day = r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10]
        if experience == "":  # content served outside experiences: counted per entry id
            self.add(AGG_CONTENT_KEY, r[11], 1)
            self.add(f"vary:agg:content:day:{day}", r[11], 1)
            return
        dims = [agg_key(experience, s) for s in ("all", f"ch:{ch}", f"seg:{seg}", f"day:{day}")]
        for key in dims:
            self.add(key, f"{v}:exposures", 1)
        everyone = dims[0]
        if prefix == "":  # no analytics consent: an entry, never a visitor
            self.add(everyone, f"{v}:anonymous", 1)
            return
        visitor = self.visitors.setdefault(prefix, _Visitor())
        cur = visitor.exposures.get(experience)
        if cur is None:
            visitor.exposures[experience] = _FirstExposure(v, float(ts), float(deadline), ch, seg)
            for key in dims:
                self.add(key, f"{v}:visitors", 1)
            for goal, x in visitor.totals.items():  # CUPED: lifetime value before the exposure
                if x != 0 and self.counts_goal(experience, goal):
                    visitor.flags[f"{experience}|x:{goal}"] = x
                    self.add(everyone, f"{v}:xsum:{goal}", x)
                    self.add(everyone, f"{v}:xsumsq:{goal}", x * x)
            for goal, n in visitor.conversions.items():  # CUPED on conversions: their number so far
                if n != 0 and self.counts_goal(experience, goal):
                    visitor.flags[f"{experience}|xn:{goal}"] = n
                    self.add(everyone, f"{v}:xcsum:{goal}", n)
                    self.add(everyone, f"{v}:xcsumsq:{goal}", n * n)
            return
        if cur.variant != v:  # sticky: the first processed exposure's variant stays
            self.add(everyone, "variant_conflicts", 1)
        returned = f"{experience}|ret"  # exposures on two UTC days: the visitor came back
        if float(ts) // 86_400 != cur.first // 86_400 and returned not in visitor.flags:
            visitor.flags[returned] = 1
            self.add(everyone, f"{cur.variant}:returning", 1)
        if float(ts) < cur.first:  # a late, earlier exposure moves the window back
            cur.first, cur.deadline = float(ts), float(deadline)

    def event(self, r: Sequence[str]) -> None:
        visitor = self.visitors.setdefault(r[3], _Visitor())
        kind, ts, day, goal = r[4], float(r[5]), r[6], r[8]
        value = float(r[9]) if r[9] != "" else None
        if kind == "purchase":
            if r[10] in visitor.orders:  # the same order again: counts nowhere
                return
            visitor.orders.add(r[10])
        if goal != "" and self.any_counts(goal):
            if value is not None:
                visitor.totals[goal] = visitor.totals.get(goal, 0.0) + value
            n = visitor.conversions.get(goal, 0)
            if n < MAX_PRE_EXPOSURE_CONVERSIONS:
                visitor.conversions[goal] = n + 1
        for experience, x in visitor.exposures.items():
            everyone = agg_key(experience, "all")
            v = x.variant
            if goal != "" and ts < x.first and self.counts_goal(experience, goal):
                if value is not None:
                    self._pre_exposure_value(visitor, experience, v, goal, value)
                self._pre_exposure_conversion(visitor, experience, v, goal)
            elif not x.first <= ts <= x.deadline:
                continue  # before the exposure (nothing of value) or after the window
            elif kind == "conversion" and not self.counts_goal(experience, goal):
                self.add(everyone, "discarded:goal", 1)
            else:
                self._attributed(visitor, experience, x, kind, day, goal, value, r)

    def _pre_exposure_value(self, visitor: _Visitor, experience: str, v: str, goal: str, value: float) -> None:
        """A value stamped before the first exposure but processed after it joins the covariate X."""
        everyone = agg_key(experience, "all")
        xk = f"{experience}|x:{goal}"
        xold = visitor.flags.get(xk, 0.0)
        visitor.flags[xk] = xold + value
        self.add(everyone, f"{v}:xsum:{goal}", value)
        self.add(everyone, f"{v}:xsumsq:{goal}", 2 * xold * value + value * value)
        y = visitor.flags.get(f"{experience}|v:{goal}", 0.0)
        if y != 0:
            self.add(everyone, f"{v}:xysum:{goal}", y * value)

    def _pre_exposure_conversion(self, visitor: _Visitor, experience: str, v: str, goal: str) -> None:
        """A conversion stamped before the first exposure but processed after it joins the
        conversions covariate X (up to the cap), and X·Y if the visitor has converted since."""
        nk = f"{experience}|xn:{goal}"
        old = visitor.flags.get(nk, 0)
        if old >= MAX_PRE_EXPOSURE_CONVERSIONS:
            return
        visitor.flags[nk] = old + 1
        everyone = agg_key(experience, "all")
        self.add(everyone, f"{v}:xcsum:{goal}", 1)
        self.add(everyone, f"{v}:xcsumsq:{goal}", 2 * old + 1)
        if f"{experience}|c:{goal}" in visitor.flags:
            self.add(everyone, f"{v}:xcysum:{goal}", 1)

    def _attributed(
        self, visitor: _Visitor, experience: str, x: _FirstExposure, kind: str, day: str, goal: str,
        value: float | None, r: Sequence[str],
    ) -> None:
        v, everyone = x.variant, agg_key(experience, "all")
        if goal != "" and self.counts_goal(experience, goal):
            # Dimensions of the first exposure (channel, segment), and the event's own day.
            dims = [everyone, agg_key(experience, f"ch:{x.channel}"), agg_key(experience, f"seg:{x.segment}"),
                    agg_key(experience, f"day:{day}")]
            for key in dims:
                self.add(key, f"{v}:events:{goal}", 1)
            converted = f"{experience}|c:{goal}"
            if converted not in visitor.flags:  # the visitor's first conversion of the goal
                visitor.flags[converted] = 1
                for key in dims:
                    self.add(key, f"{v}:conv:{goal}", 1)
                before = visitor.flags.get(f"{experience}|xn:{goal}")
                if before is not None:
                    self.add(everyone, f"{v}:xcysum:{goal}", before)
            if value is not None:
                vk = f"{experience}|v:{goal}"
                old = visitor.flags.get(vk, 0.0)
                visitor.flags[vk] = old + value
                for key in dims:
                    self.add(key, f"{v}:vsum:{goal}", value)
                    self.add(key, f"{v}:vsumsq:{goal}", 2 * old * value + value * value)
                covariate = visitor.flags.get(f"{experience}|x:{goal}")
                if covariate is not None:
                    self.add(everyone, f"{v}:xysum:{goal}", covariate * value)
        if kind == "purchase":
            orders = visitor.flags.get(f"{experience}|np", 0.0) + 1
            visitor.flags[f"{experience}|np"] = orders
            if orders == 1:
                self.add(everyone, f"{v}:buyers", 1)
            elif orders == 2:
                self.add(everyone, f"{v}:repeat_buyers", 1)
            self._currency(visitor, experience, v, r[11], value or 0.0)
        elif kind == "survey" and r[10] != "sus":
            self.add(everyone, f"{v}:{r[10]}:{r[11]}", 1)


    def _currency(self, visitor: _Visitor, experience: str, v: str, currency: str, value: float) -> None:
        """An order in one currency: the visitor's running revenue R and orders O in it (per
        experience) turn each sum over visitors — R, O, buyers, R², O², R·O — into an exact increment."""
        rk, ok = f"{experience}|cr:{currency}", f"{experience}|co:{currency}"
        revenue, orders = visitor.flags.get(rk, 0.0), visitor.flags.get(ok, 0.0)
        visitor.flags[rk], visitor.flags[ok] = revenue + value, orders + 1
        c, everyone = f"{v}:cur:{currency}:", agg_key(experience, "all")
        self.add(everyone, f"{c}orders", 1)
        self.add(everyone, f"{c}revenue", value)
        if orders == 0:
            self.add(everyone, f"{c}buyers", 1)
        self.add(everyone, f"{c}rsq", (revenue + value) ** 2 - revenue**2)
        self.add(everyone, f"{c}osq", 2 * orders + 1)
        self.add(everyone, f"{c}ro", (revenue + value) * (orders + 1) - revenue * orders)


def aggregate(records: Iterable[Sequence[str]], policy: GoalPolicy | None = None) -> Counters:
    """The counters the scripts write for ``records`` processed in this order, starting from empty
    state; ``policy`` is the aggregator's goal policy (``None``: every goal counts). Records are
    :func:`~personalization.measurement.attribution.exposure_record` /
    :func:`~personalization.measurement.attribution.event_record` lists with field 3 (the visitor
    key prefix) filled in, ``''`` for an anonymous exposure."""
    rules = _Rules(policy)
    for r in records:
        if r[0] == "x":
            rules.exposure(r)
        elif r[4] != "other":
            rules.event(r)
    return rules.out


def round_records(
    exposures: Sequence[Exposure], events: Sequence[Event], window_s: float | Mapping[str, float]
) -> list[list[str]]:
    """The records of one aggregation round that reads all of these entries at once, in the
    aggregator's order (exposures by ``ts``, then events by ``ts``; ties in arrival order). Every
    event needs its ``ts`` here (the stream id's time is the fallback only inside the aggregator)."""
    out: list[list[str]] = []
    for _, _, x in sorted((x.ts, i, x) for i, x in enumerate(exposures)):
        if not x.experience:
            window = 0.0
        else:
            window = float(window_s[x.experience] if isinstance(window_s, Mapping) else window_s)
        record = exposure_record(x, window)
        record[3] = visitor_key_prefix(x.visitor_id) if x.visitor_id else ""
        out.append(record)
    timed = [(e.ts, i, e) for i, e in enumerate(events)]
    if any(ts is None for ts, _, _ in timed):
        raise ValueError("round_records needs every event's ts")
    for _, i, e in sorted(timed, key=lambda item: (item[0], item[1])):
        record = event_record(e, f"{i}-0")
        record[3] = visitor_key_prefix(e.visitor_id)
        out.append(record)
    return out

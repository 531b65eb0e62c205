"""A seeded simulation of visitors, the bundled training CSV, and the demo segment model.

The demo needs a model that behaves like a real one without anyone's real visitors. So
:func:`generate_demo_training_data` simulates them: it builds :class:`~personalization.types.Visitor`
values (arrivals drawn by :mod:`personalization.demo.visitors`, as ``vary simulate``'s are) and
:class:`~personalization.types.Profile` values the way the API and the profile store would, turns
each into a feature row with the same :func:`~personalization.decision.features.build_features` that serving
uses, and draws the three demo segments from logistic ground-truth rules:

* ``price_sensitive`` rises with a ``sale`` or ``coupon`` campaign, a coupon-site referrer, mobile;
* ``high_intent`` rises with page views, visits, and direct (unreferred, untagged) traffic;
* ``loyal`` rises with conversions, days since first seen, and the number of channels used.

The rows are written once to ``personalization/demo/training.csv`` (:func:`write_demo_csv`) and
shipped with the package; :func:`train_demo_model` trains on that file, so every install gets the
same demo model from the same data. The CSV layout (:func:`read_training_csv`) is also what
``vary train`` reads: a ``ts`` column (Unix seconds), one column per base feature (empty cell =
feature absent), and one ``segment:<name>`` 0/1 column per segment.
"""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Mapping, Sequence
from pathlib import Path

from personalization.decision.features import FEATURE_NAMES, FeatureRow, build_features
from personalization.models.segment_model import ModelCard, save_model, train_segment_model
from personalization.demo.visitors import COUPON_SITES, TrafficMix, VisitorMix, draw_arrival
from personalization.types import Profile, Visitor

__all__ = [
    "DEMO_SEGMENTS",
    "DEMO_CSV",
    "CATEGORICAL_FEATURES",
    "generate_demo_training_data",
    "write_training_csv",
    "write_demo_csv",
    "read_training_csv",
    "train_demo_model",
]

#: The segments the demo model scores, in the order of the CSV's label columns.
DEMO_SEGMENTS: tuple[str, ...] = ("price_sensitive", "high_intent", "loyal")

#: The bundled training data (4,000 simulated visitors), shipped as package data.
DEMO_CSV: Path = Path(__file__).parent / "training.csv"

#: Feature columns whose cells stay strings when read back; every other feature column is a number.
CATEGORICAL_FEATURES: frozenset[str] = frozenset(
    {"channel", "device", "country", "referrer_domain", "utm_source", "utm_medium", "utm_campaign"}
)

TS_COLUMN = "ts"
LABEL_PREFIX = "segment:"

_DAY = 86_400.0
#: The simulated window ends at 2025-06-01T00:00:00Z and spans eight weeks.
_END = 1_748_736_000.0
_SPAN_DAYS = 56

_SEARCH_SITES = ("google.com", "bing.com", "duckduckgo.com")
_SOCIAL_SITES = ("facebook.com", "instagram.com", "t.co")


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


#: How the demo training population arrives (shares per source and campaign).
DEMO_TRAFFIC = TrafficMix(
    email_campaigns={"sale": 0.4, "loyalty": 0.35, "brand": 0.25},
    web_sources={"direct": 0.30, "organic": 0.26, "paid_search": 0.13, "social": 0.13,
                 "coupon": 0.09, "display": 0.05, "push": 0.0},
    app_sources={"direct": 0.50, "organic": 0.0, "paid_search": 0.10, "social": 0.15,
                 "coupon": 0.05, "display": 0.05, "push": 0.15},
    paid_search_campaigns={"brand": 0.5, "sale": 0.35, "spring_launch": 0.15},
    social_campaigns={"sale": 0.45, "brand": 0.3, "spring_launch": 0.25},
    search_query="shoes",
)


#: The demo training population: :data:`DEMO_TRAFFIC`, 4 % of visitors without a known device.
DEMO_VISITORS = VisitorMix(traffic=DEMO_TRAFFIC, no_device_share=0.04)


def _visitor(rng: random.Random, index: int, seed: int) -> Visitor:
    arrival = draw_arrival(rng, DEMO_VISITORS)
    return Visitor(
        id=f"sim-{seed}-{index:05d}",
        channel=arrival.channel,  # type: ignore[arg-type]  # one of the Channel literals
        device=arrival.device,
        country=arrival.country,
        referrer=arrival.referrer,
        utm=arrival.utm,
    )


def _profile(rng: random.Random, visitor: Visitor, now: float) -> Profile:
    returning = {"email": 0.9, "ios": 0.75, "android": 0.75}.get(visitor.channel, 0.5)
    if rng.random() >= returning:
        first_seen = now - rng.uniform(0, 600) if rng.random() < 0.5 else None
        return Profile(first_seen=first_seen, last_seen=first_seen)
    visits = 1 + int(rng.expovariate(1 / 6))
    page_views = sum(1 + int(rng.expovariate(1 / 3)) for _ in range(min(visits, 60)))
    conversion_rate = rng.betavariate(1, 12)
    conversions = sum(rng.random() < conversion_rate for _ in range(visits))
    days = min(720.0, rng.expovariate(1 / 80) + 2.0 * visits)
    others = [c for c in ("web", "ios", "android", "email") if c != visitor.channel]
    extra = min(len(others), int(rng.expovariate(1 / 0.6) + visits / 15))
    channels = (visitor.channel, *rng.sample(others, extra))
    return Profile(
        visits=visits,
        page_views=page_views,
        conversions=conversions,
        first_seen=now - days * _DAY,
        last_seen=now - rng.uniform(0.1, min(days, 30.0)) * _DAY,
        channels=channels,
    )


def _labels(row: FeatureRow) -> dict[str, float]:
    """The ground truth: P(segment) for one feature row."""
    campaign = row.get("utm_campaign")
    referrer = row.get("referrer_domain")
    direct = referrer is None and "utm_source" not in row
    visits = float(row["visits"])
    log_page_views = float(row["log_page_views"])
    conversions = float(row["conversions"])
    days = float(row.get("days_since_first_seen", 0.0))
    channels_used = float(row["channels_used"])
    price = (
        -2.4
        + 2.6 * (campaign == "sale")
        + 2.0 * (campaign == "coupon")
        + 2.2 * (referrer in COUPON_SITES)
        + 1.1 * (row.get("device") == "mobile")
        + 0.5 * (referrer in _SOCIAL_SITES)
        - 0.2 * min(conversions, 6.0)
    )
    intent = (
        -3.4
        + 1.1 * log_page_views
        + 0.06 * min(visits, 30.0)
        + 1.1 * direct
        + 0.4 * (referrer in _SEARCH_SITES)
        - 0.5 * (referrer in _SOCIAL_SITES)
    )
    loyal = (
        -3.4
        + 0.8 * min(conversions, 8.0)
        + 0.01 * min(days, 365.0)
        + 0.7 * max(channels_used - 1.0, 0.0)
        + 0.5 * (row["channel"] == "email")
    )
    return {
        "price_sensitive": _sigmoid(price),
        "high_intent": _sigmoid(intent),
        "loyal": _sigmoid(loyal),
    }


def generate_demo_training_data(
    n: int = 4000, seed: int = 7
) -> tuple[list[FeatureRow], dict[str, list[int]], list[float]]:
    """``n`` simulated visits over eight weeks: feature rows, 0/1 labels per segment, timestamps.

    Rows come in time order. The same ``n`` and ``seed`` give the same data on every platform
    (only :mod:`random` is used, no numpy).
    """
    rng = random.Random(seed)
    start = _END - _SPAN_DAYS * _DAY
    timestamps = sorted(float(round(rng.uniform(start, _END))) for _ in range(n))
    rows: list[FeatureRow] = []
    labels: dict[str, list[int]] = {name: [] for name in DEMO_SEGMENTS}
    for index, now in enumerate(timestamps):
        visitor = _visitor(rng, index, seed)
        row = build_features(visitor, _profile(rng, visitor, now), now)
        rows.append(row)
        for name, p in _labels(row).items():
            labels[name].append(int(rng.random() < p))
    return rows, labels, timestamps


def _cell(value: float | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    number = float(value)
    # Whole numbers without ".0"; anything else as the shortest repr that reads back exactly.
    return str(int(number)) if number.is_integer() and abs(number) < 1e15 else repr(number)


def write_training_csv(
    path: Path,
    rows: Sequence[Mapping[str, float | str]],
    labels: Mapping[str, Sequence[int]],
    timestamps: Sequence[float] | None,
) -> None:
    """Write training data in the layout :func:`read_training_csv` reads.

    Columns: ``ts`` (when ``timestamps`` is given), the base features (``FEATURE_NAMES`` order, then
    any other feature seen in ``rows``, sorted), then ``segment:<name>`` per segment. A feature absent
    from a row is an empty cell, so empty strings cannot be stored as categorical values.
    """
    extra = sorted({key for row in rows for key in row} - set(FEATURE_NAMES))
    features = [*FEATURE_NAMES, *extra]
    header = ([TS_COLUMN] if timestamps is not None else []) + features
    header += [LABEL_PREFIX + name for name in labels]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(header)
        for i, row in enumerate(rows):
            line = [_cell(timestamps[i])] if timestamps is not None else []
            line += [_cell(row.get(name)) for name in features]
            line += [str(int(values[i])) for values in labels.values()]
            writer.writerow(line)


def write_demo_csv(path: Path = DEMO_CSV, n: int = 4000, seed: int = 7) -> Path:
    """Generate the demo data and write it to ``path`` (by default the bundled CSV)."""
    rows, labels, timestamps = generate_demo_training_data(n, seed)
    write_training_csv(path, rows, labels, timestamps)
    return path


def read_training_csv(
    path: Path,
) -> tuple[list[FeatureRow], dict[str, list[int]], list[float] | None]:
    """Read a training CSV back into ``(rows, labels, timestamps)``.

    Empty cells are absent features; :data:`CATEGORICAL_FEATURES` stay strings; every other feature
    column must hold numbers. ``timestamps`` is ``None`` when the file has no ``ts`` column.
    Raises :class:`ValueError` naming the line and column of a cell it cannot read.
    """
    with Path(path).open(newline="", encoding="utf-8") as file:
        reader = csv.reader(file)
        header = next(reader, None)
        if not header:
            raise ValueError(f"{path}: empty file, expected a header row")
        has_ts = TS_COLUMN in header
        segments = [c.removeprefix(LABEL_PREFIX) for c in header if c.startswith(LABEL_PREFIX)]
        rows: list[FeatureRow] = []
        labels: dict[str, list[int]] = {name: [] for name in segments}
        timestamps: list[float] = []
        for line_no, line in enumerate(reader, start=2):
            if not line:
                continue
            if len(line) != len(header):
                raise ValueError(
                    f"{path}:{line_no}: {len(line)} cells, the header has {len(header)}"
                )
            row: FeatureRow = {}
            for column, cell in zip(header, line):
                try:
                    if column == TS_COLUMN:
                        timestamps.append(float(cell))
                    elif column.startswith(LABEL_PREFIX):
                        label = int(cell)
                        if label not in (0, 1):
                            raise ValueError(f"expected 0 or 1, got {cell!r}")
                        labels[column.removeprefix(LABEL_PREFIX)].append(label)
                    elif cell == "":
                        continue
                    elif column in CATEGORICAL_FEATURES:
                        row[column] = cell
                    else:
                        row[column] = float(cell)
                except ValueError as exc:
                    raise ValueError(f"{path}:{line_no}: column {column!r}: {exc}") from None
            rows.append(row)
    return rows, labels, (timestamps if has_ts else None)


def train_demo_model(directory: Path, *, created_at: float | None = None) -> ModelCard:
    """Train the demo segment model on the bundled CSV, save it in ``directory`` as active."""
    rows, labels, timestamps = read_training_csv(DEMO_CSV)
    pipeline, card = train_segment_model(rows, labels, timestamps, created_at=created_at)
    save_model(pipeline, card, Path(directory))
    return card

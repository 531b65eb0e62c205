"""``vary export``, ``vary trim`` and ``vary simulate``: the data commands behind :mod:`api.cli.main`.

Like every command (:mod:`api.cli.common`), each takes the :class:`Settings` and the parsed
arguments and returns an exit code (0 ok, 1 the work failed, 2 a usage or setup problem).

* ``vary export --since D --until D --out DIR`` reads the streams in ``VARY_REDIS_URL`` and writes
  Parquet partitioned by date (:mod:`personalization.measurement.export`). It does not start the embedded Valkey
  itself: starting it on a data dir a running ``vary serve`` uses would stop that server's Valkey.
* ``vary simulate --visitors N`` drives demo traffic through a *running* server's HTTP API
  (:mod:`personalization.demo.simulation`), so what it measures is what production would measure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from datetime import UTC, date, datetime
from pathlib import Path

import msgspec
from redis.exceptions import RedisError

from api.cli.common import err
from api.redis_client import async_redis
from api.settings import Settings
from personalization.demo.harm import Harm, parse_harm

__all__ = [
    "add_data_parsers",
    "export_command",
    "trim_command",
    "simulate_command",
    "delivery_key",
    "default_base_url",
]


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def _harm(text: str) -> Harm:
    """``--harm``'s value, or argparse's error with what is wrong."""
    try:
        return parse_harm(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_data_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``export``, ``trim`` and ``simulate`` to the ``vary`` subcommands."""
    trim = sub.add_parser(
        "trim",
        help="trim exposure and event stream entries older than N days (never what a consumer still needs)",
        description=(
            "One retention pass over every exposure and event stream partition: XTRIM MINID at the "
            "earlier of now - DAYS and the oldest entry a consumer group (aggregator, sinks) has not "
            "acknowledged. Export what you want to keep first (vary export). With "
            "VARY_STREAM_RETENTION_DAYS set, the aggregator does this every VARY_STREAM_TRIM_EVERY_S."
        ),
    )
    trim.add_argument("--days", type=float, help="keep this many days (default: VARY_STREAM_RETENTION_DAYS)")
    export = sub.add_parser(
        "export",
        help="write exposures and events as Parquet partitioned by date (DuckDB, Spark, warehouses)",
        description=(
            "Reads vary:exposures and vary:events from VARY_REDIS_URL and writes "
            "DIR/exposures/date=YYYY-MM-DD/part-0.parquet and DIR/events/date=…/part-0.parquet for the "
            "UTC dates SINCE … UNTIL (both included). Re-exporting a range replaces its files."
        ),
    )
    export.add_argument("--since", type=_date, required=True, help="first UTC date (YYYY-MM-DD)")
    export.add_argument("--until", type=_date, help="last UTC date, included (default: today)")
    export.add_argument("--out", required=True, help="output directory")
    simulate = sub.add_parser(
        "simulate",
        help="drive realistic demo traffic with known effects through a running server's HTTP API",
        description=(
            "Simulated visitors (seeded) on web, iOS, Android and email: personalize heroHome, "
            "bannerShipping and bannerNewsletter, then page views, clicks, tasks, purchases, signups and "
            "surveys. Planted effects: on banner-shipping-test, variant 1 makes price-sensitive visitors "
            "purchase --lift more often (default 20%%); hero-sale's personalized visitors (outside its "
            "holdout) purchase --personalization-lift more often than its holdout (default from the power "
            "calculation in docs/measurement.md)."
        ),
    )
    simulate.add_argument("--visitors", type=int, default=1000, help="visitors to simulate (default 1000)")
    simulate.add_argument("--base-url", help="the Vary API (default http://<VARY_HOST>:<VARY_PORT>, i.e. "
                                             "http://127.0.0.1:8000)")
    simulate.add_argument("--key", help="delivery key (default: VARY_DELIVERY_KEYS, else <data_dir>/keys.json)")
    simulate.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same visitors")
    simulate.add_argument("--concurrency", type=int, default=8, help="visitors in flight at once (default 8)")
    simulate.add_argument("--lift", type=float, default=0.2,
                          help="planted relative purchase lift of banner-shipping-test variant 1 for "
                               "price-sensitive visitors (default 0.2)")
    simulate.add_argument("--personalization-lift", type=float, default=None,
                          help="planted relative purchase lift of hero-sale's treated visitors over its holdout "
                               "(default: the demo's power calculation, see docs/measurement.md)")
    simulate.add_argument("--harm", type=_harm, action="append", default=[], metavar="METRIC:EXPERIENCE:VARIANT:EFFECT",
                          help="plant harm so a guardrail can catch it: visitors shown that variant answer worse, "
                               "a share EFFECT (0-1] of their answers made bad; METRIC is csat, task_success, nps, "
                               "ces, goal:purchase or goal:signup; e.g. csat:banner-shipping-test:2:0.5 "
                               "(repeatable)")


# --------------------------------------------------------------------------------------------- export


def export_command(settings: Settings, args: argparse.Namespace) -> int:
    """``vary export``: Parquet files of the streams for a date range; prints what it wrote."""
    from personalization.measurement.export import ParquetUnavailable, describe, export_streams

    until: date = args.until or datetime.now(UTC).date()
    since: date = args.since
    if since > until:
        err(f"--since {since} is after --until {until}")
        return 2
    if not settings.redis_url:
        err(
            "VARY_REDIS_URL is not set: export reads the exposure and event streams from the Redis "
            "`vary serve` uses (with the embedded Valkey, the URL it printed at start)"
        )
        return 2

    async def run():  # noqa: ANN202 - an ExportReport
        assert settings.redis_url
        redis = async_redis(settings)  # one server or a cluster
        try:
            return await export_streams(redis, Path(args.out), since, until, partitions=settings.stream_partitions)
        finally:
            await redis.aclose()

    try:
        report = asyncio.run(run())
    except ParquetUnavailable as exc:  # the lean install (`make run`) has no pyarrow
        err(str(exc))
        return 2
    except (OSError, RedisError) as exc:
        err(f"export failed: {exc}")
        return 1
    from personalization.measurement.export_erasure import remember_export_dir

    remember_export_dir(settings.data_dir, Path(args.out))  # so an erase rewrites these files too
    print(describe(report))
    return 0


def trim_command(settings: Settings, args: argparse.Namespace) -> int:
    """``vary trim``: one retention pass (personalization/store/retention.py); prints what each stream lost."""
    days = args.days if args.days is not None else settings.stream_retention_days
    if days is None or days <= 0:
        err("give --days N (N > 0) or set VARY_STREAM_RETENTION_DAYS: how many days of entries to keep")
        return 2
    if not settings.redis_url:
        err("VARY_REDIS_URL is not set: trim works on the Redis `vary serve` uses")
        return 2
    from api.runtime import stream_retention

    async def run():  # noqa: ANN202 - a list of TrimResult
        redis = async_redis(settings)
        try:
            retention = stream_retention(msgspec.structs.replace(settings, stream_retention_days=days), redis)
            assert retention is not None
            return await retention.trim_once()
        finally:
            await redis.aclose()

    try:
        results = asyncio.run(run())
    except (OSError, RedisError) as exc:
        err(f"trim failed: {exc}")
        return 1
    for result in results:
        held = f" (held back by consumer group {result.held_by!r})" if result.held_by else ""
        cut_at = datetime.fromtimestamp(int(result.cutoff.split("-")[0]) / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        print(f"{result.stream}: {result.trimmed} entries before {cut_at} (id {result.cutoff}) removed{held}")
    return 0


# ------------------------------------------------------------------------------------------- simulate


def default_base_url(settings: Settings) -> str:
    """The server this machine's settings describe; a wildcard bind address is reached on loopback."""
    host = settings.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def delivery_key(settings: Settings) -> str | None:
    """The first raw key of ``VARY_DELIVERY_KEYS`` (``sha256:`` digests cannot be sent), else the
    delivery key ``vary serve`` generated into ``<data_dir>/keys.json``."""
    for key in settings.delivery_keys:
        if not key.startswith("sha256:"):
            return key
    path = Path(settings.data_dir) / "keys.json"
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    key = stored.get("delivery") if isinstance(stored, dict) else None
    return key if isinstance(key, str) and key else None


def simulate_command(settings: Settings, args: argparse.Namespace) -> int:
    """``vary simulate``: demo traffic through the HTTP API; exit 1 when any request failed."""
    from personalization.demo.power import DEMO_PERSONALIZATION_LIFT
    from personalization.demo.simulation import Effects, format_summary, simulate

    if args.visitors < 0 or args.concurrency < 1:
        err("--visitors must be >= 0 and --concurrency >= 1")
        return 2
    lift = DEMO_PERSONALIZATION_LIFT if args.personalization_lift is None else args.personalization_lift
    if lift <= -1.0:
        err("--personalization-lift must be > -1 (a relative lift: 0.8 = +80 %)")
        return 2
    key = args.key or delivery_key(settings)
    if not key:
        err(
            f"no delivery key: pass --key, set VARY_DELIVERY_KEYS, or start `vary serve` once so it writes "
            f"{Path(settings.data_dir) / 'keys.json'}"
        )
        return 2
    base_url = args.base_url or default_base_url(settings)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request would drown the summary
    print(f"vary simulate: {args.visitors:,} visitors against {base_url} (seed {args.seed})", flush=True)
    summary = asyncio.run(
        simulate(
            base_url, key, args.visitors, seed=args.seed, concurrency=args.concurrency,
            effects=Effects(shipping_lift=args.lift, personalization_lift=lift, harms=tuple(args.harm)),
        )
    )
    print(format_summary(summary))
    if summary.errors:
        err(f"{summary.errors} request(s) failed; is `vary serve` running at {base_url}?")
        return 1
    return 0

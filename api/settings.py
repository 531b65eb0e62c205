"""Settings: the one place Vary reads its environment.

Everything else takes a :class:`Settings` (or the parts it needs) as an argument, so tests build
settings from a dict and nothing is read into module globals at import time. Every variable has the
prefix ``VARY_``; unknown ``VARY_*`` names are reported (a warning naming them, with the closest known
name), because a typo in a deployment should be loud, not silently ignored. They are not refused:
tools and examples read ``VARY_*`` names of their own (e.g. ``VARY_CONFORMANCE_DIR``). Names under an
installed plugin's prefix, ``VARY_<ENTRY POINT NAME>_`` (``VARY_EXAMPLE_CRM_TABLE`` for the plugin
``example``), are the plugin's own and are not reported (:func:`plugin_prefixes`).

``VARY_WORKER_SETTINGS_JSON`` is internal, not a setting: ``vary serve`` resolves its settings once
(flags, the embedded Valkey's URL) and hands them to uvicorn's worker processes as this one JSON
document (:func:`handed_to_workers`), which only :func:`worker_settings` reads. It is never
reported as unknown.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib.metadata import entry_points
from pathlib import Path

import msgspec

__all__ = [
    "WORKER_SETTINGS_VARIABLE",
    "Settings",
    "SettingsError",
    "load_settings",
    "unknown_variables",
    "plugin_prefixes",
    "encode_worker_settings",
    "worker_settings",
    "handed_to_workers",
]

log = logging.getLogger("vary.settings")

#: Internal: the resolved :class:`Settings` of ``vary serve`` for its workers (see the module docstring).
WORKER_SETTINGS_VARIABLE = "VARY_WORKER_SETTINGS_JSON"


class SettingsError(ValueError):
    """A ``VARY_*`` variable is malformed or unknown; the message names it."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Vary's configuration. Defaults run the embedded demo: no environment needed at all."""

    host: str = "127.0.0.1"
    port: int = 8000
    #: ``vary serve`` processes (uvicorn with uvloop + httptools). 2, chosen by measurement on the
    #: 2-core reference machine (bench ``servers`` section, docs/performance.md); one per core.
    workers: int = 2
    data_dir: Path = Path(".vary")
    #: ``None`` → start the embedded Valkey server under ``data_dir``.
    redis_url: str | None = None
    #: A path to a ``contentful space export`` file, or the word ``contentful`` for the live API.
    content_source: str | None = None
    contentful_space_id: str | None = None
    contentful_access_token: str | None = None
    contentful_environment: str = "master"
    contentful_api_url: str = "cdn.contentful.com"
    contentful_https: bool = True
    #: Content Preview API token: enables ``preview=true`` for admin keys (drafts before publishing).
    contentful_preview_token: str | None = None
    contentful_preview_api_url: str = "preview.contentful.com"
    #: Secret of Contentful's signed webhook requests; without it ``/v1/webhooks/contentful`` refuses all.
    contentful_webhook_secret: str | None = None
    #: Seconds between incremental syncs (0 = only at start and on webhooks).
    content_poll_s: float = 30.0
    #: How deep entry links are resolved into the served fields.
    content_link_depth: int = 2
    #: How long a compiled preview snapshot is reused.
    preview_cache_s: float = 5.0
    delivery_keys: tuple[str, ...] = ()
    admin_keys: tuple[str, ...] = ()
    log_level: str = "info"
    #: ``json`` (one JSON object per line), ``text`` (key=value for a terminal) or ``auto``: text on a
    #: terminal, JSON otherwise (``api/logging_config.py``).
    log_format: str = "auto"
    #: One ``vary.access`` line per request: method, route template, status, duration (no query string).
    access_log: bool = True
    #: ``POST /v1/personalize`` and ``/v1/events`` on the lean path (``api/http/hot_path.py``); ``false``: through
    #: Litestar's layers like every other route (same answers, more CPU per request).
    hot_path: bool = True
    #: ``vary serve`` answers those routes in its HTTP protocol, beneath ASGI, when the app's layers
    #: allow it (``api/http/direct.py``); ``false``: through the ASGI stack (same answers).
    direct_path: bool = True
    #: Longest a decision waits for the visitor's profile before deciding without it.
    profile_timeout_s: float = 0.05
    #: Seconds between refreshes of the shared serving state (guardrail pauses, phases): how soon a
    #: pause or a resume reaches every worker (one ``HGETALL`` per refresh, none per request).
    state_refresh_s: float = 2.0
    #: Share of visitors who see the baseline of every experience (0 ≤ s ≤ 0.5), when the space's
    #: ``varySettings`` entry sets none (``personalization/decision/global_holdout.py``).
    global_holdout: float = 0.0
    #: Bounded in-memory exposure queue; the writer flushes in batches of up to this many.
    exposure_queue_size: int = 50_000
    exposure_batch_size: int = 500
    max_body_bytes: int = 1_048_576
    #: Slow clients (``api/server.py``): a request's headers must be complete this many seconds after
    #: it began (or after a new connection opened), its body this many seconds after the headers;
    #: else 408 and the connection is closed. Totals, so a trickle of bytes cannot extend them.
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    #: Connections plus running requests per worker before uvicorn answers 503 (0 = no limit).
    max_connections: int = 1000
    #: Requests per second per API key on the delivery routes (0 = no limit); 429 + Retry-After above.
    rate_limit_delivery_per_s: int = 5000
    #: Requests per second per API key on the admin routes (0 = no limit).
    rate_limit_admin_per_s: int = 50
    #: Origins allowed to call the delivery routes from a browser (CORS); ``*`` allows any. Admin
    #: routes never answer CORS.
    cors_origins: tuple[str, ...] = ()
    #: HMAC secret of exposure tokens (``"exposures": "on_view"``), the same on every worker (≥ 32
    #: random characters). Unset: derived from the admin and delivery key digests
    #: (``personalization/store/exposure_tokens.py``), so rotating a key also invalidates open tokens.
    exposure_token_secret: str | None = None
    #: HMAC secret shared with the customer's backend, which signs identity tokens: an event's
    #: ``user_id`` from a delivery key links ids to a person only with a valid token
    #: (``personalization/store/identity.py``). Unset: only the admin key may send a ``user_id``.
    identity_secret: str | None = None
    #: Serve the demo site at ``/demo`` with the first raw delivery key written into the page (the
    #: ``make run`` demo). Turn it off in production: ``VARY_DEMO_PAGE=false``.
    demo_page: bool = True
    #: Bound of each worker's exposure spool file (used while Redis is down or the queue is full).
    spool_max_bytes: int = 256 * 1024 * 1024
    #: Run the measurement consumer (aggregation) inside each API worker.
    aggregate: bool = True
    #: A consumer's pending aggregation entries idle this long are claimed (``XAUTOCLAIM``) by another
    #: one, checked every ``aggregate_claim_every_s``: how soon the work of a dead consumer resumes.
    aggregate_claim_idle_ms: int = 300_000
    aggregate_claim_every_s: float = 60.0
    #: Guardrails (``personalization/measurement/guardrail_monitor.py``), checked where aggregation runs:
    #: seconds between checks, the family-wise level split over each experience's variants × guardrails,
    #: and the observations each arm needs before its test runs.
    guardrail_check_s: float = 10.0
    guardrail_alpha: float = 0.05
    guardrail_min_sample: int = 200
    #: Train the demo segment model on first start when no model exists.
    train_demo_model: bool = True
    #: Exposure and event streams are split into this many partitions by visitor
    #: (``personalization/store/partitions.py``); every writer, consumer and sink of one deployment must agree.
    stream_partitions: int = 1
    #: Trim exposure and event stream entries older than this many days, never past what a consumer
    #: group still needs (``personalization/store/retention.py``); 0 keeps everything. Runs beside the
    #: aggregator (in-process or ``vary aggregate``) every ``stream_trim_every_s`` seconds.
    stream_retention_days: float = 0.0
    stream_trim_every_s: float = 300.0
    #: Treat ``VARY_REDIS_URL`` as a Redis Cluster seed (also implied by a ``redis+cluster://`` URL).
    redis_cluster: bool = False
    #: Built-in webhook sink (personalization/sinks/webhook.py): batched POSTs signed with the secret.
    sink_webhook_url: str | None = None
    sink_webhook_secret: str | None = None
    #: Built-in Segment sink (personalization/sinks/segment.py): track calls with this write key.
    sink_segment_write_key: str | None = None
    sink_segment_url: str = "https://api.segment.io"
    #: Deliveries of one batch before its entries go to ``vary:sinks:dead:<name>``.
    sink_max_attempts: int = 5
    sink_batch_size: int = 100
    #: First retry delay; doubles with each attempt (at most 30 s).
    sink_backoff_s: float = 0.5
    #: Run the sink runners inside each API worker (``vary sinks`` runs them as their own process).
    sinks_in_process: bool = True
    #: Signs dashboard session cookies; the same on every worker. Unset: derived from the admin key
    #: digests, so rotating the admin keys signs everyone out of the dashboard.
    session_secret: str | None = None
    #: Ed25519 private key (base64 of the 32-byte seed) that signs ``GET /v1/bundle``; the same on every
    #: worker. Unset: generated once and kept in ``<data_dir>/bundle_signing.key`` (api/bundle_signing.py).
    bundle_signing_key: str | None = None
    #: Optional AES-GCM key (base64 of 16, 24 or 32 bytes) that encrypts the bundle's body, as
    #: GrowthBook's encrypted payloads: hides rules from casual readers only (docs/security.md).
    bundle_encryption_key: str | None = None
    #: Each new bundle version POSTed once, signed with the secret, to this URL (an edge KV updater):
    #: personalization/sinks/bundle_versions.py.
    bundle_webhook_url: str | None = None
    bundle_webhook_secret: str | None = None


_FIELDS: dict[str, str] = {f"VARY_{name.upper()}": name for name in Settings.__struct_fields__}


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name}={value!r}: expected true or false")


def plugin_prefixes() -> tuple[str, ...]:
    """``VARY_<PLUGIN>_`` for every installed ``vary.plugins`` entry point: a plugin's own variables.

    Plugins read their configuration from the environment under their entry-point name (the example
    plugin ``example`` reads ``VARY_EXAMPLE_CRM_TABLE``). Only the entry points' *names* are read here,
    nothing is imported, so settings stay cheap to load and a broken plugin cannot fail them.
    """
    names = (ep.name for ep in entry_points(group="vary.plugins"))
    return tuple(f"VARY_{re.sub(r'[^A-Za-z0-9]+', '_', name).upper()}_" for name in names)


def unknown_variables(environ: Mapping[str, str], plugin_prefixes: Sequence[str] = ()) -> list[str]:
    """``VARY_*`` names in ``environ`` that are no setting: the internal worker variable and names
    under a plugin's prefix (:func:`plugin_prefixes`) aside."""
    prefixes = tuple(plugin_prefixes)
    return sorted(
        name
        for name in environ
        if name.startswith("VARY_")
        and name not in _FIELDS
        and name != WORKER_SETTINGS_VARIABLE
        and not name.startswith(prefixes)
    )


def _report_unknown(names: list[str]) -> None:
    """One warning naming every unknown variable, each with the closest setting name if one is close."""
    described = []
    for name in names:
        close = difflib.get_close_matches(name, _FIELDS, n=1, cutoff=0.8)
        described.append(f"{name} (did you mean {close[0]}?)" if close else name)
    log.warning("unknown VARY_* environment variable(s), ignored: %s", ", ".join(described))


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read settings from ``environ`` (default: ``os.environ``). Empty values count as unset.
    Unknown ``VARY_*`` names are reported in a warning (see the module docstring)."""
    env = os.environ if environ is None else environ
    unknown = unknown_variables(env, plugin_prefixes())
    if unknown:
        _report_unknown(unknown)
    values: dict[str, object] = {}
    for name, raw in env.items():
        if not name.startswith("VARY_") or raw == "":
            continue
        field = _FIELDS.get(name)
        if field is None:
            continue  # reported above; tools' own VARY_* names (e.g. VARY_CONFORMANCE_DIR) pass through
        default = getattr(Settings(), field)
        try:
            if isinstance(default, bool):
                values[field] = _bool(name, raw)
            elif isinstance(default, int):
                values[field] = int(raw)
            elif isinstance(default, float):
                values[field] = float(raw)
            elif isinstance(default, tuple):
                values[field] = _csv(raw)
            elif isinstance(default, Path):
                values[field] = Path(raw)
            else:
                values[field] = raw
        except ValueError as exc:
            raise SettingsError(f"{name}={raw!r}: {exc}") from None
    settings = Settings(**values)  # type: ignore[arg-type]
    if settings.content_source == "contentful" and not (
        settings.contentful_space_id and settings.contentful_access_token
    ):
        raise SettingsError(
            "VARY_CONTENT_SOURCE=contentful needs VARY_CONTENTFUL_SPACE_ID and VARY_CONTENTFUL_ACCESS_TOKEN"
        )
    if settings.sink_webhook_url and not settings.sink_webhook_secret:
        raise SettingsError("VARY_SINK_WEBHOOK_URL needs VARY_SINK_WEBHOOK_SECRET (requests are signed with it)")
    if settings.bundle_webhook_url and not settings.bundle_webhook_secret:
        raise SettingsError("VARY_BUNDLE_WEBHOOK_URL needs VARY_BUNDLE_WEBHOOK_SECRET (requests are signed with it)")
    if settings.sink_max_attempts < 1 or settings.sink_batch_size < 1:
        raise SettingsError("VARY_SINK_MAX_ATTEMPTS and VARY_SINK_BATCH_SIZE must be at least 1")
    if settings.stream_retention_days < 0 or settings.stream_trim_every_s <= 0:
        raise SettingsError(
            f"VARY_STREAM_RETENTION_DAYS={settings.stream_retention_days:g} and VARY_STREAM_TRIM_EVERY_S="
            f"{settings.stream_trim_every_s:g}: expected a retention of 0 (keep everything) or more days, "
            "and an interval above 0 seconds"
        )
    if not 1 <= settings.stream_partitions <= 1024:
        raise SettingsError(f"VARY_STREAM_PARTITIONS={settings.stream_partitions}: expected 1-1024")
    if not 0.0 <= settings.global_holdout <= 0.5:
        raise SettingsError(f"VARY_GLOBAL_HOLDOUT={settings.global_holdout:g}: expected a share from 0 to 0.5")
    if not settings.state_refresh_s > 0:
        raise SettingsError(f"VARY_STATE_REFRESH_S={settings.state_refresh_s:g}: expected seconds above 0")
    if not 1 <= settings.port <= 65535:
        raise SettingsError(f"VARY_PORT={settings.port}: expected 1-65535")
    if settings.header_timeout_s <= 0 or settings.body_timeout_s <= 0 or settings.max_connections < 0:
        raise SettingsError(
            f"VARY_HEADER_TIMEOUT_S={settings.header_timeout_s:g}, VARY_BODY_TIMEOUT_S={settings.body_timeout_s:g}"
            f" and VARY_MAX_CONNECTIONS={settings.max_connections}: expected timeouts above 0 seconds and a"
            " connection limit of 0 (no limit) or more"
        )
    if settings.guardrail_check_s <= 0 or not 0 < settings.guardrail_alpha < 1 or settings.guardrail_min_sample < 1:
        raise SettingsError(
            f"VARY_GUARDRAIL_CHECK_S={settings.guardrail_check_s:g}, VARY_GUARDRAIL_ALPHA={settings.guardrail_alpha:g}"
            f" and VARY_GUARDRAIL_MIN_SAMPLE={settings.guardrail_min_sample}: expected an interval above 0 seconds,"
            " a level between 0 and 1 and a minimum sample of 1 or more"
        )
    return settings


def _encode_path(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    raise NotImplementedError(f"cannot encode {type(value).__name__}")


def _decode_path(kind: type, value: object) -> object:
    if kind is Path and isinstance(value, str):
        return Path(value)
    raise NotImplementedError(f"cannot decode {kind}")


_WORKER_ENCODER = msgspec.json.Encoder(enc_hook=_encode_path)
_WORKER_DECODER = msgspec.json.Decoder(Settings, dec_hook=_decode_path)


def encode_worker_settings(settings: Settings) -> str:
    """``settings`` as the JSON value of :data:`WORKER_SETTINGS_VARIABLE`."""
    return _WORKER_ENCODER.encode(settings).decode()


def worker_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings ``vary serve`` handed its workers in :data:`WORKER_SETTINGS_VARIABLE`; without it
    (a worker started by hand, e.g. ``uvicorn --factory api.cli.serve:worker_app``) :func:`load_settings`."""
    env = os.environ if environ is None else environ
    raw = env.get(WORKER_SETTINGS_VARIABLE)
    if not raw:
        return load_settings(env)
    try:
        return _WORKER_DECODER.decode(raw)
    except msgspec.DecodeError as exc:
        raise SettingsError(f"{WORKER_SETTINGS_VARIABLE} (internal, set by vary serve): {exc}") from None


@contextmanager
def handed_to_workers(settings: Settings) -> Iterator[None]:
    """Within the block, :data:`WORKER_SETTINGS_VARIABLE` holds ``settings`` for the worker processes
    started there (they inherit the environment); afterwards the variable is as it was."""
    previous = os.environ.get(WORKER_SETTINGS_VARIABLE)
    os.environ[WORKER_SETTINGS_VARIABLE] = encode_worker_settings(settings)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(WORKER_SETTINGS_VARIABLE, None)
        else:
            os.environ[WORKER_SETTINGS_VARIABLE] = previous

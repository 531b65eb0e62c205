"""The one place Vary builds its Redis clients: a single server or a Redis Cluster, from settings.

Why one factory: the API, ``vary aggregate`` and the admin commands must all reach the same store
the same way. A deployment says *cluster* once — ``VARY_REDIS_URL=redis+cluster://h1:6379,h2:6379``
or ``VARY_REDIS_CLUSTER=1`` with an ordinary ``redis://`` seed — and every process gets redis-py's
cluster client, which follows ``MOVED``/``ASK`` redirections and routes each command to the node that
owns its key's slot. The domain code stays the same because Vary's key layout already keeps every
multi-key operation inside one slot (per-visitor keys share the ``{visitor}`` tag, per-experience
aggregates the ``{experience}`` tag, stream partitions ``{p}``).

URL forms accepted (credentials and TLS as in redis-py's own URLs):

=========================================================  ==========================================
``redis://host:6379/0``                                    one server (``VARY_REDIS_CLUSTER`` unset)
``redis://host:6379`` + ``VARY_REDIS_CLUSTER=1``           cluster, seeded from that node
``redis+cluster://h1:6379,h2:6379,h3:6379``                cluster, seeded from every listed node
``rediss+cluster://user:secret@h1:6380,h2:6380``           the same over TLS, with ACL credentials
=========================================================  ==========================================

A cluster has only database 0, so a database number other than 0 in a cluster URL is refused.
"""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import parse_qs, unquote

import redis
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection

try:  # the C parser redis[hiredis] installs; without it redis-py packs in Python, as before
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - hiredis is a dependency
    _hiredis_pack = None

from api.settings import Settings, SettingsError

__all__ = ["ClusterSeed", "async_redis", "cluster_seed", "is_cluster", "sync_redis"]

_CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True, "valkey+cluster": False}
_PLAIN_SCHEMES = {"redis": False, "rediss": True, "valkey": False, "valkeys": True}

#: What the long-running processes use: a stuck node must not hang a request or a consumer forever.
SERVER_OPTIONS: dict[str, Any] = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0, "health_check_interval": 30}


class _HiredisPacking:
    """Commands packed into RESP by hiredis' C packer instead of redis-py's Python loop.

    redis-py's asyncio connections pack every argument in Python (an encoder call and a bytes join
    each): an exposure batch's script call carries dozens of arguments, and packing was 12 % of a
    worker's CPU under load (issue 22, cProfile). ``hiredis.pack_command`` writes the same bytes
    (checked in tests/api/test_redis_client.py) about 8x faster; redis-py's own blocking client uses
    it the same way. Arguments it does not take (``None``, ``bool``, ``bytearray``) go through
    redis-py's packer, which raises the same ``DataError`` it always did.

    A long command is packed :data:`PACK_WIDTH` arguments at a time, and the parts are handed to
    the socket as they are (``writelines``: no joined copy). hiredis copies every argument twice
    and the whole command twice more, so one exposure batch of ~1,200 arguments (~150 KB) took
    230 µs to pack, 120 µs in parts (issue 22, measured on a batch captured from the server);
    under load that was 4 % of a worker's CPU."""

    def pack_command(self, *args: Any) -> list[bytes | memoryview]:
        first = args[0]
        if isinstance(first, str):
            args = (*first.encode().split(), *args[1:])
        elif b" " in first:
            args = (*first.split(), *args[1:])
        try:
            if len(args) <= PACK_WIDTH:
                return [_hiredis_pack(args)]
            return _pack_in_parts(args)
        except TypeError:
            return super().pack_command(*args)  # type: ignore[misc]


#: Arguments packed by one hiredis call in a long command (64 to 256 measured the same).
PACK_WIDTH = 64


def _pack_in_parts(args: tuple[Any, ...]) -> list[bytes | memoryview]:
    """``*<n>`` and then each part's arguments as hiredis packs them, without the part's own ``*<k>``
    line: the same bytes as one call would write, in pieces."""
    parts: list[bytes | memoryview] = [b"*%d\r\n" % len(args)]
    for start in range(0, len(args), PACK_WIDTH):
        packed = _hiredis_pack(args[start : start + PACK_WIDTH])
        parts.append(memoryview(packed)[packed.index(b"\n") + 1 :])
    return parts


class HiredisConnection(_HiredisPacking, Connection):
    """TCP connection with C packing."""


class HiredisSSLConnection(_HiredisPacking, SSLConnection):
    """TLS connection with C packing."""


class HiredisUnixConnection(_HiredisPacking, UnixDomainSocketConnection):
    """Unix-socket connection with C packing."""


_C_PACKING: dict[type[Connection], type[Connection]] = {
    Connection: HiredisConnection,
    SSLConnection: HiredisSSLConnection,
    UnixDomainSocketConnection: HiredisUnixConnection,
}


def _pack_in_c(client: Redis) -> Redis:
    """``client``'s pool with the C-packing twin of the connection class redis-py chose for the URL
    (TCP, TLS or Unix socket); a class someone passed explicitly is left alone."""
    pool = client.connection_pool
    if _hiredis_pack is not None:
        pool.connection_class = _C_PACKING.get(pool.connection_class, pool.connection_class)
    return client


class ClusterSeed:
    """A parsed cluster URL: the seed nodes and the connection options shared by every node."""

    def __init__(self, nodes: list[tuple[str, int]], ssl: bool, username: str | None, password: str | None) -> None:
        self.nodes = nodes
        self.ssl = ssl
        self.username = username
        self.password = password

    def __repr__(self) -> str:  # never print the password
        return f"ClusterSeed(nodes={self.nodes!r}, ssl={self.ssl})"

    def options(self) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if self.ssl:
            options["ssl"] = True
        if self.username:
            options["username"] = self.username
        if self.password:
            options["password"] = self.password
        return options


def is_cluster(settings: Settings) -> bool:
    """Whether ``settings`` point at a Redis Cluster (the switch or a ``+cluster`` URL scheme)."""
    url = settings.redis_url or ""
    return settings.redis_cluster or url.split("://", 1)[0].lower() in _CLUSTER_SCHEMES


def cluster_seed(url: str) -> ClusterSeed:
    """Parse ``redis+cluster://[user:pass@]host:port[,host:port…][/0]`` (or a plain ``redis://`` seed).

    Raises :class:`~api.settings.SettingsError` naming ``VARY_REDIS_URL`` and what is wrong with it.
    """
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or (scheme not in _CLUSTER_SCHEMES and scheme not in _PLAIN_SCHEMES):
        known = ", ".join(f"{s}://" for s in [*_CLUSTER_SCHEMES, *_PLAIN_SCHEMES])
        raise SettingsError(f"VARY_REDIS_URL={_redacted(url)!r}: expected one of {known}")
    ssl = _CLUSTER_SCHEMES.get(scheme, _PLAIN_SCHEMES.get(scheme, False))
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    if path.strip("/") not in ("", "0"):
        raise SettingsError(f"VARY_REDIS_URL={_redacted(url)!r}: a cluster has only database 0, got /{path}")
    if "ssl_cert_reqs" in parse_qs(query):
        ssl = True
    username: str | None = None
    password: str | None = None
    if "@" in netloc:
        credentials, netloc = netloc.rsplit("@", 1)
        user, has_password, secret = credentials.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if has_password else None
    nodes: list[tuple[str, int]] = []
    for part in netloc.split(","):
        part = part.strip()
        if not part:
            continue
        if part.startswith("["):  # [::1]:6379
            host, _, port = part[1:].partition("]")
            port = port.removeprefix(":") or "6379"
        else:
            host, colon, port = part.rpartition(":")
            if not colon:
                host, port = part, "6379"
        try:
            number = int(port)
        except ValueError:
            raise SettingsError(f"VARY_REDIS_URL={_redacted(url)!r}: {part!r} has no valid port") from None
        if not host or not 1 <= number <= 65535:
            raise SettingsError(f"VARY_REDIS_URL={_redacted(url)!r}: {part!r} is not host:port")
        nodes.append((host, number))
    if not nodes:
        raise SettingsError(f"VARY_REDIS_URL={_redacted(url)!r}: no cluster node given")
    return ClusterSeed(nodes, ssl, username, password)


def async_redis(settings: Settings, **options: Any) -> Redis:
    """The asyncio client for ``settings.redis_url``: :class:`RedisCluster` for a cluster, else
    ``Redis.from_url``. ``options`` go to every connection (timeouts, ``decode_responses`` …).

    Typed as :class:`~redis.asyncio.Redis` because that is the interface the domain code is written
    against; the cluster client offers the same commands, routed by slot."""
    url = _url(settings)
    if not is_cluster(settings):
        return _pack_in_c(Redis.from_url(url, **options))
    seed = cluster_seed(url)
    client = RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in seed.nodes], **seed.options(), **options
    )
    return cast(Redis, client)


def sync_redis(settings: Settings, **options: Any) -> redis.Redis:
    """The blocking client, chosen like :func:`async_redis` (for CLI commands, tools and tests)."""
    url = _url(settings)
    if not is_cluster(settings):
        return redis.Redis.from_url(url, **options)
    seed = cluster_seed(url)
    client = redis.RedisCluster(
        startup_nodes=[redis.cluster.ClusterNode(host, port) for host, port in seed.nodes],
        **seed.options(),
        **options,
    )
    return cast(redis.Redis, client)


def _url(settings: Settings) -> str:
    if not settings.redis_url:
        raise SettingsError("VARY_REDIS_URL is not set")
    return settings.redis_url


def _redacted(url: str) -> str:
    """The URL with any password replaced, for error messages."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    credentials, host = rest.rsplit("@", 1)
    user = credentials.partition(":")[0]
    return f"{scheme}{sep}{user}:***@{host}"

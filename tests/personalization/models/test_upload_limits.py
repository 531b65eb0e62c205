"""Model files are held to bounds before they are unpacked, and versions to one safe shape (#17, 7).

A 300 KB zip whose ``schema.json`` unpacked to 300 MB took a worker from 387 MB to 962 MB; these
tests build such zips with :func:`zipfile` and check they are refused from the zip's directory alone,
quickly and without the memory, while the real models Vary trains stay far inside the bounds.
"""

from __future__ import annotations

import struct
import time
import tracemalloc
import zipfile
from io import BytesIO
from pathlib import Path

import pytest

from personalization.errors import InvalidInput
from personalization.models import archive
from personalization.models.files import (
    ModelLoadError,
    ModelTooLarge,
    load_trusted,
    model_version,
    read_model_files,
    write_model_files,
)
from personalization.models.segment_model import TRUSTED_TYPES, load_model
from personalization.models.versions import check_version, is_version
from tests.personalization.models.skops_files import MiB, zip_of


def _refusal(data: bytes) -> tuple[ModelTooLarge, float, int]:
    """The refusal of ``data``, how long it took, and the peak memory it allocated."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ModelTooLarge) as caught:
            load_trusted(data, TRUSTED_TYPES, "upload")
        return caught.value, time.perf_counter() - started, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_demo_model_is_far_inside_every_bound(model_dir: Path) -> None:
    directory = model_dir / "models"
    _, _, data, _ = read_model_files(directory, None)
    with zipfile.ZipFile(BytesIO(data)) as saved:
        members = saved.infolist()
    assert archive.directory_problem(data) is None and archive.members_problem(members) is None
    total = sum(m.file_size for m in members)
    assert len(members) * 20 < archive.MAX_MEMBERS
    assert total * 100 < archive.MAX_TOTAL_BYTES and max(m.file_size for m in members) * 100 < archive.MAX_MEMBER_BYTES
    load_model(directory)  # and it still loads


def test_a_300_mb_schema_in_a_small_zip_is_refused_unread() -> None:
    bomb = zip_of([("schema.json", 300 * MiB)])
    assert len(bomb) < 2 * MiB
    error, seconds, peak = _refusal(bomb)
    message = str(error)
    assert "upload" in message and "'schema.json'" in message and "314,572,800 bytes" in message
    assert isinstance(error, ModelLoadError)
    assert seconds < 1.0
    assert peak < 16 * MiB  # the old code read the whole member: peak above 300 MB


def test_highly_compressed_members_too_many_members_and_too_much_in_all_are_refused() -> None:
    ratio, _, _ = _refusal(zip_of([("schema.json", 100), ("1.npy", 8 * MiB)], chunk=b"\0" * MiB))
    assert "'1.npy'" in str(ratio) and "to 1" in str(ratio)

    many, _, _ = _refusal(zip_of([(f"{i}.npy", 1) for i in range(archive.MAX_MEMBERS + 1)]))
    assert "1,001 members" in str(many)

    # 1 MiB members are below the ratio floor; 65 of them pass every per-member bound.
    total, _, _ = _refusal(zip_of([(f"{i}.npy", MiB) for i in range(65)]))
    assert "in all" in str(total) and "'64.npy'" in str(total)


def test_the_directory_is_checked_before_zipfile_reads_it() -> None:
    data = bytearray(zip_of([("schema.json", 10)]))
    end = data.rfind(b"PK\x05\x06")
    struct.pack_into("<HH", data, end + 8, 60_000, 60_000)  # entries on this disk, entries in all
    error, _, _ = _refusal(bytes(data))
    assert "declares 60,000 members" in str(error)


@pytest.mark.parametrize(
    "version",
    [
        "seg-20261203181732-6a2ff76f",
        "pol-20261203183341-51b3d498",
        model_version("seg", {"x": 1}, 1_800_000_000.0),
        "v1",
        "A" * 128,
        "release_2.1-rc",
    ],
)
def test_versions_vary_generates_and_plain_names_fit(version: str) -> None:
    assert is_version(version) and check_version(version) == version


@pytest.mark.parametrize(
    "version",
    ["../../etc/passwd", "..", ".hidden", "-v", "a/b", "a\\b", "a b", "v1\n", "", "A" * 129, "é", None, 7],
)
def test_anything_else_is_invalid_input_naming_the_field(version: object) -> None:
    assert not is_version(version)
    with pytest.raises(InvalidInput) as caught:
        check_version(version, "card.version")
    assert [p.key for p in caught.value.problems] == ["card.version"]
    assert "is not a model version" in str(caught.value) and str(caught.value).startswith("card.version: ")


def test_a_trailing_newline_no_longer_names_a_model_file(tmp_path: Path) -> None:
    # The old pattern ended in ``$``, which matches before a final newline: "v1\n.skops" was written.
    with pytest.raises(ValueError, match="not a safe file name"):
        write_model_files(tmp_path, "v1\n", b"model", b"{}")
    with pytest.raises(ModelLoadError, match="not a model version"):
        read_model_files(tmp_path, "v1\n")
    assert list(tmp_path.iterdir()) == []

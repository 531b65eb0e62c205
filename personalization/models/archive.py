"""Bounds on a model file's zip, checked from its directory before any member is unpacked.

A skops file is a zip, and a zip says how big it is only when it is opened: a 300 KB upload whose
``schema.json`` unpacked to 300 MB took a worker from 387 MB to 962 MB. So before anything is read,
the zip's own directory is held to bounds far above any real Vary model and far below harm:

* the end-of-central-directory record (read from the last bytes, before :mod:`zipfile` builds one
  object per entry): at most :data:`MAX_DIRECTORY_BYTES` of directory and :data:`MAX_MEMBERS` entries;
* each member's declared size (:data:`MAX_MEMBER_BYTES`), their sum (:data:`MAX_TOTAL_BYTES`), and
  how much a member larger than :data:`RATIO_FLOOR_BYTES` is compressed (:data:`MAX_RATIO`).

Declared sizes are binding: :mod:`zipfile` (which skops reads through) stops unpacking a member at its
declared size and fails its CRC check if more was packed, so a zip cannot lie its way past them.

The demo segment model is 17 members, 130 KB unpacked (``schema.json`` 125 KB), stored without
compression; a policy is 9 members, 56 KB. A model's unpacked size is its size on disk (skops does
not compress by default), and an upload is at most 64 MiB, so the total bound is that too.
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Sequence

__all__ = [
    "MAX_DIRECTORY_BYTES",
    "MAX_MEMBERS",
    "MAX_MEMBER_BYTES",
    "MAX_RATIO",
    "MAX_TOTAL_BYTES",
    "RATIO_FLOOR_BYTES",
    "directory_problem",
    "members_problem",
]

MiB = 1024 * 1024
#: Entries in the zip (the demo model has 17: one schema, one ``.npy`` per array).
MAX_MEMBERS = 1_000
#: Bytes of central directory (the demo model's is about 1 KB).
MAX_DIRECTORY_BYTES = 1 * MiB
#: Unpacked bytes of one member (the demo model's largest, ``schema.json``, is 125 KB).
MAX_MEMBER_BYTES = 32 * MiB
#: Unpacked bytes of all members together (the demo model: 130 KB); also the upload limit.
MAX_TOTAL_BYTES = 64 * MiB
#: Unpacked to packed size of one member, checked for members above :data:`RATIO_FLOOR_BYTES`
#: (skops stores members uncompressed, 1 to 1; deflated JSON is about 10 to 1).
MAX_RATIO = 100
RATIO_FLOOR_BYTES = 1 * MiB

_EOCD = struct.Struct("<4s4H2LH")  # end of central directory: 22 bytes, then up to 64 KiB comment
_EOCD_SIGNATURE = b"PK\x05\x06"
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_LOCATOR_SIGNATURE = b"PK\x06\x07"
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_ZIP64_EOCD_SIGNATURE = b"PK\x06\x06"


def _name(info: zipfile.ZipInfo) -> str:
    shown = repr(info.filename)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def _declared_directory(data: bytes) -> tuple[int, int] | None:
    """``(entries, directory bytes)`` the zip's end record declares (Zip64 when it says so), or
    ``None`` when there is no end record (then :mod:`zipfile` says the file is not a zip)."""
    start = data.rfind(_EOCD_SIGNATURE, max(0, len(data) - _EOCD.size - 0xFFFF))
    if start < 0 or start + _EOCD.size > len(data):
        return None
    entries, size = _EOCD.unpack_from(data, start)[4:6]
    if entries == 0xFFFF or size == 0xFFFFFFFF:
        locator = start - _ZIP64_LOCATOR.size
        record = locator - _ZIP64_EOCD.size
        if (
            record >= 0
            and data[locator : locator + 4] == _ZIP64_LOCATOR_SIGNATURE
            and data[record : record + 4] == _ZIP64_EOCD_SIGNATURE
        ):
            entries, size = _ZIP64_EOCD.unpack_from(data, record)[7:9]
    return entries, size


def directory_problem(data: bytes) -> str | None:
    """What is wrong with the zip's directory as its end record declares it, or ``None``."""
    declared = _declared_directory(data)
    if declared is None:
        return None
    entries, size = declared
    if entries > MAX_MEMBERS:
        return f"the zip declares {entries:,} members, more than the {MAX_MEMBERS:,} allowed"
    if size > MAX_DIRECTORY_BYTES:
        return f"the zip's directory is {size:,} bytes, more than the {MAX_DIRECTORY_BYTES:,} allowed"
    return None


def members_problem(members: Sequence[zipfile.ZipInfo]) -> str | None:
    """The first bound the members break (naming the member), or ``None``: nothing is unpacked."""
    if len(members) > MAX_MEMBERS:
        return f"the zip has {len(members):,} members, more than the {MAX_MEMBERS:,} allowed"
    total = 0
    for info in members:
        size = info.file_size
        if size > MAX_MEMBER_BYTES:
            return (
                f"member {_name(info)} unpacks to {size:,} bytes, more than the {MAX_MEMBER_BYTES:,} "
                "allowed for one member"
            )
        if size > RATIO_FLOOR_BYTES and size > MAX_RATIO * max(info.compress_size, 1):
            ratio = size / max(info.compress_size, 1)
            return (
                f"member {_name(info)} is compressed {ratio:,.0f} to 1 ({info.compress_size:,} bytes "
                f"unpack to {size:,}), more than the {MAX_RATIO} to 1 allowed"
            )
        total += size
        if total > MAX_TOTAL_BYTES:
            return (
                f"the members unpack to more than the {MAX_TOTAL_BYTES:,} bytes allowed in all "
                f"(passed at member {_name(info)})"
            )
    return None

"""Finished exports by id, so ``GET /v1/export/{id}`` can hand their files over as one zip.

``POST /v1/export`` writes Parquet under ``<data dir>/exports/`` (:mod:`personalization.measurement.export`).
A client that is not on the server's disk needs the files themselves: each export gets an id (32
random hex digits) and a small manifest, ``<data dir>/export-downloads/<id>.json``, listing its
files relative to ``<data dir>/exports`` — beside the exports, not in them, so neither readers
globbing the export directory nor the erasure of a visitor
(:mod:`personalization.measurement.export_erasure`) meet it.

Why a manifest and not a copy: the manifest holds no visitor data, so erasing a visitor, which
rewrites the files in place, also changes what a later download returns; a copy would keep the
erased rows. The download is therefore the export's files *as they are on disk now*: a later export
of an overlapping range replaces them (same names, the new rows), and a file that no longer exists
(its date lost every row to erasure) is left out.

The id is the only thing a request names, and it is checked against :data:`EXPORT_ID` before it
comes near a path; every listed file is resolved and must lie inside ``<exports>`` too.
"""

from __future__ import annotations

import re
import secrets
import time
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import msgspec

from personalization.errors import InvalidInput, NotFound

__all__ = [
    "DOWNLOADS_DIR",
    "EXPORT_ID",
    "ExportManifest",
    "UnknownExport",
    "check_export_id",
    "export_files",
    "new_export_id",
    "save_manifest",
    "zip_chunks",
]

#: What an export id looks like: :func:`secrets.token_hex` of 16 bytes.
EXPORT_ID = re.compile(r"^[0-9a-f]{32}$")
#: In the data dir: the manifests; and the directory ``POST /v1/export`` writes to.
DOWNLOADS_DIR = "export-downloads"
EXPORTS_DIR = "exports"
_CHUNK = 1 << 16


class UnknownExport(NotFound):
    """No export with that id on this server (never made, or its data dir was cleared)."""

    def __init__(self, export_id: str) -> None:
        super().__init__(f"no export with id {export_id!r} on this server")
        self.export_id = export_id


class ExportManifest(msgspec.Struct, frozen=True, kw_only=True):
    """One finished export: when, which range, and its files relative to the exports directory."""

    id: str
    created: float
    since: str
    until: str
    files: list[str]


_DECODER = msgspec.json.Decoder(ExportManifest)


def new_export_id() -> str:
    return secrets.token_hex(16)


def check_export_id(export_id: str) -> str:
    """``export_id`` if it is well formed; otherwise :class:`InvalidInput` naming the parameter."""
    if not EXPORT_ID.fullmatch(export_id):
        raise InvalidInput("path parameter id: an export id is 32 lowercase hex digits (from POST /v1/export)")
    return export_id


def save_manifest(data_dir: Path, export_id: str, since: str, until: str, files: Sequence[Path]) -> ExportManifest:
    """Record the export ``export_id`` of ``files`` (under ``<data_dir>/exports``); written whole, then renamed."""
    root = (Path(data_dir) / EXPORTS_DIR).resolve()
    manifest = ExportManifest(
        id=check_export_id(export_id),
        created=time.time(),
        since=since,
        until=until,
        files=[str(Path(path).resolve().relative_to(root)) for path in files],
    )
    directory = Path(data_dir) / DOWNLOADS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    temporary = directory / f".{export_id}.tmp"
    temporary.write_bytes(msgspec.json.encode(manifest))
    temporary.replace(directory / f"{export_id}.json")
    return manifest


def export_files(data_dir: Path, export_id: str) -> list[tuple[str, Path]]:
    """The files of export ``export_id`` that still exist, as ``(name in the zip, path)``.

    Raises :class:`InvalidInput` for a malformed id and :class:`UnknownExport` for an unknown one."""
    root = (Path(data_dir) / EXPORTS_DIR).resolve()
    path = Path(data_dir) / DOWNLOADS_DIR / f"{check_export_id(export_id)}.json"
    try:
        manifest = _DECODER.decode(path.read_bytes())
    except FileNotFoundError:
        raise UnknownExport(export_id) from None
    found: list[tuple[str, Path]] = []
    for name in manifest.files:
        file = (root / name).resolve()
        if not file.is_relative_to(root) or not file.is_file():  # a hand-edited manifest; a file erased away
            continue
        found.append((file.relative_to(root).as_posix(), file))
    return found


class _Sink:
    """A write-only, unseekable file for :class:`zipfile.ZipFile` that hands out what it was given."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._written = 0

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        self._written += len(data)
        return len(data)

    def tell(self) -> int:
        return self._written

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def zip_chunks(files: Sequence[tuple[str, Path]]) -> Iterator[bytes]:
    """A zip of ``files`` (stored, not deflated: Parquet is compressed already), produced in pieces
    of about 64 KiB, so memory holds one piece whatever the export's size."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as archive:  # type: ignore[arg-type]
        for name, path in files:
            with open(path, "rb") as source, archive.open(name, "w", force_zip64=True) as target:
                while chunk := source.read(_CHUNK):
                    target.write(chunk)
                    if data := sink.take():
                        yield data
            if data := sink.take():
                yield data
    if data := sink.take():
        yield data

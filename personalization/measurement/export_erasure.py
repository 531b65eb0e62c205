"""Erasing a visitor from Parquet exports: the files are rewritten without their rows.

An export (:mod:`personalization.measurement.export`) is a copy of the streams that erasing the
streams does not reach, so ``DELETE /v1/visitors/{id}`` rewrites every exported file that holds the
visitor: each ``part-*.parquet`` under ``<root>/{exposures,events}/date=*/`` is checked by its
``visitor_id`` column alone (cheap), and a file that holds the visitor is copied row group by row
group, without the visitor's rows, to a hidden ``.part-N.parquet.erasing`` beside it, ``fsync``-ed and
then renamed over the original (``os.replace``: a reader sees the old file or the new one, never
half of one; a crash leaves at most a hidden temporary file). A file left with no rows is removed,
and so is a date directory left empty, as the exporter itself writes no empty partition. Memory
holds one row group. Rows of other visitors are copied as they were, with the file's schema.

The roots are the API's export directory (``<data dir>/exports``) and every directory ``vary export
--out`` wrote to with the same data dir (:func:`remember_export_dir` keeps them in
``<data dir>/exports.dirs``); a copy taken elsewhere (moved, uploaded to a warehouse) is the
operator's to erase. An export running while the erase runs may already have read the visitor's
rows from the streams and commit them after it: erase again after such an export.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from personalization.measurement.export import (
    EVENTS_TABLE,
    EXPOSURES_TABLE,
    PARTITION_COLUMN,
)

__all__ = ["EXPORT_DIRS_FILE", "erase_from_exports", "export_roots", "remember_export_dir"]

#: In the data dir: one absolute export directory per line, appended by ``vary export``.
EXPORT_DIRS_FILE = "exports.dirs"
_VISITOR = "visitor_id"

log = logging.getLogger("vary.erasure")


def remember_export_dir(data_dir: Path, out_dir: Path) -> None:
    """Note ``out_dir`` in ``<data_dir>/exports.dirs`` (once) so an erase finds its files too."""
    registry = Path(data_dir) / EXPORT_DIRS_FILE
    line = str(Path(out_dir).resolve())
    if line in _listed(registry):
        return
    registry.parent.mkdir(parents=True, exist_ok=True)
    with open(registry, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")


def _listed(registry: Path) -> list[str]:
    try:
        return [line for line in registry.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError:
        return []


def export_roots(data_dir: Path) -> list[Path]:
    """``<data_dir>/exports`` and the directories ``vary export`` noted, those that exist."""
    roots = [Path(data_dir) / "exports", *(Path(line) for line in _listed(Path(data_dir) / EXPORT_DIRS_FILE))]
    unique = list(dict.fromkeys(root.resolve() for root in roots))
    return [root for root in unique if root.is_dir()]


def _exported_files(root: Path) -> Iterable[Path]:
    for table in (EXPOSURES_TABLE, EVENTS_TABLE):
        yield from sorted((root / table).glob(f"{PARTITION_COLUMN}=*/part-*.parquet"))


def _rewrite_without(path: Path, visitor_id: str) -> int:
    """Rewrite one file without ``visitor_id``'s rows; returns how many rows were removed."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    source = pq.ParquetFile(path)
    if _VISITOR not in source.schema_arrow.names:
        return 0
    mine = pc.equal(source.read(columns=[_VISITOR]).column(_VISITOR), visitor_id)
    removed = int(pc.sum(pc.fill_null(mine, False)).as_py() or 0)
    if not removed:
        return 0
    temporary = path.with_name(f".{path.name}.erasing")
    kept = 0
    try:
        with pq.ParquetWriter(temporary, source.schema_arrow) as writer:
            for group in range(source.num_row_groups):
                table = source.read_row_group(group)
                others = table.filter(pc.invert(pc.fill_null(pc.equal(table.column(_VISITOR), visitor_id), False)))
                if others.num_rows:
                    writer.write_table(others)
                    kept += others.num_rows
        if kept:
            with open(temporary, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        else:
            temporary.unlink()
            path.unlink()
            try:
                path.parent.rmdir()  # the date had only this visitor: no empty partition left behind
            except OSError:
                pass
    finally:
        temporary.unlink(missing_ok=True)
    return removed


def erase_from_exports(roots: Iterable[Path], visitor_id: str) -> tuple[int, int]:
    """Remove ``visitor_id``'s rows from every exported file under ``roots``; returns
    ``(rows removed, files rewritten or removed)``. Without pyarrow there can be no exports: ``(0, 0)``."""
    try:
        import pyarrow
    except ImportError:
        return 0, 0
    rows = files = 0
    for root in roots:
        for path in _exported_files(Path(root)):
            try:
                removed = _rewrite_without(path, visitor_id)
            except (OSError, pyarrow.ArrowException) as exc:  # one unreadable file does not stop the rest
                log.error("erase: could not rewrite %s (%s); check it by hand", path, exc)
                continue
            if removed:
                rows += removed
                files += 1
    return rows, files

"""What the segment-model and policy tests both do to a saved skops file: list the types it names,
write one that names a type outside the trust list, and build zips that unpack far beyond their size.

Both models share storage and the trust check (:mod:`personalization.models.files`), so their tests
read and tamper with the files the same way.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import skops.io
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

__all__ = ["MiB", "dump_with_untrusted_step", "schema_types", "zip_of"]

MiB = 1024 * 1024


def _types_in(node: object) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        if isinstance(node.get("__module__"), str) and isinstance(node.get("__class__"), str):
            found.add(f"{node['__module__']}.{node['__class__']}")
        for value in node.values():
            found |= _types_in(value)
    elif isinstance(node, list):
        for value in node:
            found |= _types_in(value)
    return found


def schema_types(path: Path) -> set[str]:
    """Every ``module.Class`` the skops file at ``path`` names in its ``schema.json``."""
    with zipfile.ZipFile(path) as archive:
        return _types_in(json.loads(archive.read("schema.json")))


def dump_with_untrusted_step(pipeline: Pipeline, path: Path) -> None:
    """Write ``pipeline`` to ``path`` with a ``FunctionTransformer(numpy.sqrt)`` step slipped in
    after the vectorizer: a file the trust check must refuse before constructing anything."""
    vectorize, scale, classify = pipeline.steps
    tampered = Pipeline([vectorize, ("sqrt", FunctionTransformer(np.sqrt)), scale, classify])
    skops.io.dump(tampered, path)


def zip_of(members: Iterable[tuple[str, int]], chunk: bytes = b" " * MiB) -> bytes:
    """A deflated zip whose members unpack to the given sizes of ``chunk`` repeated: written from a
    generator a chunk at a time, so a 300 MB member costs the test 300 KB (and about a second)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, size in members:
            with archive.open(name, "w", force_zip64=size >= 2**31) as out:
                left = size
                while left > 0:
                    out.write(chunk[: min(left, len(chunk))])
                    left -= len(chunk)
    return buffer.getvalue()

"""Model files: skops bytes in, a fitted estimator out — only if every type in them is trusted.

skops trusts every scikit-learn estimator and numpy ufunc by default, and ``trusted=`` can only add
to that list, so on its own it would build a ``FunctionTransformer(np.sqrt)`` from an uploaded file.
Vary reads the file's ``schema.json`` first and refuses any type outside the caller's exact list
before skops constructs anything — and before that, holds the zip's directory to bounds
(:mod:`personalization.models.archive`), so a small file that unpacks to gigabytes is refused
unread. Segment models and policy models share this — and the whole
save and load of a pipeline with its card (:func:`save_pipeline`, :func:`read_card`,
:func:`load_pipeline`) — and the model registry loads from bytes held in Redis through it.

Errors::

    ModelLoadError            a model file is missing, unreadable, corrupt, or of the wrong shape
     ├── ModelVersionMismatch trained under another scikit-learn version: retrain
     ├── UntrustedModelError  the file names a type outside the trusted list: not loaded at all
     └── ModelTooLarge        the zip unpacks beyond the bounds (size, members, ratio): not read
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import zipfile
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import sklearn
import skops.io
from skops.io.exceptions import UntrustedTypesFoundException

from personalization.models.archive import directory_problem, members_problem
from personalization.models.versions import is_version

C = TypeVar("C")

__all__ = [
    "ModelLoadError",
    "ModelVersionMismatch",
    "UntrustedModelError",
    "ModelTooLarge",
    "dump_bytes",
    "file_types",
    "load_trusted",
    "check_sklearn_version",
    "ACTIVE_FILE",
    "write_model_files",
    "read_model_files",
    "save_pipeline",
    "read_card",
    "load_pipeline",
    "model_version",
    "sigmoid",
]


class ModelLoadError(Exception):
    """A model could not be loaded: missing, unreadable or corrupt file, or a wrong shape.

    The message names the file (or the registry entry).
    """


class ModelVersionMismatch(ModelLoadError):
    """The model was trained under another scikit-learn version than the one running.

    Coefficients and fitted attributes are not guaranteed to mean the same across versions, so Vary
    does not guess: retrain with ``vary train``.
    """


class UntrustedModelError(ModelLoadError):
    """The model file names types outside the trusted list; nothing in it was constructed."""


class ModelTooLarge(ModelLoadError):
    """The model file's zip would unpack beyond the bounds of :mod:`personalization.models.archive`
    (a member's size, the total, the member count, the compression ratio); nothing was unpacked."""


def dump_bytes(estimator: Any) -> bytes:
    """The estimator as skops bytes."""
    buffer = io.BytesIO()
    skops.io.dump(estimator, buffer)
    return buffer.getvalue()


def _schema_types(node: object, found: set[str]) -> set[str]:
    """Every ``module.class`` a skops schema names, at any depth (a superset of what skops builds)."""
    if isinstance(node, dict):
        module, cls = node.get("__module__"), node.get("__class__")
        if isinstance(module, str) and isinstance(cls, str):
            found.add(f"{module}.{cls}")
        for value in node.values():
            _schema_types(value, found)
    elif isinstance(node, list):
        for value in node:
            _schema_types(value, found)
    return found


def file_types(data: bytes, where: str = "model file") -> set[str]:
    """The types a skops file would construct, read from its schema without constructing any —
    once the zip's directory is within bounds (else :class:`ModelTooLarge`, nothing unpacked)."""
    problem = directory_problem(data)
    if problem is not None:
        raise ModelTooLarge(f"{where}: {problem}")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        problem = members_problem(archive.infolist())
        if problem is not None:
            raise ModelTooLarge(f"{where}: {problem}")
        schema = json.loads(archive.read("schema.json"))
    return _schema_types(schema, set())


def check_sklearn_version(trained_with: str, where: str, what: str = "model") -> None:
    """Refuse a model trained under another scikit-learn version, saying how to fix it."""
    if trained_with != sklearn.__version__:
        raise ModelVersionMismatch(
            f"{where}: {what} was trained with scikit-learn {trained_with}, but scikit-learn "
            f"{sklearn.__version__} is installed; retrain with `vary train` "
            f"(or install scikit-learn {trained_with})"
        )


def load_trusted(data: bytes, trusted: Sequence[str], where: str) -> Any:
    """Build the estimator in ``data`` if, and only if, every type it names is in ``trusted``."""
    try:
        untrusted = file_types(data, where) - set(trusted)
    except (zipfile.BadZipFile, KeyError, ValueError, RecursionError) as exc:
        raise ModelLoadError(f"{where}: not a valid skops file: {exc}") from exc
    if untrusted:
        raise UntrustedModelError(f"{where}: refusing to load types outside the trusted list: {sorted(untrusted)}")
    try:
        return skops.io.load(io.BytesIO(data), trusted=list(trusted))
    except UntrustedTypesFoundException as exc:
        raise UntrustedModelError(f"{where}: refusing to load untrusted types: {exc}") from exc
    except Exception as exc:  # skops raises many kinds on corrupt content; all mean "cannot load"
        raise ModelLoadError(f"{where}: corrupt model file: {exc!r}") from exc


# -- a directory of models: <version>.skops + <version>.json, and an ``active`` pointer ----------

ACTIVE_FILE = "active"


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_model_files(directory: Path, version: str, model: bytes, card: bytes, activate: bool = True) -> Path:
    """Write ``<version>.skops`` and ``<version>.json``, then (``activate``) point ``active`` at it.

    Each file goes to a temporary name and is renamed, ``active`` last, so a reader never sees a
    half-written model. Returns the ``.skops`` path.
    """
    if not is_version(version):
        raise ValueError(f"model version {version!r} is not a safe file name")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model_path = directory / f"{version}.skops"
    _write_atomic(model_path, model)
    _write_atomic(directory / f"{version}.json", card)
    if activate:
        _write_atomic(directory / ACTIVE_FILE, f"{version}\n".encode())
    return model_path


def read_model_files(directory: Path, version: str | None, what: str = "model") -> tuple[str, bytes, bytes, Path]:
    """``(version, card bytes, model bytes, model path)``; ``version=None`` reads the ``active`` one."""
    directory = Path(directory)
    if version is None:
        active = directory / ACTIVE_FILE
        try:
            version = active.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ModelLoadError(f"{active}: cannot read the active {what} version: {exc}") from exc
    if not is_version(version):
        raise ModelLoadError(f"{directory}: {version!r} is not a {what} version")
    card_path = directory / f"{version}.json"
    model_path = directory / f"{version}.skops"
    try:
        card = card_path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"{card_path}: cannot read the {what} card: {exc}") from exc
    try:
        model = model_path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"{model_path}: cannot read the {what}: {exc}") from exc
    return version, card, model, model_path


# -- a pipeline and its card, for either kind of model ----------------------------------------------

_CARD_ENCODER = msgspec.json.Encoder()


def save_pipeline(pipeline: Any, card: Any, directory: Path) -> Path:
    """Write a pipeline and its card (a msgspec Struct with a ``version``) in ``directory`` and make
    it ``active``, atomically (:func:`write_model_files`). Returns the ``.skops`` path."""
    return write_model_files(directory, card.version, dump_bytes(pipeline), _CARD_ENCODER.encode(card))


def read_card(directory: Path, version: str | None, card_type: type[C], what: str) -> tuple[C, bytes, Path, Path]:
    """``(card, model bytes, model path, card path)`` of a saved ``what`` (``version=None``: the
    ``active`` one); the card must decode as ``card_type`` and name that version."""
    version, card_bytes, data, model_path = read_model_files(directory, version, what)
    card_path = model_path.with_suffix(".json")
    try:
        card = msgspec.json.decode(card_bytes, type=card_type)
    except msgspec.DecodeError as exc:
        raise ModelLoadError(f"{card_path}: not a valid {what} card: {exc}") from exc
    named: str = card.version  # type: ignore[attr-defined]  # every card has a version
    if named != version:
        raise ModelLoadError(f"{card_path}: the card is for version {named!r}, not {version!r}")
    return card, data, model_path, card_path


def load_pipeline(
    data: bytes,
    trained_with: str,
    trusted: Sequence[str],
    check: Callable[[Any], object],
    *,
    where: str,
    version_where: str,
    label: str,
) -> Any:
    """A pipeline from skops bytes, refused unless: it was trained with this scikit-learn
    (:func:`check_sklearn_version`, the error at ``version_where`` naming ``label``), every type
    it names is ``trusted`` (:func:`load_trusted`), and ``check(pipeline)`` accepts its shape
    (a ``TypeError``/``ValueError`` becomes a :class:`ModelLoadError` at ``where``)."""
    check_sklearn_version(trained_with, version_where, label)
    pipeline = load_trusted(data, trusted, where)
    try:
        check(pipeline)
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"{where}: {exc}") from exc
    return pipeline


# -- shared by the segment and policy models --------------------------------------------------------


def model_version(prefix: str, training: Mapping[str, object], created_at: float) -> str:
    """``<prefix>-<UTC YYYYMMDDHHMMSS>-<8 hex of a hash of the training data and settings>``: the
    same data and settings trained at the same time get the same version."""
    content = msgspec.json.encode(dict(training), order="sorted")
    stamp = datetime.fromtimestamp(created_at, UTC).strftime("%Y%m%d%H%M%S")
    return f"{prefix}-{stamp}-{hashlib.sha256(content).hexdigest()[:8]}"


def sigmoid(z: float) -> float:
    """1 / (1 + e^-z) without overflow for any finite z."""
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)

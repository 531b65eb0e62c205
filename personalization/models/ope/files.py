"""Logged-bandit files: read the (x, a, p, r) table, write and read π(a | x_i) per logged row.

:func:`read_logged_bandit` reads the table Vowpal Wabbit / Open Bandit Pipeline exports are easily
turned into (CSV now; Parquet when ``pyarrow`` is installed), and
:func:`write_action_probabilities` writes a candidate's π(a | x_i) so any outside tool can recompute
an estimate. Every error is a :class:`~personalization.models.ope.data.LoggedDataError` naming the
file, row and column.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np

from personalization.models.ope.data import (
    ACTION_COLUMN,
    PROPENSITY_COLUMN,
    REQUIRED_COLUMNS,
    REWARD_COLUMN,
    Context,
    LoggedBandit,
    LoggedDataError,
    ParquetUnavailableError,
    check_target,
)

__all__ = [
    "read_logged_bandit",
    "read_logged_bandit_csv",
    "read_logged_bandit_parquet",
    "write_action_probabilities",
    "read_action_probabilities",
]

def _where(source: object, row: int, line: int | None) -> str:
    return f"{source}: row {row}" + (f" (line {line})" if line is not None else "")


def _number(value: object, where: str, column: str) -> float | None:
    """A cell as a float; ``None`` when empty or missing."""
    if value is None:
        return None
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            return float(text)
        except ValueError:
            message = f"{where}, column {column!r}: {value!r} is not a number"
            raise LoggedDataError(message) from None
    raise LoggedDataError(f"{where}, column {column!r}: {value!r} is not a number")


def _is_number_text(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _check_columns(source: object, names: Sequence[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise LoggedDataError(f"{source}: column {name!r} appears twice in the header")
        seen.add(name)
    missing = [c for c in REQUIRED_COLUMNS if c not in seen]
    if missing:
        raise LoggedDataError(
            f"{source}: missing column(s) {missing}; found {list(names)}. A logged-bandit table "
            f"has one column per context feature plus {list(REQUIRED_COLUMNS)}"
        )


def _assemble(
    source: object,
    names: Sequence[str],
    records: Sequence[tuple[str, Sequence[object]]],
    numeric: Collection[str],
    n_actions: int | None,
    ignore: Collection[str],
) -> LoggedBandit:
    """Rows of cells → :class:`LoggedBandit`; ``numeric`` names the context columns of numbers."""
    index = {name: i for i, name in enumerate(names)}
    features = [n for n in names if n not in REQUIRED_COLUMNS and n not in ignore]
    contexts: list[Context] = []
    actions: list[int] = []
    propensities: list[float] = []
    rewards: list[float] = []
    for where, cells in records:
        raw = cells[index[ACTION_COLUMN]]
        value = _number(raw, where, ACTION_COLUMN)
        if value is None or not math.isfinite(value) or value != int(value):
            raise LoggedDataError(
                f"{where}, column {ACTION_COLUMN!r}: {raw!r} is not a variant index (0, 1, 2, …)"
            )
        action = int(value)
        if action < 0 or (n_actions is not None and action >= n_actions):
            bound = f"[0, {n_actions})" if n_actions is not None else "≥ 0"
            raise LoggedDataError(
                f"{where}, column {ACTION_COLUMN!r}: variant {action} is not in {bound}"
            )
        raw = cells[index[PROPENSITY_COLUMN]]
        p = _number(raw, where, PROPENSITY_COLUMN)
        if p is None or math.isnan(p):
            p = math.nan  # missing: evaluate_policy drops and reports it
        elif not 0.0 <= p <= 1.0:
            raise LoggedDataError(
                f"{where}, column {PROPENSITY_COLUMN!r}: {raw!r} is not in [0, 1]"
            )
        raw = cells[index[REWARD_COLUMN]]
        r = _number(raw, where, REWARD_COLUMN)
        if r is None or not math.isfinite(r):
            raise LoggedDataError(
                f"{where}, column {REWARD_COLUMN!r}: {raw!r} is not a reward (a number)"
            )
        context: Context = {}
        for name in features:
            cell = cells[index[name]]
            if name in numeric:
                number = _number(cell, where, name)
                if number is not None and not math.isnan(number):
                    context[name] = number
            elif cell is not None:
                text = str(cell).strip()
                if text:
                    context[name] = text
        contexts.append(context)
        actions.append(action)
        propensities.append(p)
        rewards.append(r)
    if not contexts:
        raise LoggedDataError(f"{source}: no logged rows")
    k = n_actions if n_actions is not None else max(actions) + 1
    return LoggedBandit(
        contexts=contexts,
        actions=np.asarray(actions, dtype=np.int64),
        propensities=np.asarray(propensities, dtype=np.float64),
        rewards=np.asarray(rewards, dtype=np.float64),
        n_actions=k,
    )


def read_logged_bandit_csv(
    path: Path | str, *, n_actions: int | None = None, ignore: Collection[str] = ()
) -> LoggedBandit:
    """Read a CSV of logged decisions: a header, then one row per decision.

    Columns ``action`` (variant index), ``propensity`` (empty = missing) and ``reward``; every other
    column (except those in ``ignore``, e.g. an id or timestamp) is a context feature: a column
    whose non-empty cells all parse as finite numbers is read as floats, any other as strings, and
    an empty cell is an absent feature. ``n_actions`` defaults to the largest logged action + 1.
    Raises :class:`LoggedDataError` naming the row (1 = first data row), its line and the column.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise LoggedDataError(f"{path}: empty file, expected a header row")
            names = [name.strip() for name in header]
            _check_columns(path, names)
            records: list[tuple[str, list[str]]] = []
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                where = _where(path, len(records) + 1, reader.line_num)
                if len(row) != len(names):
                    message = f"{where}: {len(row)} fields, the header has {len(names)}"
                    raise LoggedDataError(message)
                records.append((where, row))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LoggedDataError(f"{path}: cannot read: {exc}") from exc
    numeric = {
        name
        for j, name in enumerate(names)
        if name not in REQUIRED_COLUMNS
        and all(_is_number_text(cells[j]) for _, cells in records if cells[j].strip())
    }
    return _assemble(path, names, records, numeric, n_actions, set(ignore))


def read_logged_bandit_parquet(
    path: Path | str, *, n_actions: int | None = None, ignore: Collection[str] = ()
) -> LoggedBandit:
    """Read a Parquet table with the columns of :func:`read_logged_bandit_csv` (needs ``pyarrow``).

    Context columns keep their Parquet types: numbers and booleans → float, anything else → str;
    null (and NaN) → absent. Raises :class:`ParquetUnavailableError` when pyarrow is not installed.
    """
    path = Path(path)
    try:
        import pyarrow.parquet as pq  # optional dependency: only this path needs it
        import pyarrow.types as pa_types
    except ImportError as exc:
        raise ParquetUnavailableError(
            f"{path}: reading Parquet needs pyarrow, which is not installed; "
            "install pyarrow or export the log as CSV"
        ) from exc
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several kinds (OSError, ArrowInvalid) for one meaning
        raise LoggedDataError(f"{path}: cannot read as Parquet: {exc}") from exc
    names = list(table.column_names)
    _check_columns(path, names)
    numeric = {
        field.name
        for field in table.schema
        if pa_types.is_integer(field.type)
        or pa_types.is_floating(field.type)
        or pa_types.is_boolean(field.type)
    }
    columns = [table.column(name).to_pylist() for name in names]
    records = [
        (_where(path, i + 1, None), [column[i] for column in columns])
        for i in range(table.num_rows)
    ]
    return _assemble(path, names, records, numeric, n_actions, set(ignore))


def read_logged_bandit(
    path: Path | str, *, n_actions: int | None = None, ignore: Collection[str] = ()
) -> LoggedBandit:
    """Read logged decisions from ``.csv`` or ``.parquet`` (by suffix; see the two readers)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return read_logged_bandit_csv(path, n_actions=n_actions, ignore=ignore)
    if suffix in (".parquet", ".pq"):
        return read_logged_bandit_parquet(path, n_actions=n_actions, ignore=ignore)
    shown = suffix or "(no suffix)"
    raise LoggedDataError(f"{path}: unknown format {shown!r}; use .csv or .parquet")

def write_action_probabilities(path: Path | str, target_probs: np.ndarray) -> None:
    """Write π(a | x_i) as CSV: header ``p_0, p_1, …``, one row per logged row, floats as repr."""
    probs = check_target(target_probs)
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([f"p_{a}" for a in range(probs.shape[1])])
        writer.writerows([repr(float(v)) for v in row] for row in probs)


def read_action_probabilities(path: Path | str) -> np.ndarray:
    """Read a file written by :func:`write_action_probabilities` back into an (n × k) array."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        if not header or header != [f"p_{a}" for a in range(len(header))]:
            raise LoggedDataError(f"{path}: expected a header p_0, p_1, …, got {header}")
        rows = []
        for row in reader:
            where = _where(path, len(rows) + 1, reader.line_num)
            if len(row) != len(header):
                raise LoggedDataError(f"{where}: {len(row)} fields, the header has {len(header)}")
            values = []
            for name, cell in zip(header, row):
                value = _number(cell, where, name)
                if value is None:
                    raise LoggedDataError(f"{where}, column {name!r}: empty")
                values.append(value)
            rows.append(values)
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(header))

"""The models page: each registered model's card, and an off-policy evaluation's estimates.

The cards come from the model registry and the estimates from
:func:`~personalization.models.evaluation.evaluate_served`, as the ``/v1/models`` routes serve them;
this module only formats them for reading (calibration plots from :mod:`api.dashboard.charts`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from api.dashboard.charts import calibration_plot
from personalization.models.ope import OffPolicyEstimate
from personalization.models.policy import PolicyCard
from personalization.models.registry import RegisteredModel

__all__ = ["evaluation_view", "model_view"]


def _window(card: Any) -> str:
    window = card.training_window or {}
    if not window:
        return "–"
    start, end = window.get("start") or window.get("from"), window.get("end") or window.get("to")
    if start or end:
        return f"{start or '?'} → {end or '?'}"
    return ", ".join(f"{k} {v}" for k, v in window.items())


def model_view(model: RegisteredModel, active: Mapping[str, str]) -> dict[str, Any]:
    """One model's card for the page: kind, active flag, metrics, training window, calibration plots."""
    card = model.card
    created = datetime.fromtimestamp(card.created_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
    is_active = active.get(model.slot) == model.version
    if isinstance(card, PolicyCard):
        return {
            "version": model.version,
            "kind": "policy",
            "experience": card.experience,
            "active": is_active,
            "created": created,
            "window": _window(card),
            "rows": ", ".join(f"{k} {v:,}" for k, v in card.rows.items()),
            "metrics": [
                {"name": "all", "auc": _fmt_metric(card.metrics.get("roc_auc")),
                 "log_loss": _fmt_metric(card.metrics.get("log_loss")), "brier": _fmt_metric(card.metrics.get("brier"))}
            ],
            "calibration": [],
        }
    return {
        "version": model.version,
        "kind": "segments",
        "experience": None,
        "active": is_active,
        "created": created,
        "window": _window(card),
        "rows": ", ".join(f"{k} {v:,}" for k, v in card.rows.items()),
        "metrics": [
            {"name": seg, "auc": _fmt_metric(m.get("roc_auc")), "log_loss": _fmt_metric(m.get("log_loss")),
             "brier": _fmt_metric(m.get("brier"))}
            for seg, m in card.metrics.items()
        ],
        "calibration": [
            {"segment": seg, "plot": calibration_plot(rows, title=f"{model.version}: calibration of {seg}")}
            for seg, rows in card.calibration.items()
        ],
    }


def _fmt_metric(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def evaluation_view(version: str, estimate: OffPolicyEstimate, n_bootstrap: int) -> dict[str, Any]:
    """A policy's off-policy estimates (IPS, SNIPS, DR, the logged policy) with intervals and warnings."""
    rows = [
        ("IPS", estimate.ips),
        ("SNIPS", estimate.snips),
        ("DR", estimate.dr),
        ("Logged policy", estimate.logged),
    ]
    return {
        "version": version,
        "rows": [
            {"name": name, "value": f"{e.value:.4f}", "interval": f"[{e.interval[0]:.4f}, {e.interval[1]:.4f}]"}
            for name, e in rows
        ],
        "ess": f"{estimate.ess:,.1f}",
        "n": f"{estimate.n:,}",
        "clipped": estimate.clipped,
        "dropped": estimate.dropped,
        "warnings": list(estimate.warnings),
        "n_bootstrap": n_bootstrap,
    }

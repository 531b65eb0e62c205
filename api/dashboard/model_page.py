"""The models page: each registered model's card, and an off-policy evaluation's estimates.

The cards come from the model registry and the estimates from
:func:`~personalization.models.evaluation.evaluate_served`, as the ``/v1/models`` routes serve them;
this module only formats them for reading (calibration plots from :mod:`api.dashboard.charts`).
Each policy also shows its launch gate's verdict (:mod:`personalization.models.launch_gate`), and
each policy in shadow its agreement with the live one (:mod:`personalization.models.shadow_log`)
beside its verdict — what :func:`policy_extras` reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from api.dashboard.charts import calibration_plot
from personalization.models.launch_gate import LaunchGate, load_gates
from personalization.models.ope import OffPolicyEstimate
from personalization.models.policy import PolicyCard
from personalization.models.registry import ModelRegistry, RegisteredModel
from personalization.models.shadow_log import shadow_agreement

__all__ = ["evaluation_view", "gate_view", "model_view", "policy_extras"]


def _window(card: Any) -> str:
    window = card.training_window or {}
    if not window:
        return "–"
    start, end = window.get("start") or window.get("from"), window.get("end") or window.get("to")
    if start or end:
        return f"{start or '?'} → {end or '?'}"
    return ", ".join(f"{k} {v}" for k, v in window.items())


def model_view(
    model: RegisteredModel, active: Mapping[str, str], gate: LaunchGate | None = None
) -> dict[str, Any]:
    """One model's card for the page: kind, active flag, metrics, training window, calibration plots
    (and, for a policy, its launch gate's verdict)."""
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
            "gate": gate_view(gate),
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


def _when(ts: float | None) -> str:
    return "–" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def gate_view(gate: LaunchGate | None) -> dict[str, Any]:
    """A policy's launch gate: status, the DR estimate against the logging policy, any forced launch."""
    verdict = gate.verdict if gate is not None else None
    forced = gate.forced if gate is not None else None
    view: dict[str, Any] = {
        "status": verdict.status if verdict is not None else "none",
        "detail": verdict.detail if verdict is not None else "not judged yet: it is judged when registered over HTTP "
        "or when its activation is asked for",
        "dr": "–",
        "interval": "–",
        "logged": "–",
        "n": "–",
        "when": _when(verdict.finished_at or verdict.started_at) if verdict is not None else "–",
        "warnings": list(verdict.warnings) if verdict is not None else [],
        "forced": None if forced is None else f"forced by {forced.by} at {_when(forced.at)} (verdict: {forced.status})",
    }
    if verdict is not None and verdict.dr is not None and verdict.logged is not None:
        low, high = verdict.dr.interval
        view.update(
            dr=f"{verdict.dr.value:.4f}", interval=f"[{low:.4f}, {high:.4f}]",
            logged=f"{verdict.logged.value:.4f}", n=f"{verdict.n:,}",
        )
    return view


async def policy_extras(
    redis: Redis, registry: ModelRegistry, models: list[RegisteredModel], active: Mapping[str, str], partitions: int
) -> tuple[dict[str, LaunchGate], list[dict[str, Any]]]:
    """Every policy's launch gate by version, and one row per policy in shadow: the live version, the
    agreement rate on the newest logged decisions, and the shadow's verdict."""
    gates = await load_gates(redis, [m.version for m in models if isinstance(m.card, PolicyCard)])
    rows = []
    for experience, version in sorted((await registry.shadows()).items()):
        agreement = await shadow_agreement(redis, experience, version, partitions=partitions)
        gate = gates.get(version)
        rate = agreement.rate
        rows.append({
            "experience": experience,
            "version": version,
            "live": active.get(f"policy:{experience}") or "uniform (no policy active)",
            "decisions": f"{agreement.decisions:,}",
            "agreement": "–" if rate is None else f"{rate:.1%}",
            "gate": gate_view(gate),
        })
    return gates, rows

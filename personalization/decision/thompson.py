"""Thompson sampling's P(variant is best), computed, not sampled: the same inputs give the same vector.

:func:`probability_best` reads each prediction as a Beta posterior resting on the rows its variant
was seen in, approximates it by a Gaussian, and integrates P(a best) = ∫ φ_a(x) Π_{b≠a} Φ_b(x) dx by
Gauss–Hermite quadrature (fixed nodes, pure Python, no scipy: this runs on the request path). Tails
beyond 8.5 standard deviations are pruned (< 1e-17 each) and, with many variants, the race is run
among the :data:`THOMPSON_RACE` most plausible ones, so a 100-variant decision stays near a
millisecond. :mod:`personalization.decision.policy` holds the exploration budget this feeds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

__all__ = ["THOMPSON_RACE", "plain_sum", "probability_best"]


def plain_sum(values: Iterable[float]) -> float:
    """Left-to-right float addition from 0, as JavaScript's ``reduce((a, b) => a + b, 0)``.

    Not ``sum()``: since Python 3.12 it compensates rounding, so the same propensities would differ
    in the last bit between Python versions and from the JS SDK (decision bundles, issue 25)."""
    total = 0.0
    for value in values:
        total += value
    return total


def _gauss_hermite(n: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Nodes and weights of n-point Gauss–Hermite quadrature (weight e^{-t²}), by Newton's method.

    The nodes are the roots of the orthonormal Hermite polynomial h_n, found from the largest down
    with the classic starting guesses (Numerical Recipes' ``gauher``) and the three-term recurrence;
    they agree with ``numpy.polynomial.hermite.hermgauss`` to ~1e-14.
    """
    pi_m4 = math.pi**-0.25
    nodes = [0.0] * n
    weights = [0.0] * n
    z = 0.0
    for i in range((n + 1) // 2):
        if i == 0:
            z = math.sqrt(2 * n + 1) - 1.85575 * (2 * n + 1) ** (-0.16667)
        elif i == 1:
            z -= 1.14 * n**0.426 / z
        elif i == 2:
            z = 1.86 * z - 0.86 * nodes[0]
        elif i == 3:
            z = 1.91 * z - 0.91 * nodes[1]
        else:
            z = 2.0 * z - nodes[i - 2]
        for _ in range(100):
            p1, p2 = pi_m4, 0.0
            for j in range(1, n + 1):
                p1, p2 = z * math.sqrt(2.0 / j) * p1 - math.sqrt((j - 1) / j) * p2, p1
            derivative = math.sqrt(2.0 * n) * p2
            step = p1 / derivative
            z -= step
            if abs(step) <= 1e-15:
                break
        nodes[i], nodes[n - 1 - i] = z, -z
        weights[i] = weights[n - 1 - i] = 2.0 / (derivative * derivative)
    order = sorted(range(n), key=nodes.__getitem__)
    return tuple(nodes[i] for i in order), tuple(weights[i] for i in order)


# Gauss–Hermite nodes/weights for E[f(X)], X ~ N(μ, σ²): Σ_i w_i f(μ + σ t_i), with t already scaled
# by √2 and w by 1/√π. 48 nodes give P(best) to ~1e-9 against adaptive quadrature for the variances
# used here.
_GH_RAW_NODES, _GH_RAW_WEIGHTS = _gauss_hermite(48)
_GH_NODES = tuple(t * math.sqrt(2.0) for t in _GH_RAW_NODES)
_GH_WEIGHTS = tuple(w / math.sqrt(math.pi) for w in _GH_RAW_WEIGHTS)
# The outer nodes weigh < 1e-18 (and multiply a product of CDFs ≤ 1): leaving them out changes no
# probability by more than 5e-17 and saves a quarter of the work.
_GH_TERMS = tuple((t, w) for t, w in zip(_GH_NODES, _GH_WEIGHTS) if w > 1e-18)
_SQRT2 = math.sqrt(2.0)
_GH_LOWEST = _GH_TERMS[0][0]
#: Standard deviations beyond which a Gaussian's tail (< 1e-17) is left out (see _race).
_TAIL = 8.5
#: Thompson sampling's race is among at most this many variants (see probability_best).
THOMPSON_RACE = 16


def probability_best(predictions: Sequence[float], evidence_rows: Sequence[float]) -> list[float]:
    """P(action a has the highest reward rate) under independent Gaussian posteriors.

    Prediction p_a is read as a Beta(p·m + 1, (1−p)·m + 1) posterior (m = ``evidence_rows[a]``, the
    rows variant a was seen in) and approximated by the Gaussian with its mean μ = (p·m + 1)/(m + 2)
    and variance μ(1 − μ)/(m + 3) — never zero, so no action is ever certain. Then
    P(a best) = ∫ φ_a(x) Π_{b≠a} Φ_b(x) dx, by Gauss–Hermite quadrature (deterministic), among at
    most :data:`THOMPSON_RACE` variants.
    """
    rows = [max(float(m), 0.0) for m in evidence_rows]
    mu = [(min(max(p, 0.0), 1.0) * m + 1.0) / (m + 2.0) for p, m in zip(predictions, rows)]
    sd = [math.sqrt(u * (1.0 - u) / (m + 3.0)) for u, m in zip(mu, rows)]
    k = len(mu)
    if k <= THOMPSON_RACE:
        return _race(mu, sd)
    # Many variants: the race is run among the THOMPSON_RACE with the highest upper bounds μ + 3σ
    # (ties: the lower index), the others get 0 here and only the floor in the end. Quadrature costs
    # k² work; this keeps a 100-variant decision near a millisecond in pure Python.
    runners = sorted(sorted(range(k), key=lambda a: (-(mu[a] + 3.0 * sd[a]), a))[:THOMPSON_RACE])
    shares = _race([mu[a] for a in runners], [sd[a] for a in runners])
    out = [0.0] * k
    for a, share in zip(runners, shares):
        out[a] = share
    return out


def _race(mu: list[float], sd: list[float]) -> list[float]:
    """P(a best) = ∫ φ_a(x) Π_{b≠a} Φ_b(x) dx for Gaussians N(μ_a, σ_a²), by Gauss–Hermite quadrature."""
    # Φ_b(x) = ½·erfc(−(x − μ_b) / (σ_b √2)): the normal CDF without scipy (the ½s are applied once).
    scales = [-1.0 / (s * _SQRT2) for s in sd]
    erfc = math.erfc
    k = len(mu)
    # Pruning, so many variants stay cheap: beyond _TAIL standard deviations a Gaussian has < 1e-17
    # of its mass. Action a cannot be best (P < 2e-17) when its upper end is below another's lower
    # end; and a competitor b whose upper end is below a's lowest node has Φ_b = 1 at all of a's nodes.
    upper = [m + _TAIL * s for m, s in zip(mu, sd)]
    lower = sorted(((m - _TAIL * s, b) for b, (m, s) in enumerate(zip(mu, sd))), reverse=True)
    best: list[float] = []
    for a, (mu_a, sd_a) in enumerate(zip(mu, sd)):
        highest_other_lower = lower[1][0] if lower[0][1] == a and k > 1 else lower[0][0]
        if k > 1 and upper[a] < highest_other_lower:
            best.append(0.0)
            continue
        lowest_node = mu_a + sd_a * _GH_LOWEST
        others = [(mu[b], scales[b]) for b in range(k) if b != a and upper[b] >= lowest_node]
        total = 0.0
        for t, w in _GH_TERMS:
            x = mu_a + sd_a * t  # where action a's draw lands
            product = w
            for mu_b, scale_b in others:
                product *= erfc((x - mu_b) * scale_b)
            total += product
        best.append(max(total * 0.5 ** len(others), 0.0))
    mass = plain_sum(best)
    return [b / mass for b in best]

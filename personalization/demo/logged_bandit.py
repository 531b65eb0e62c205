"""A seeded synthetic logged-bandit world with known expected rewards, for tests and ``bench.learning``.

Why it exists: the only honest way to say how good a learned bandit policy is, is to know the truth.
Off-policy estimates on real logs have intervals; here every context's expected reward per variant
is a formula, so a policy's TRUE value on fresh contexts is an exact average, and the oracle (always
the best variant) and the uniform policy bound it. :func:`relative_position` puts a policy on that
scale: 0 = uniform, 1 = oracle.

The world (binary rewards, ``k`` variants, ``d`` standard-normal context features):

* P(reward | x, a) = σ(b + β_a + (w + W_a)·x): a shared effect ``w`` of the context, a per-variant
  effect ``β_a`` and a per-variant interaction ``W_a`` — so the best variant depends on the visitor;
* the logging policy is deliberately biased: a softmax that FAVOURS the variants that are worse for
  the context (temperature 1 on minus the true logit), mixed with 10 % uniform so every variant keeps
  some overlap (propensities ≥ 0.1/k) — a learner that ignores the propensities is pulled towards
  the bad variants it saw most.

Everything is a function of the seed (numpy's PCG64), so a run is reproducible bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["BanditWorld", "LoggedSample", "make_world", "feature_rows", "relative_position"]

#: Share of the logging policy that is uniform (the rest favours bad variants): overlap ≥ this / k.
LOGGING_UNIFORM_SHARE = 0.1


@dataclass(frozen=True, slots=True)
class LoggedSample:
    """n logged decisions: contexts (n × d), the action shown, its logging propensity, the 0/1 reward,
    and the true P(reward | x, a) for every variant (n × k) — the last one is what a real log lacks."""

    contexts: np.ndarray
    actions: np.ndarray
    propensities: np.ndarray
    rewards: np.ndarray
    rates: np.ndarray


@dataclass(frozen=True, slots=True)
class BanditWorld:
    """The parameters of one synthetic world (see the module docstring)."""

    intercept: float
    shared: np.ndarray  # (d,)
    bias: np.ndarray  # (k,)
    interactions: np.ndarray  # (k, d)

    @property
    def n_actions(self) -> int:
        return int(self.bias.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.shared.shape[0])

    def contexts(self, n: int, seed: int) -> np.ndarray:
        """n fresh contexts, standard normal features."""
        return np.random.default_rng(seed).standard_normal((n, self.n_features))

    def logits(self, contexts: np.ndarray) -> np.ndarray:
        """logit P(reward | x, a), an (n × k) array."""
        return self.intercept + self.bias[None, :] + contexts @ (self.shared[:, None] + self.interactions.T)

    def rates(self, contexts: np.ndarray) -> np.ndarray:
        """P(reward | x, a), an (n × k) array."""
        return 1.0 / (1.0 + np.exp(-self.logits(contexts)))

    def logging_probabilities(self, contexts: np.ndarray) -> np.ndarray:
        """The biased logging policy: softmax of minus the true logit, 10 % uniform mixed in."""
        z = -self.logits(contexts)
        z -= z.max(axis=1, keepdims=True)
        soft = np.exp(z)
        soft /= soft.sum(axis=1, keepdims=True)
        k = self.n_actions
        return (1.0 - LOGGING_UNIFORM_SHARE) * soft + LOGGING_UNIFORM_SHARE / k

    def log(self, n: int, seed: int) -> LoggedSample:
        """n decisions of the logging policy with their rewards (seeded)."""
        rng = np.random.default_rng([seed, 1])
        x = self.contexts(n, seed)
        probabilities = self.logging_probabilities(x)
        cumulative = probabilities.cumsum(axis=1)
        u = rng.random(n)[:, None]
        actions = np.minimum((cumulative < u).sum(axis=1), self.n_actions - 1)
        rows = np.arange(n)
        rates = self.rates(x)
        rewards = (rng.random(n) < rates[rows, actions]).astype(np.int64)
        return LoggedSample(x, actions, probabilities[rows, actions], rewards, rates)

    def value(self, contexts: np.ndarray, policy: np.ndarray) -> float:
        """The TRUE value of a policy, (n × k) probabilities on ``contexts``: mean Σ_a π(a|x)·P(r|x,a)."""
        return float((policy * self.rates(contexts)).sum(axis=1).mean())

    def bounds(self, contexts: np.ndarray) -> tuple[float, float]:
        """(uniform, oracle) values on ``contexts``."""
        rates = self.rates(contexts)
        return float(rates.mean()), float(rates.max(axis=1).mean())


def make_world(n_actions: int, n_features: int, seed: int) -> BanditWorld:
    """A world whose best variant depends on the context; base reward rate around 10–20 %."""
    rng = np.random.default_rng([seed, 0])
    scale = 1.0 / np.sqrt(n_features)
    return BanditWorld(
        intercept=-2.0,
        shared=rng.normal(0.0, 0.5 * scale, n_features),
        bias=rng.normal(0.0, 0.3, n_actions),
        interactions=rng.normal(0.0, 0.8 * scale, (n_actions, n_features)),
    )


def feature_rows(contexts: np.ndarray) -> list[dict[str, float | str]]:
    """Contexts as Vary's feature rows: ``{"f0": x0, "f1": x1, …}``."""
    names = [f"f{j}" for j in range(contexts.shape[1])]
    return [dict(zip(names, row)) for row in contexts.tolist()]


def relative_position(value: float, uniform: float, oracle: float) -> float:
    """(value − uniform) / (oracle − uniform): 0 = serving uniformly at random, 1 = the oracle."""
    return (value - uniform) / (oracle - uniform)

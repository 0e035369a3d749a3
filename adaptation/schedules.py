"""The training schedules of DANN (Ganin et al., JMLR 2016, sec. 5.2.2).

``p`` is the training progress, linearly from 0 (first step) to 1 (last).

- adaptation factor ``lambda_p = 2 / (1 + exp(-gamma * p)) - 1`` with
  ``gamma = 10``: the domain-adversarial signal is suppressed early, while the
  domain classifier is still noise, and ramps up to 1;
- learning rate ``mu_p = mu0 / (1 + alpha * p) ** beta`` with ``mu0 = 0.01``,
  ``alpha = 10``, ``beta = 0.75``.

Both are plain functions of ``p`` (no torch) so that they are tested against
the formulas directly; :class:`~nnaudit.adaptation.config.DannConfig` holds
the constants and the overrides.
"""

from __future__ import annotations

import math

from nnaudit.errors import ConfigError


def _check_progress(p: float) -> float:
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"training progress p: expected a value in [0, 1], got {p!r}")
    return float(p)


def adaptation_factor(p: float, *, gamma: float = 10.0) -> float:
    """``lambda_p = 2 / (1 + exp(-gamma p)) - 1``: 0 at p = 0, ~1 at p = 1 for gamma = 10."""
    p = _check_progress(p)
    return 2.0 / (1.0 + math.exp(-gamma * p)) - 1.0


def learning_rate(p: float, *, mu0: float = 0.01, alpha: float = 10.0, beta: float = 0.75) -> float:
    """``mu_p = mu0 / (1 + alpha p) ** beta``: mu0 at p = 0, mu0 / 11**0.75 at p = 1."""
    p = _check_progress(p)
    return mu0 / (1.0 + alpha * p) ** beta


def progress(step: int, total_steps: int) -> float:
    """Training progress of step ``step`` (0-based) out of ``total_steps``, in [0, 1]."""
    if total_steps <= 1:
        return 0.0
    return min(1.0, max(0.0, step / (total_steps - 1)))

"""The threat model: which perturbations an attack may use.

A :class:`ThreatModel` is a norm (L-infinity, L2, L1 or L0), a radius ``eps`` and
the valid input range.  Every attack's output is forced into it here, in
float64 arithmetic on the float32 arrays that are actually returned, so an
adversarial example can never be reported outside the ball or the range,
whatever the attack did internally.  ``eps = inf`` (only for minimal-norm
attacks such as CW, DeepFool and JSMA) means "any size, inside the range".

For L0, ``eps`` counts changed input coordinates (a whole number).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import numpy as np

from nnaudit.errors import ConfigError


class Norm(str, Enum):
    """Perturbation norms; the value is the spelling used in options and JSON."""

    LINF = "linf"
    L2 = "l2"
    L1 = "l1"
    L0 = "l0"

    @classmethod
    def parse(cls, value: str | Norm) -> Norm:
        """``"linf"``/``"inf"``, ``"l2"``/``"2"``, ``"l1"``/``"1"``, ``"l0"``/``"0"`` to a Norm."""
        if isinstance(value, Norm):
            return value
        key = str(value).strip().lower()
        aliases = {"inf": "linf", "l_inf": "linf", "2": "l2", "1": "l1", "0": "l0"}
        try:
            return cls(aliases.get(key, key))
        except ValueError:
            raise ConfigError(f"norm: expected one of linf, l2, l1, l0, got {value!r}") from None


@dataclass(frozen=True)
class ThreatModel:
    """Allowed perturbations: ``||x_adv - x||_norm <= eps`` and ``low <= x_adv <= high``."""

    norm: Norm = Norm.LINF  # perturbation norm
    eps: float = 0.1  # radius of the ball; inf = unbounded (minimal-norm attacks only); L0: coordinate count
    low: float = 0.0  # smallest valid input value (e.g. black pixel)
    high: float = 1.0  # largest valid input value

    def __post_init__(self) -> None:
        object.__setattr__(self, "norm", Norm.parse(self.norm))
        eps = float(self.eps)
        if math.isnan(eps) or eps < 0:
            raise ConfigError(f"eps: expected a number >= 0, got {self.eps!r}")
        if self.norm is Norm.L0 and math.isfinite(eps) and eps != int(eps):
            raise ConfigError(f"eps: for the l0 norm eps counts changed input values, expected a whole number, got {self.eps!r}")
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise ConfigError(f"input range: expected finite low < high, got [{self.low}, {self.high}]")
        object.__setattr__(self, "eps", eps)

    @property
    def bounded(self) -> bool:
        return math.isfinite(self.eps)


def perturbation_norms(x: np.ndarray, x_adv: np.ndarray, *, l1: bool = False) -> dict[str, np.ndarray]:
    """L0, L2 and L-infinity norms of ``x_adv - x`` per sample, float64 ``(B,)`` each, and L1 with
    ``l1`` (the results of an L1 threat model; the others keep their three keys)."""
    delta = np.subtract(x_adv, x, dtype=np.float64).reshape(len(x), -1)  # both converted exactly, one pass
    norms = (Norm.L0, Norm.L1, Norm.L2, Norm.LINF) if l1 else (Norm.L0, Norm.L2, Norm.LINF)
    return {norm.value: _norm(delta, norm) for norm in norms}


def enforce_with_norms(x: np.ndarray, x_adv: np.ndarray, threat: ThreatModel) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """:func:`enforce` and the :func:`perturbation_norms` of what it returns.

    When ``x_adv`` is already inside (the common case: the attacks project
    every iterate), the float64 norms are computed once and serve as the check,
    the same one :func:`inside` makes.
    """
    x32 = np.asarray(x, np.float32)
    if isinstance(x_adv, np.ndarray) and x_adv.dtype == np.float32 and x_adv.shape == x32.shape:
        norms = perturbation_norms(x32, x_adv, l1=threat.norm is Norm.L1)
        in_range = x_adv.size == 0 or (float(x_adv.min()) >= threat.low and float(x_adv.max()) <= threat.high)
        if in_range and (not threat.bounded or bool((norms[threat.norm.value] <= threat.eps).all())):
            return x_adv, norms  # NaN fails the range check: it goes the long way
    out = enforce(x32, x_adv, threat)
    return out, perturbation_norms(x32, out, l1=threat.norm is Norm.L1)


def enforce(x: np.ndarray, x_adv: np.ndarray, threat: ThreatModel) -> np.ndarray:
    """``x_adv`` moved into the threat model, exactly, as float32 ``(B, *shape)``.

    ``x`` (float32, inside the range) is the clean batch.  The projection is
    done in float64 and the float32 result is checked again in float64: a row
    that float32 rounding still pushes outside is shrunk further, and as a
    last resort replaced by ``x`` itself (always inside).
    """
    x32 = np.asarray(x, np.float32)
    fast = isinstance(x_adv, np.ndarray) and x_adv.dtype == np.float32 and x_adv.shape == x32.shape
    if fast and inside(x32, x_adv, threat).all():
        return x_adv  # already inside (checked in float64): every projection below would return it unchanged
    adv = np.nan_to_num(np.asarray(x_adv, np.float64), nan=0.0)
    adv = np.where(np.isfinite(adv), adv, x32)
    if threat.norm is Norm.LINF or not threat.bounded:
        out = _clip_box(x32, adv, threat)
        if inside(x32, out, threat).all():
            return out
    shrink = 1.0
    for _ in range(4):
        out = _project64(x32.astype(np.float64), adv, threat, shrink).astype(np.float32)
        out = _clip_inside(out, threat.low, threat.high)
        bad = ~inside(x32, out, threat)
        if not bad.any():
            return out
        adv = np.where(bad.reshape((-1,) + (1,) * (adv.ndim - 1)), out.astype(np.float64), adv)
        shrink *= 1.0 - 1e-5
    return np.where(bad.reshape((-1,) + (1,) * (adv.ndim - 1)), x32, out)


def inside(x: np.ndarray, x_adv: np.ndarray, threat: ThreatModel) -> np.ndarray:
    """Per sample: is ``x_adv`` within the ball around ``x`` and the range? ``(B,)`` bool."""
    flat = np.asarray(x_adv, np.float64).reshape(len(x_adv), -1)
    ok = (flat >= threat.low).all(axis=1) & (flat <= threat.high).all(axis=1)  # NaN compares False: outside
    if threat.bounded:
        ok &= _norm(flat - np.asarray(x, np.float64).reshape(len(x), -1), threat.norm) <= threat.eps
    return ok


def _norm(delta: np.ndarray, norm: Norm) -> np.ndarray:
    """Per-row ``norm`` of a float64 ``(B, n)`` array, as :func:`perturbation_norms` computes it."""
    if norm is Norm.LINF:
        return np.abs(delta).max(axis=1, initial=0.0)
    if norm is Norm.L2:
        return np.sqrt((delta**2).sum(axis=1))
    if norm is Norm.L1:
        return np.abs(delta).sum(axis=1)
    return (delta != 0).sum(axis=1).astype(np.float64)


def _project64(x: np.ndarray, adv: np.ndarray, threat: ThreatModel, shrink: float) -> np.ndarray:
    delta = adv - x
    if threat.bounded:
        flat = delta.reshape(len(delta), -1)
        if threat.norm is Norm.LINF:
            flat = np.clip(flat, -threat.eps * shrink, threat.eps * shrink)
        elif threat.norm is Norm.L2:
            norm = np.sqrt((flat**2).sum(axis=1, keepdims=True))
            factor = np.minimum(1.0, threat.eps * shrink / np.maximum(norm, 1e-300))
            flat = flat * factor
        elif threat.norm is Norm.L1:
            flat = project_l1_ball(flat, threat.eps * shrink)
        else:
            flat = _keep_largest(flat, int(threat.eps))
        delta = flat.reshape(delta.shape)
    return np.clip(x + delta, threat.low, threat.high)


def project_l1_ball(flat: np.ndarray, eps: float) -> np.ndarray:
    """Euclidean projection of each row of ``flat`` ``(B, n)`` onto the L1 ball of radius ``eps``
    (Duchi et al., ICML 2008): soft-thresholding ``sign(v) max(|v| - theta, 0)`` with the ``theta``
    that brings the row's L1 norm to ``eps``; rows already inside are returned unchanged."""
    mag = np.abs(flat)
    outside = mag.sum(axis=1) > eps
    if not outside.any():
        return flat
    out = flat.copy()
    m = mag[outside]
    desc = -np.sort(-m, axis=1)
    excess = np.cumsum(desc, axis=1) - eps
    k = np.arange(1, m.shape[1] + 1)
    rho = np.maximum((desc * k > excess).sum(axis=1), 1)  # entries above the threshold (a sorted prefix; eps 0: 1)
    theta = excess[np.arange(len(m)), rho - 1] / rho
    out[outside] = np.sign(flat[outside]) * np.maximum(m - theta[:, None], 0.0)
    return out


def _keep_largest(flat: np.ndarray, k: int) -> np.ndarray:
    """Zero all but the ``k`` largest-magnitude entries of each row."""
    if k >= flat.shape[1]:
        return flat
    if k <= 0:
        return np.zeros_like(flat)
    order = np.argsort(-np.abs(flat), axis=1, kind="stable")
    keep = np.zeros_like(flat, dtype=bool)
    np.put_along_axis(keep, order[:, :k], True, axis=1)
    return np.where(keep, flat, 0.0)


def _clip_box(x32: np.ndarray, adv: np.ndarray, threat: ThreatModel) -> np.ndarray:
    """L-inf (or unbounded): clip each coordinate to the float32 numbers inside
    ``[max(x - eps, low), min(x + eps, high)]`` (exact, no shrinking)."""
    x64 = x32.astype(np.float64)
    lo = np.maximum(x64 - threat.eps, threat.low) if threat.bounded else np.full_like(x64, threat.low)
    hi = np.minimum(x64 + threat.eps, threat.high) if threat.bounded else np.full_like(x64, threat.high)
    lo32, hi32 = lo.astype(np.float32), hi.astype(np.float32)
    lo32 = np.where(lo32.astype(np.float64) < lo, np.nextafter(lo32, np.float32(np.inf)), lo32)
    hi32 = np.where(hi32.astype(np.float64) > hi, np.nextafter(hi32, np.float32(-np.inf)), hi32)
    return np.clip(adv.astype(np.float32), lo32, np.maximum(lo32, hi32))


def _clip_inside(x32: np.ndarray, low: float, high: float) -> np.ndarray:
    """Clip float32 values to the float32 numbers inside ``[low, high]``."""
    lo = np.float32(low)
    if float(lo) < low:
        lo = np.nextafter(lo, np.float32(np.inf))
    hi = np.float32(high)
    if float(hi) > high:
        hi = np.nextafter(hi, np.float32(-np.inf))
    return np.clip(x32, lo, hi)

"""Hypothesis strategies for property-based robustness tests.

:func:`perturbations` draws inputs inside a threat model around a given
input, so a team can state "no perturbation of this digit by at most 0.02 per
pixel changes its class" as a property and let Hypothesis search for (and
shrink) a counterexample::

    from hypothesis import given, settings
    from nnaudit.networks import zoo, datasets
    from nnaudit.testing import perturbations

    net = zoo.load("digits-ffn")
    x, y = datasets.digits("test")

    @settings(max_examples=50, deadline=None)
    @given(perturbations(x[0], eps=0.02, norm="linf"))
    def test_digit_0_is_stable(x_adv):
        assert net.predict(x_adv[None])[0] == y[0]

A sampled property like this never proves robustness (``nnaudit verify``
and region checks do); it is a cheap regression test that shrinks any
failure to a small perturbation.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from nnaudit.errors import ConfigError

NORMS = ("linf", "l2", "l0")


def _validate(x: Any, eps: Any, norm: Any, bounds: Any) -> tuple[np.ndarray, float, str, tuple[float, float]]:
    """Check the arguments first, with messages that name the argument."""
    if norm not in NORMS:
        raise ConfigError(f"perturbations: norm: expected one of {', '.join(NORMS)}, got {norm!r}")
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.floating, np.integer)) \
            or not math.isfinite(float(eps)) or eps < 0:
        raise ConfigError(f"perturbations: eps: expected a finite number >= 0, got {eps!r}")
    if norm == "l0" and float(eps) != int(eps):
        raise ConfigError(f"perturbations: eps: for l0 eps counts changed values, expected a whole number, got {eps!r}")
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise ConfigError(f"perturbations: bounds: expected (low, high), got {bounds!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ConfigError(f"perturbations: bounds: expected finite low < high, got {bounds!r}")
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiu" or arr.size == 0:
        raise ConfigError(f"perturbations: x: expected a non-empty numeric array, got dtype {arr.dtype}, shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or arr.min() < lo or arr.max() > hi:
        raise ConfigError(f"perturbations: x: expected finite values inside bounds [{lo}, {hi}], "
                          f"got values in [{arr.min()}, {arr.max()}]")
    return arr, float(eps), norm, (lo, hi)


def perturbations(x: Any, *, eps: float, norm: str = "linf", bounds: tuple[float, float] = (0.0, 1.0)) -> Any:
    """A strategy for arrays ``x_adv`` shaped and typed like ``x`` (any shape,
    e.g. one sample ``(*input_shape)`` or a batch ``(B, *input_shape)``) with
    ``||x_adv - x||_norm <= eps`` and ``low <= x_adv <= high``.

    ``norm``: ``"linf"`` (every value moves by at most ``eps``), ``"l2"``
    (the Euclidean length of the change is at most ``eps``) or ``"l0"`` (at
    most ``eps`` values change, each anywhere in ``bounds``).  Draws shrink
    towards ``x`` itself, so a failing example is reported as the smallest
    perturbation Hypothesis found.  Both conditions are checked in float64 on
    the returned array (of ``x``'s float dtype, float64 for integer ``x``).

    >>> import numpy as np
    >>> from hypothesis import find
    >>> x = np.full(4, 0.5, dtype=np.float32)
    >>> far = find(perturbations(x, eps=0.1), lambda a: float(np.abs(a - x).max()) > 0.09)
    >>> bool(np.abs(far.astype(np.float64) - x).max() <= 0.1), far.dtype.name
    (True, 'float32')
    >>> perturbations(x, eps=-1)
    Traceback (most recent call last):
    ...
    nnaudit.errors.ConfigError: perturbations: eps: expected a finite number >= 0, got -1
    """
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp

    arr, eps, norm, (lo, hi) = _validate(x, eps, norm, bounds)
    dtype = arr.dtype if arr.dtype.kind == "f" else np.dtype(np.float64)
    x64 = arr.astype(np.float64)
    n = x64.size
    if norm == "l0":
        k = min(int(eps), n)
        changes = st.dictionaries(st.integers(0, n - 1), st.floats(lo, hi, allow_nan=False), max_size=k)
        return changes.map(lambda ch: _apply_l0(x64, ch, dtype))
    unit = hnp.arrays(np.float64, x64.shape, elements=st.floats(-1.0, 1.0, allow_nan=False, allow_subnormal=False))
    if norm == "linf":
        return unit.map(lambda u: _finish(x64, x64 + eps * u, eps, "linf", (lo, hi), dtype))
    radius = st.floats(0.0, 1.0, allow_nan=False)
    return st.tuples(unit, radius).map(lambda ur: _finish(x64, x64 + _on_sphere(ur[0], eps * ur[1]), eps, "l2",
                                                          (lo, hi), dtype))


def _on_sphere(u: np.ndarray, r: float) -> np.ndarray:
    """``u`` rescaled to Euclidean length ``r`` (zero stays zero)."""
    length = float(np.linalg.norm(u))
    return u * (r / length) if length > 0 else u


def _apply_l0(x64: np.ndarray, changes: dict[int, float], dtype: np.dtype) -> np.ndarray:
    out = x64.copy().reshape(-1)
    for i, v in changes.items():
        out[i] = v
    return out.reshape(x64.shape).astype(dtype)


def _finish(x64: np.ndarray, target: np.ndarray, eps: float, norm: str, bounds: tuple[float, float],
            dtype: np.dtype) -> np.ndarray:
    """Clip into the bounds, cast to ``dtype`` and undo any rounding that left the ball.

    Clipping only moves values towards ``x`` (which is inside the bounds), so
    the ball constraint survives it; the cast may round one ulp outwards,
    which the loop below takes back towards ``x``.
    """
    out = np.clip(target, *bounds).astype(dtype)
    for _ in range(8):
        delta = out.astype(np.float64) - x64
        if norm == "linf":
            bad = np.abs(delta) > eps
            if not bad.any():
                break
            out = np.where(bad, np.nextafter(out, x64.astype(dtype)), out)
        else:
            size = float(np.linalg.norm(delta))
            if size <= eps:
                break
            out = np.clip(x64 + delta * (eps / size) * (1 - 1e-7), *bounds).astype(dtype)
            home = x64.astype(dtype)   # x itself is exact in dtype: one ulp towards it shrinks every change by
            out = np.where(out != home, np.nextafter(out, home), out)   # more than the cast's rounding added
    return np.clip(out, np.asarray(bounds[0], dtype), np.asarray(bounds[1], dtype))

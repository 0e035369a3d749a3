"""Projected sign-gradient descent inside an axis-aligned box.

The one optimisation loop shared by the L-infinity attacks (whose threat model
intersected with the valid input range is a box) and by the verifier's
falsification phase (which minimises a property margin over the input box of a
VNN-LIB property).  It knows nothing about networks or labels: it minimises a
batched objective ``f(x) -> (B,)`` over ``lower <= x <= upper`` and keeps, per
sample, the best point seen across all iterates and restarts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch


def minimize_in_box(
    objective: Callable[[torch.Tensor], torch.Tensor],
    lower: np.ndarray,
    upper: np.ndarray,
    *,
    steps: int = 50,
    restarts: int = 2,
    step_size: float | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    x_init: np.ndarray | None = None,
    stop_below: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Minimise ``objective`` per sample over the box ``[lower, upper]``.

    ``objective`` maps a float32 tensor ``(B, *shape)`` on ``device`` to a
    ``(B,)`` tensor to minimise; it is always called on the full batch (it may
    hold per-sample data), so row ``i`` must depend only on input row ``i``.
    ``lower``/``upper`` are arrays ``(B, *shape)``.

    Each restart starts at a uniform random point of the box (restart 0 at
    ``x_init`` when given, clipped into the box) and takes ``steps`` steps
    ``x <- clip(x - alpha * sign(grad), lower, upper)``.  ``alpha`` is
    ``step_size`` (absolute, same for every coordinate) or, when None,
    ``4 / steps`` of each coordinate's half-width (enough to cross the box), halved after 50% and 75%
    of the steps.  A sample stops (in this and later restarts) once its best
    value is below ``stop_below``.  NaN values count as ``+inf``.

    Returns ``(x_best, value_best)``: float64 arrays ``(B, *shape)`` and
    ``(B,)``; ``x_best`` lies inside the float64 box.  Deterministic given
    ``seed`` on CPU.
    """
    import torch

    lo64, hi64 = _check_box(lower, upper, x_init)
    if steps < 0 or restarts < 1:
        raise ValueError(f"minimize_in_box: expected steps >= 0 and restarts >= 1, got steps={steps}, restarts={restarts}")
    dev = torch.device(device)
    lo = torch.as_tensor(lo64, dtype=torch.float32, device=dev)
    hi = torch.as_tensor(hi64, dtype=torch.float32, device=dev)
    gen = torch.Generator(device=dev).manual_seed(int(seed))
    batch = lo.shape[0]
    best_x = lo.clone()
    best_v = torch.full((batch,), float("inf"), dtype=torch.float32, device=dev)
    for restart in range(restarts):
        if restart > 0 and bool((best_v < stop_below).all()):
            break
        start = _start_point(lo, hi, gen, x_init if restart == 0 else None)
        with torch.enable_grad():  # works even when called under torch.no_grad()
            _descend(objective, start, lo, hi, best_x, best_v, steps=steps, step_size=step_size, stop_below=stop_below)
    x_out = np.clip(best_x.detach().cpu().numpy().astype(np.float64), lo64, hi64)
    return x_out, best_v.detach().cpu().numpy().astype(np.float64)


def _check_box(lower: np.ndarray, upper: np.ndarray, x_init: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    lo = np.asarray(lower, dtype=np.float64)
    hi = np.asarray(upper, dtype=np.float64)
    if lo.shape != hi.shape or lo.ndim < 1:
        raise ValueError(f"minimize_in_box: expected lower and upper of the same shape (B, *shape), got {lo.shape} and {hi.shape}")
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise ValueError("minimize_in_box: expected finite box bounds, got inf or NaN")
    if (lo > hi).any():
        raise ValueError(f"minimize_in_box: expected lower <= upper everywhere, got {int((lo > hi).sum())} coordinates with lower > upper")
    if x_init is not None and np.shape(x_init) != lo.shape:
        raise ValueError(f"minimize_in_box: expected x_init shaped {lo.shape}, got {np.shape(x_init)}")
    return lo, hi


def _start_point(lo: torch.Tensor, hi: torch.Tensor, gen: torch.Generator, x_init: np.ndarray | None) -> torch.Tensor:
    import torch

    if x_init is not None:
        x = torch.as_tensor(np.asarray(x_init), dtype=torch.float32, device=lo.device)
        return torch.minimum(torch.maximum(x, lo), hi)
    u = torch.rand(lo.shape, generator=gen, dtype=torch.float32, device=lo.device)
    return lo + u * (hi - lo)


def _descend(objective: Callable, x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
             best_x: torch.Tensor, best_v: torch.Tensor, *, steps: int,
             step_size: float | None, stop_below: float) -> None:
    """One restart of sign-gradient descent; updates ``best_x``/``best_v`` in place."""
    import torch

    half = (hi - lo) / 2
    base = half * (4.0 / max(steps, 1)) if step_size is None else torch.full_like(lo, float(step_size))
    shape = (-1,) + (1,) * (lo.dim() - 1)
    for i in range(steps + 1):
        active = best_v >= stop_below
        if not bool(active.any()):
            return
        x = x.detach().requires_grad_(True)
        value = objective(x)
        if value.shape != best_v.shape:
            raise ValueError(f"minimize_in_box: objective must return shape {tuple(best_v.shape)}, got {tuple(value.shape)}")
        value_f = torch.nan_to_num(value.detach().float(), nan=float("inf"))
        better = (value_f < best_v) & active
        best_v[better] = value_f[better]
        best_x[better] = x.detach()[better]
        if i == steps or not value.requires_grad:
            return
        (grad,) = torch.autograd.grad(value.sum(), x, allow_unused=True)
        if grad is None:
            return
        alpha = base * _decay(i, steps) if step_size is None else base
        move = alpha * torch.nan_to_num(grad).sign() * active.reshape(shape)
        x = torch.minimum(torch.maximum(x.detach() - move, lo), hi)


def _decay(i: int, steps: int) -> float:
    """Step-size schedule: 1, then 1/2 after half the steps, 1/4 after 3/4."""
    if i >= 0.75 * steps:
        return 0.25
    if i >= 0.5 * steps:
        return 0.5
    return 1.0

"""Element-wise activations: Relu, Sigmoid, Tanh, with their bound rules.

Each class carries, next to ``forward`` and ``to_torch``, the rules the
verifier uses (see :mod:`nnaudit.networks.ir`): ``interval``, ``relax``
(the linear relaxation over a box), ``linear_bounds`` (backward substitution
through it), ``forward_linear_bounds`` and, for Relu, ``z3_encode``.  They take flat
tensors ``(D, n)``; being element-wise, any shape works.

Relaxations: ReLU has the triangle upper bound and a lower slope in [0, 1]
(1 where ``u > -l``, CROWN's adaptive choice, or an optimised alpha); Sigmoid
and Tanh (increasing, convex below 0 and concave above) get two lines of the
chord's slope ``k`` over ``[l, u]``, shifted to the least and the largest value
of ``g(z) - k z`` on the interval (at an end, or where ``g' = k``: the tangent
point on the convex side for the lower line, on the concave side for the upper).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from nnaudit.networks.ir import Layer, Shape, register

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from nnaudit.networks.loader import NodeView


class _Activation(Layer):
    """An element-wise non-linearity of one input."""

    relaxable = True

    @classmethod
    def from_onnx(cls, node: NodeView) -> list[Layer]:
        return [cls(node.name, (node.inputs[0],), node.output)]


def relu_relaxation(lo: torch.Tensor, hi: torch.Tensor, alpha: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ReLU relaxation ``sl * z <= relu(z) <= su * z + bu`` for z in [lo, hi].

    Returns ``(sl, su, bu)`` shaped like ``lo``: exact (slope 0 or 1) on
    stable neurons, the triangle's upper side and the lower slope ``alpha``
    (default: 1 where ``hi > -lo``, else 0) on unstable ones.
    """
    import torch

    # with lo- = min(lo, 0) and hi+ = max(hi, 0) one formula covers all three cases: the upper
    # line through (lo-, 0) and (hi+, hi+) is 0 when inactive, z when active, the triangle otherwise
    lo_n, hi_p = lo.clamp(max=0), hi.clamp(min=0)
    su = hi_p / (hi_p - lo_n).clamp(min=1e-300)
    bu = (lo_n * su).neg_() if not torch.is_grad_enabled() else -(lo_n * su)
    if alpha is None:  # 0 when inactive (lo + hi <= 0), 1 when active (but lo = hi = 0, where 0 is exact too)
        return (lo + hi > 0).to(lo.dtype), su, bu
    return torch.where(hi <= 0, 0.0, torch.where(lo >= 0, 1.0, alpha)), su, bu


@register("Relu")
class Relu(_Activation):
    kind = "relu"

    def forward(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x, 0.0)

    def to_torch(self) -> Any:
        import torch

        from nnaudit.networks.torch_module import OpModule

        return OpModule("relu", lambda m, x: torch.relu(x))

    def interval(self, lo: torch.Tensor, hi: torch.Tensor, *, in_shape: Shape) -> tuple[torch.Tensor, torch.Tensor]:
        return lo.clamp(min=0), hi.clamp(min=0)

    def relax(self, lo: torch.Tensor, hi: torch.Tensor, *, in_shape: Shape,
              alpha: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """``(sl, su, bu)`` of :func:`relu_relaxation`."""
        return relu_relaxation(lo, hi, alpha)

    def linear_bounds(self, a: torch.Tensor, relax: tuple[torch.Tensor, ...], *,
                      in_shape: Shape) -> tuple[torch.Tensor, torch.Tensor]:
        """Positive coefficients take the lower line ``sl * z``, negative ones the
        upper line ``su * z + bu``.  The relaxation is ``(D, n)`` per tensor, or
        ``(D, r, n)`` / ``(D, 1, n)`` with one lower slope per row of ``a``."""
        import torch

        sl, su, bu = relax
        an = a.clamp(max=0)
        if sl.ndim == 3:  # per-row slopes (D, r, n); su, bu (D, 1, n)
            return torch.addcmul(a * sl, an, su - sl), (an * bu).sum(-1)
        const = (an @ bu[:, :, None])[..., 0]
        if torch.is_grad_enabled():
            return torch.addcmul(a * sl[:, None, :], an, (su - sl)[:, None, :]), const
        # a * sl + an * (su - sl), computed in place in ``an``: these (D, r, n) tensors are the
        # largest of backward substitution, and each pass over them costs (ACAS Xu: 55% of the bound time)
        return an.mul_((su - sl)[:, None, :]).addcmul_(a, sl[:, None, :]), const

    def forward_linear_bounds(self, zl: torch.Tensor, zu: torch.Tensor, relax: tuple[torch.Tensor, ...],
                              *, in_shape: Shape) -> tuple[torch.Tensor, torch.Tensor]:
        sl, su, bu = relax
        ol, ou = zl * sl[:, None, :], zu * su[:, None, :]
        ou[:, -1] += bu
        return ol, ou

    def z3_inputs_needed(self, bounds: tuple[np.ndarray, np.ndarray] | None, phase: np.ndarray | None,
                         *, in_shape: Shape) -> np.ndarray | None:
        """An input the bounds prove negative is not needed, unless a phase constrains it."""
        need = np.ones(int(np.prod(in_shape)), dtype=bool)
        if bounds is not None:
            need &= bounds[1] >= 0
        if phase is not None:
            need |= phase != 0
        return need

    def z3_encode(self, z: Sequence[Any], bounds: tuple[np.ndarray, np.ndarray] | None, phase: np.ndarray | None,
                  *, in_shape: Shape, name: str) -> tuple[list[Any], list[Any]]:
        """Stable neurons (by bounds or phase) are ``x = z`` or ``x = 0``; an
        unstable one is ``x >= 0, x >= z, (x <= 0 or x <= z)`` plus, with finite
        bounds, ``l <= z <= u`` and the triangle ``x <= u (z - l) / (u - l)``."""
        import z3

        from nnaudit.networks.z3terms import real

        out: list[Any] = []
        cons: list[Any] = []
        for j, zj in enumerate(z):
            p = 0 if phase is None else int(phase[j])
            l, u = (-np.inf, np.inf) if bounds is None else (float(bounds[0][j]), float(bounds[1][j]))
            if zj is None or u < 0 or p < 0:
                if zj is not None and p < 0:
                    cons.append(zj <= 0)
                out.append(z3.RealVal(0))
            elif p > 0 or l > 0:
                if p > 0:
                    cons.append(zj >= 0)
                out.append(zj)
            else:
                x = z3.Real(f"{name}{j}")
                cons += [x >= 0, x >= zj, z3.Or(x <= 0, x <= zj)]
                if np.isfinite(l) and np.isfinite(u):
                    cons += [zj >= real(l), zj <= real(u), x * real(u - l) <= real(u) * (zj - real(l))]
                out.append(x)
        return out, cons


#: below this interval width the chord's slope is not trusted: the lines become the constant bounds
_NARROW = 1e-6
#: slack added to the lines' offsets for float64 rounding in g and in the tangent point
_SLACK = 1e-12


class _Monotone(_Activation):
    """A bounded increasing S-shaped activation: convex below 0, concave above (see the module docstring)."""

    def _torch_fn(self) -> Any:
        raise NotImplementedError

    def _tangent_at(self, k: torch.Tensor) -> torch.Tensor:
        """The ``z >= 0`` where the derivative is ``k`` (``0 < k <=`` its maximum, at 0)."""
        raise NotImplementedError

    def interval(self, lo: torch.Tensor, hi: torch.Tensor, *, in_shape: Shape) -> tuple[torch.Tensor, torch.Tensor]:
        g = self._torch_fn()
        return g(lo), g(hi)

    def relax(self, lo: torch.Tensor, hi: torch.Tensor, *, in_shape: Shape,
              alpha: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """``(k, b_lo, b_hi)`` ``(D, n)``: ``k z + b_lo <= g(z) <= k z + b_hi`` on ``[lo, hi]``."""
        import torch

        g = self._torch_fn()
        g_lo, g_hi = g(lo), g(hi)
        width = hi - lo
        wide = width > _NARROW
        k = torch.where(wide, (g_hi - g_lo) / torch.where(wide, width, 1.0), 0.0).clamp(min=0.0)
        # g - k z at the ends, and at the points where g' = k: -t (convex side, a minimum), +t (a maximum)
        t = self._tangent_at(torch.where(k > 0, k, 1.0))
        ends_lo = torch.minimum(g_lo - k * lo, g_hi - k * hi)
        ends_hi = torch.maximum(g_lo - k * lo, g_hi - k * hi)
        has_min = (k > 0) & (-t > lo) & (-t < hi)
        has_max = (k > 0) & (t > lo) & (t < hi)
        b_lo = torch.where(has_min, torch.minimum(ends_lo, g(-t) + k * t), ends_lo)
        b_hi = torch.where(has_max, torch.maximum(ends_hi, g(t) - k * t), ends_hi)
        return k, b_lo - _SLACK * (1 + b_lo.abs()), b_hi + _SLACK * (1 + b_hi.abs())

    def linear_bounds(self, a: torch.Tensor, relax: tuple[torch.Tensor, ...], *,
                      in_shape: Shape) -> tuple[torch.Tensor, torch.Tensor]:
        """``a @ y >= (a k) @ z + sum(a+ b_lo + a- b_hi)``: positive coefficients take the lower line."""
        k, b_lo, b_hi = relax
        const = (a.clamp(min=0) * b_lo[:, None, :]).sum(-1) + (a.clamp(max=0) * b_hi[:, None, :]).sum(-1)
        return a * k[:, None, :], const

    def forward_linear_bounds(self, zl: torch.Tensor, zu: torch.Tensor, relax: tuple[torch.Tensor, ...],
                              *, in_shape: Shape) -> tuple[torch.Tensor, torch.Tensor]:
        k, b_lo, b_hi = relax  # k >= 0: the lower line of the lower bound, the upper of the upper
        ol, ou = zl * k[:, None, :], zu * k[:, None, :]
        ol[:, -1] += b_lo
        ou[:, -1] += b_hi
        return ol, ou


@register("Sigmoid")
class Sigmoid(_Monotone):
    kind = "sigmoid"

    def forward(self, x: np.ndarray) -> np.ndarray:
        # split by sign so exp never overflows
        out = np.empty_like(x, dtype=np.float64)
        pos = x >= 0
        out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
        ex = np.exp(x[~pos])
        out[~pos] = ex / (1.0 + ex)
        return out

    def to_torch(self) -> Any:
        import torch

        from nnaudit.networks.torch_module import OpModule

        return OpModule("sigmoid", lambda m, x: torch.sigmoid(x))

    def _torch_fn(self) -> Any:
        import torch

        return torch.sigmoid

    def _tangent_at(self, k: torch.Tensor) -> torch.Tensor:
        """sigmoid'(z) = 1 / (4 cosh(z/2)^2) = k: z = 2 acosh(1 / (2 sqrt(k))) (stable for small k)."""
        import torch

        return 2 * torch.acosh((0.5 / torch.sqrt(k)).clamp(min=1.0))


@register("Tanh")
class Tanh(_Monotone):
    kind = "tanh"

    def forward(self, x: np.ndarray) -> np.ndarray:
        return np.tanh(x)

    def to_torch(self) -> Any:
        import torch

        from nnaudit.networks.torch_module import OpModule

        return OpModule("tanh", lambda m, x: torch.tanh(x))

    def _torch_fn(self) -> Any:
        import torch

        return torch.tanh

    def _tangent_at(self, k: torch.Tensor) -> torch.Tensor:
        """tanh'(z) = 1 / cosh(z)^2 = k: z = acosh(1 / sqrt(k)) (stable for small k)."""
        import torch

        return torch.acosh((1 / torch.sqrt(k)).clamp(min=1.0))

"""Per-norm pieces of gradient attacks, in torch: start, step direction, projection.

These are the small hooks of the Foolbox gradient-descent design: the loops in
:mod:`~nnaudit.attacks.projected_gradient`, :mod:`~nnaudit.attacks.auto_pgd` and
:mod:`~nnaudit.attacks.fast_gradient` are norm-agnostic and call these.  All tensors
are ``(B, *input_shape)``; ``eps`` is a float (or a ``(B,)`` tensor).
"""

from __future__ import annotations

import torch

from nnaudit.attacks.threat import Norm, ThreatModel


def _rows(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``(B,)`` -> ``(B, 1, ..., 1)`` broadcastable against ``like``."""
    return v.reshape((-1,) + (1,) * (like.dim() - 1))


def l2(v: torch.Tensor) -> torch.Tensor:
    """Per-sample L2 norm, ``(B,)``."""
    return v.flatten(1).norm(p=2, dim=1)


def clip_range(x: torch.Tensor, threat: ThreatModel) -> torch.Tensor:
    return x.clamp(threat.low, threat.high)


def random_start(x: torch.Tensor, threat: ThreatModel, gen: torch.Generator) -> torch.Tensor:
    """A uniformly random point of the ball around ``x`` (clipped to the range)."""
    if threat.norm is Norm.LINF:
        u = torch.rand(x.shape, generator=gen, device=x.device, dtype=x.dtype)
        return clip_range(x + (2 * u - 1) * threat.eps, threat)
    g = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
    direction = g / _rows(l2(g).clamp_min(1e-12), g)
    d = x[0].numel()
    radius = torch.rand((len(x),), generator=gen, device=x.device, dtype=x.dtype) ** (1.0 / d)
    return clip_range(x + direction * _rows(radius, x) * threat.eps, threat)


def direction(grad: torch.Tensor, norm: Norm) -> torch.Tensor:
    """Steepest-ascent unit step for ``grad`` under ``norm``: sign (L-inf) or normalised (L2)."""
    if norm is Norm.LINF:
        return grad.sign()
    return grad / _rows(l2(grad).clamp_min(1e-12), grad)


def project(x_adv: torch.Tensor, x: torch.Tensor, threat: ThreatModel) -> torch.Tensor:
    """Nearest point (per norm) of the eps-ball around ``x``, then clipped to the range."""
    delta = x_adv - x
    if threat.norm is Norm.LINF:
        delta = delta.clamp(-threat.eps, threat.eps)
    else:
        factor = (threat.eps / l2(delta).clamp_min(1e-12)).clamp(max=1.0)
        delta = delta * _rows(factor, delta)
    return clip_range(x + delta, threat)


def box(x: torch.Tensor, threat: ThreatModel) -> tuple[torch.Tensor, torch.Tensor] | None:
    """L-inf: the box ``[max(x - eps, low), min(x + eps, high)]`` the ball meets the range in,
    as the float32 numbers inside it (bounds computed in float64, then rounded inwards), so each
    step's projection is one clamp and its result passes the final float64 check unchanged.
    Other norms: None."""
    if threat.norm is not Norm.LINF:
        return None
    wide = x.double()
    lo, hi = (wide - threat.eps).clamp_(min=threat.low), (wide + threat.eps).clamp_(max=threat.high)
    return _round_inwards(lo, x.dtype, up=True), _round_inwards(hi, x.dtype, up=False)


def _round_inwards(v: torch.Tensor, dtype: torch.dtype, *, up: bool) -> torch.Tensor:
    """``v`` in ``dtype``, moved one step ``up`` (or down) where rounding crossed ``v``."""
    out = v.to(dtype)
    crossed = out.double() < v if up else out.double() > v
    return torch.nextafter(out, torch.where(crossed, float("inf") if up else float("-inf"), out))


def step(adv: torch.Tensor, grad: torch.Tensor, alpha: float, x: torch.Tensor,
         bounds: tuple[torch.Tensor, torch.Tensor] | None, threat: ThreatModel) -> torch.Tensor:
    """One descent step ``Proj(adv - alpha * direction(grad))`` (no autograd; may reuse
    ``adv`` and ``grad``'s storage; a negative ``alpha`` ascends).  ``bounds`` is
    :func:`box` of ``x`` for L-inf."""
    if bounds is not None:
        return adv.sub_(grad.sign_(), alpha=alpha).clamp_(min=bounds[0], max=bounds[1])
    return project(adv.sub_(direction(grad, threat.norm), alpha=alpha), x, threat)

"""Forward symbolic linear bounds: every source's lower and upper bounds as linear
functions of the input, carried forward node by node through each layer's
``forward_linear_bounds``.

Cheaper and looser than backward substitution (:mod:`nnaudit.verify.backward`):
one pass for all nodes rather than one per node.  :func:`nnaudit.verify.bounds.compute_bounds`
intersects them with the interval bounds of each pre-activation (``Intermediate.FORWARD``,
and ``AUTO`` for narrow inputs).
"""

from __future__ import annotations

import torch

from nnaudit.networks.lower import Node
from nnaudit.verify.edges import EdgeMats


def concretize(a: torch.Tensor, x_lo: torch.Tensor, x_hi: torch.Tensor, upper: bool) -> torch.Tensor:
    """min (or max) over the box of linear functions ``a`` ``(D, n_in + 1, m)``."""
    w, c = a[:, :-1], a[:, -1]
    if upper:
        return c + (w.clamp(min=0) * x_hi[..., None]).sum(1) + (w.clamp(max=0) * x_lo[..., None]).sum(1)
    return c + (w.clamp(min=0) * x_lo[..., None]).sum(1) + (w.clamp(max=0) * x_hi[..., None]).sum(1)


class ForwardLinear:
    """The forward linear bounds of one pass over the boxes ``x_lo``/``x_hi`` ``(D, n_in)``.

    ``lin_l[s]``/``lin_u[s]`` ``(D, n_in + 1, n_s)``: linear lower and upper bounds of source
    ``s`` (the last row is the constant).  Per node, :meth:`pre` bounds its pre-activation and
    :meth:`post` carries the bounds through its relaxation to its output.
    """

    def __init__(self, n_in: int, x_lo: torch.Tensor, x_hi: torch.Tensor) -> None:
        dt = torch.float64
        eye = torch.cat([torch.eye(n_in, dtype=dt), torch.zeros(1, n_in, dtype=dt)]).expand(x_lo.shape[0], -1, -1)
        self.x_lo, self.x_hi = x_lo, x_hi
        self.lin_l, self.lin_u = [eye], [eye]
        self.pre_lin: tuple[torch.Tensor, torch.Tensor] | None = None

    def pre(self, node: Node, mats: EdgeMats, lo: torch.Tensor,
            hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``lo``/``hi`` ``(D, pre_size)`` tightened by the linear bounds of ``node``'s pre-activation."""
        m, _, bias, mp, mn = mats[id(node.pre)]
        zl = sum(self.lin_l[s] @ mp[s] + self.lin_u[s] @ mn[s] for s in m)
        zu = sum(self.lin_u[s] @ mp[s] + self.lin_l[s] @ mn[s] for s in m)
        zl[:, -1] += bias
        zu[:, -1] += bias
        self.pre_lin = (zl, zu)
        return (torch.maximum(lo, concretize(zl, self.x_lo, self.x_hi, False)),
                torch.minimum(hi, concretize(zu, self.x_lo, self.x_hi, True)))

    def post(self, node: Node, rel: tuple[torch.Tensor, ...]) -> None:
        """Append ``node``'s output bounds, through its relaxation ``rel``, to the sources' bounds."""
        assert self.pre_lin is not None, "pre() bounds a node before post() carries it"
        ol, ou = node.layer.forward_linear_bounds(*self.pre_lin, rel, in_shape=node.in_shape)
        self.lin_l.append(ol)
        self.lin_u.append(ou)

"""The affine edges of a lowered network (:mod:`nnaudit.networks.lower`) as torch
tensors, and interval propagation through one edge.

Every bound computation of :mod:`nnaudit.verify.bounds` multiplies by the same
dense edge matrices, so their torch copies (with the absolute value and the
positive and negative parts that interval and forward bounds use) are made
once per lowered network and dtype and kept in the network's own
:attr:`~nnaudit.networks.lower.Lowered.cache`.
"""

from __future__ import annotations

import numpy as np
import torch

from nnaudit.networks.lower import Affine, Lowered

#: ``{id(form): (M, |M|, bias, max(M, 0), min(M, 0))}`` per affine form of the network
#: (``M`` per source, as in :class:`~nnaudit.networks.lower.Affine`)
EdgeMats = dict[int, tuple[dict[int, torch.Tensor], dict[int, torch.Tensor], torch.Tensor,
                           dict[int, torch.Tensor], dict[int, torch.Tensor]]]


def edge_mats(low: Lowered, dtype: torch.dtype = torch.float64) -> EdgeMats:
    """Torch copies of ``low``'s affine forms (its nodes' pre-activations and its output), keyed
    by the form's ``id`` (the forms live as long as ``low``, which keeps them in its cache)."""
    key = ("edge_mats", dtype)
    if key not in low.cache:
        conv = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=dtype)  # noqa: E731
        forms = [n.pre for n in low.nodes] + [low.output]
        low.cache[key] = {id(f): ({s: conv(m) for s, m in f.mats.items()},
                                  {s: conv(np.abs(m)) for s, m in f.mats.items()}, conv(f.bias),
                                  {s: conv(np.maximum(m, 0)) for s, m in f.mats.items()},
                                  {s: conv(np.minimum(m, 0)) for s, m in f.mats.items()}) for f in forms}
    return low.cache[key]


def affine_interval(form: Affine, mats: EdgeMats, src_lo: list[torch.Tensor],
                    src_hi: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Interval bounds ``(D, form.size)`` of ``form`` over its sources' bounds ``src_lo[s]``/``src_hi[s]``
    ``(D, n_s)`` (centre and radius through ``M`` and ``|M|``)."""
    m, m_abs, bias = mats[id(form)][:3]
    center, radius = bias, 0.0
    for s in m:
        center = center + ((src_lo[s] + src_hi[s]) / 2) @ m[s]
        radius = radius + ((src_hi[s] - src_lo[s]) / 2) @ m_abs[s]
    return center - radius, center + radius

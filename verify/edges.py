"""The affine edges of a lowered network (:mod:`nnaudit.networks.lower`) as torch
tensors, and interval propagation through one edge.

Every bound computation of :mod:`nnaudit.verify.bounds` multiplies by the same
dense edge matrices, so their torch copies (with the absolute value and the
positive and negative parts that interval and forward bounds use) are made
once per lowered network, dtype and device (torch's default device: the verifier runs
under ``with torch.device(...)`` on a GPU) and kept in the network's own
:attr:`~nnaudit.networks.lower.Lowered.cache`.
"""

from __future__ import annotations

from typing import Any

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
    key = ("edge_mats", dtype, torch.get_default_device())
    if key not in low.cache:
        conv = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=dtype)  # noqa: E731
        forms = [n.pre for n in low.nodes] + [low.output]
        low.cache[key] = {id(f): ({s: _part(m, conv, "") for s, m in f.mats.items()},
                                  {s: _part(m, conv, "abs") for s, m in f.mats.items()}, conv(f.bias),
                                  {s: _part(m, conv, "pos") for s, m in f.mats.items()},
                                  {s: _part(m, conv, "neg") for s, m in f.mats.items()}) for f in forms}
    return low.cache[key]


def _part(m: Any, conv: Any, which: str) -> Any:
    """``M``, ``|M|``, ``max(M, 0)`` or ``min(M, 0)`` of an edge: a torch tensor of a dense matrix,
    the structured map's own (it applies itself to torch tensors) of a structured one."""
    if not isinstance(m, np.ndarray):
        return getattr(m, which)() if which else m
    return conv({"": m, "abs": np.abs(m), "pos": np.maximum(m, 0), "neg": np.minimum(m, 0)}[which])


def dense_rows(m: Any, rows: torch.Tensor) -> torch.Tensor:
    """Rows ``rows`` of ``M.T`` ``(len(rows), n_s)`` (columns of ``M``), dense or structured."""
    if torch.is_tensor(m):
        return m.T[rows]
    units = torch.zeros((len(rows), m.shape[1]), dtype=torch.float64)
    units[torch.arange(len(rows)), rows] = 1.0
    return units @ m.T


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

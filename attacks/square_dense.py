"""Square's L-infinity queries on a dense chain: only the window's inputs enter the first layer.

A Square query changes one small window of the current best point (after the
first few hundred queries, 4-36 of MNIST's 784 pixels), yet a plain forward
pass multiplies all of the input by the first layer's weights, which on a
784-256-256-256-256-10 net is half the pass.  :class:`WindowQueries` keeps the
first layer's pre-activations ``z1`` of the current best points and answers a
query from ``z1 + (new - best)[window] @ W1[window]`` (a sparse product over
the window's columns), then the rest of the chain as usual: the same logits up
to float rounding.  So that rounding never accumulates, ``z1`` is recomputed
from the points every :data:`REFRESH` queries.  Large windows (the first
queries) use the dense product.  Every success is still judged by
onnxruntime on the original file (:class:`nnaudit.attacks.base.Attack`).
"""

from __future__ import annotations

import warnings

import torch

from nnaudit.networks.torch_chain import DenseChain

#: queries between two exact recomputations of the kept first-layer pre-activations
REFRESH = 128
#: first-layer weights (entries) from which the window's product pays for its bookkeeping
LARGE_FIRST_LAYER = 1 << 16
#: a window of more than this fraction of the inputs goes through the dense product
SPARSE_SHARE = 0.25


def windows_pay(chain: DenseChain) -> bool:
    """Whether ``chain``'s first layer is large enough for :class:`WindowQueries` to be faster than
    plain passes (digits-ffn's 64 x 32 is not; MNIST's 784 x 256 is)."""
    first = chain.steps[0]
    return first is not None and first[0].numel() >= LARGE_FIRST_LAYER


class WindowQueries:
    """Logits of window changes of ``best`` ``(b, n)`` rows through ``chain``, first layer incremental."""

    def __init__(self, chain: DenseChain, best: torch.Tensor) -> None:
        first = chain.steps[0]
        assert first is not None, "a dense chain starts with an affine layer"
        self.weight, self.bias = first
        self.rest = chain.steps[1:]
        self.best = best
        self.z1 = torch.addmm(self.bias, best, self.weight)
        self.queries = 0
        with warnings.catch_warnings():  # torch flags CSR as beta, once per process: not the user's concern
            warnings.simplefilter("ignore", UserWarning)
            _sparse_rows(torch.zeros((1, 1), dtype=torch.long), torch.zeros((1, 1)), 1)

    def logits(self, z1: torch.Tensor) -> torch.Tensor:
        """Logits from first-layer pre-activations ``z1``."""
        h = z1
        for s in self.rest:
            h = torch.relu(h) if s is None else torch.addmm(s[1], h, s[0])
        return h

    def query(self, idx: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits of ``best`` with ``best[r, idx[r]] = values[r]`` (``idx`` ``(b, k)`` distinct per row);
        returns (logits, the query's z1, the old values at ``idx``) for :meth:`accept`."""
        old = self.best.gather(1, idx)
        n = self.best.shape[1]
        self.queries += 1
        if idx.shape[1] > SPARSE_SHARE * n:
            z1 = torch.addmm(self.bias, self.best.clone().scatter_(1, idx, values), self.weight)
        else:
            if self.queries % REFRESH == 0:
                self.z1 = torch.addmm(self.bias, self.best, self.weight)
            z1 = self.z1 + _sparse_rows(idx, values - old, n) @ self.weight
        return self.logits(z1), z1, old

    def accept(self, better: torch.Tensor, idx: torch.Tensor, values: torch.Tensor, old: torch.Tensor,
               z1: torch.Tensor) -> None:
        """Make the query the best point of the rows ``better`` ``(b,)`` (in place)."""
        self.best.scatter_(1, idx, torch.where(better[:, None], values, old))
        self.z1 = torch.where(better[:, None], z1, self.z1)

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only the rows ``rows`` (the others left the search)."""
        self.best, self.z1 = self.best[rows], self.z1[rows]


def _sparse_rows(idx: torch.Tensor, values: torch.Tensor, n: int) -> torch.Tensor:
    """``(b, n)`` CSR matrix with ``values[r]`` at columns ``idx[r]`` of row ``r``."""
    b, k = idx.shape
    crow = torch.arange(0, b * k + 1, k, device=idx.device)
    return torch.sparse_csr_tensor(crow, idx.reshape(-1), values.reshape(-1), size=(b, n), check_invariants=False)

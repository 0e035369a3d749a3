"""Which row of a property a sub-domain is judged by, from its rows' lower bounds.

A property's output constraints are rows grouped into disjuncts (``owner[r]`` is the
disjunct of row ``r``); a disjunct is closed when one of its rows has a positive lower
bound.  Branching and the combination step of both search routes (torch: ``bab/``,
NumPy: ``dense_bab.py``) work on the row nearest to closing the sub-domain's worst
open disjunct.  NumPy only, so that the dense route does not import torch.
"""

from __future__ import annotations

import numpy as np


def worst_rows(lbs: np.ndarray, open_: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Per sub-domain, the best row (largest lower bound) of its worst open disjunct ``(k,)``;
    ``lbs`` ``(k, R)`` row lower bounds, ``open_`` ``(k, J)`` disjuncts still open, ``owner`` ``(R,)``."""
    best_per_disj = np.full(open_.shape, np.inf)
    best_row = np.zeros(open_.shape, np.int64)
    for j in range(open_.shape[1]):
        rows = np.flatnonzero(owner == j)
        k = lbs[:, rows].argmax(axis=1)
        best_row[:, j] = rows[k]
        best_per_disj[:, j] = np.where(open_[:, j], lbs[np.arange(len(lbs)), rows[k]], np.inf)
    worst = best_per_disj.argmin(axis=1)
    return best_row[np.arange(len(lbs)), worst]

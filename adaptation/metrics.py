"""Measurements of a DANN run: accuracy, proxy A-distance, PCA, decision boundary.

The proxy A-distance (Ben-David et al. 2007; Ganin et al. 2016, sec. 5.2.3)
is ``2 (1 - 2 eps)`` where ``eps`` is the held-out error of a classifier
trained to tell source features from target features: 2 when the domains
are perfectly separable, about 0 when they are indistinguishable.  The paper
uses a linear SVM; here an L2-regularised logistic regression (a linear
classifier as well) is fitted by L-BFGS in float64 torch on standardised
features, on a balanced, seeded half/half split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ADistance:
    """Proxy A-distance ``value = 2 (1 - 2 error)`` and the held-out ``error``
    of the linear domain classifier over ``n_test`` points."""

    value: float
    error: float
    n_train: int
    n_test: int


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    """Fraction of rows of ``logits`` (N, C) whose arg-max equals ``y`` (N,)."""
    return float(np.mean(np.argmax(logits, axis=1) == y)) if len(y) else float("nan")


def prediction_entropy(logits: np.ndarray) -> float:
    """Mean entropy of the softmax of ``logits`` (N, C) divided by ``log C``: 0 when every
    prediction is certain, 1 when every one is uniform (no labels needed)."""
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    h = -(np.exp(logp) * logp).sum(axis=1)
    return float(h.mean() / np.log(logits.shape[1])) if len(h) and logits.shape[1] > 1 else 0.0


def proxy_a_distance(source: np.ndarray, target: np.ndarray, *, seed: int = 0,
                     max_samples: int = 600, l2: float = 1e-3) -> ADistance:
    """Proxy A-distance between feature sets ``source`` (N, F) and ``target`` (M, F).

    Takes ``n = min(N, M, max_samples)`` points of each (seeded), trains the
    linear classifier on half of them and measures its error on the other half.
    """
    rng = np.random.default_rng([seed, 3])
    n = min(len(source), len(target), max_samples)
    s = source[rng.permutation(len(source))[:n]].reshape(n, -1)
    t = target[rng.permutation(len(target))[:n]].reshape(n, -1)
    x = np.concatenate([s, t]).astype(np.float64)
    y = np.concatenate([np.zeros(n), np.ones(n)])
    order = rng.permutation(2 * n)
    train, test = order[: n], order[n:]
    mean, std = x[train].mean(axis=0), x[train].std(axis=0) + 1e-8
    x = (x - mean) / std
    w, b = _fit_logistic(x[train], y[train], l2)
    pred = (x[test] @ w + b) > 0
    error = float(np.mean(pred != (y[test] > 0.5)))
    return ADistance(2.0 * (1.0 - 2.0 * error), error, len(train), len(test))


def _fit_logistic(x: np.ndarray, y: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
    """Weights (F,) and bias of L2-regularised logistic regression on x (N, F), y in {0, 1}."""
    import torch

    xt = torch.from_numpy(x)
    yt = torch.from_numpy(y)
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=100, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xt @ w + b, yt) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy(), float(b.detach())


def pca_2d(source: np.ndarray, target: np.ndarray, *, max_points: int = 300,
           seed: int = 0) -> dict[str, list[list[float]]]:
    """Both feature sets (N, F), (M, F) projected on the first two principal
    axes of their union; at most ``max_points`` (seeded subsample) per domain.
    Returns ``{"source": [[a, b], ...], "target": [...]}``."""
    rng = np.random.default_rng([seed, 5])
    s = source[np.sort(rng.permutation(len(source))[:max_points])].reshape(-1, source[0].size)
    t = target[np.sort(rng.permutation(len(target))[:max_points])].reshape(-1, target[0].size)
    both = np.concatenate([s, t]).astype(np.float64)
    mean = both.mean(axis=0)
    _, _, vt = np.linalg.svd(both - mean, full_matrices=False)
    axes = vt[:2].T
    if axes.shape[1] < 2:
        axes = np.pad(axes, ((0, 0), (0, 2 - axes.shape[1])))
    proj = lambda a: np.round((a - mean) @ axes, 5).tolist()  # noqa: E731
    return {"source": proj(s), "target": proj(t)}


def boundary_grid(points: np.ndarray, *, size: int = 60, margin: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Grid axes (size,), (size,) covering 2-D ``points`` (N, 2) plus ``margin``."""
    lo = points.min(axis=0) - margin
    hi = points.max(axis=0) + margin
    return np.linspace(lo[0], hi[0], size), np.linspace(lo[1], hi[1], size)

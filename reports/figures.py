"""The report's plots, drawn by matplotlib (Agg canvas, no pyplot) as inline SVG/PNG.

Each function takes plain lists from a result body and returns a ``data:``
URI; line plots are SVG (small and sharp, text kept as text), plots with
many points or a filled grid are PNG.  matplotlib is imported here only,
when a report is rendered.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

WORST = "worst"
SOURCE_COLOUR, TARGET_COLOUR = "#1f77b4", "#ff7f0e"


STYLE = {"svg.fonttype": "none", "svg.hashsalt": "nnaudit", "font.size": 9,
         "axes.spines.top": False, "axes.spines.right": False}


def new_figure(figsize: tuple[float, float], ncols: int = 1) -> tuple[Any, Any]:
    """A figure with ``ncols`` axes (array of shape (1, ncols)), drawn on the Agg
    canvas directly: no pyplot, so no global backend or figure state is touched."""
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=figsize, layout="tight")
        axes = fig.subplots(1, ncols, squeeze=False)
    return fig, axes


def to_uri(fig: Any, fmt: str = "svg") -> str:
    """Serialise ``fig``; ``fmt`` is ``svg`` or ``png``."""
    import matplotlib

    buf = io.BytesIO()
    with matplotlib.rc_context(STYLE):
        fig.savefig(buf, format=fmt, dpi=90, bbox_inches="tight", metadata={"Date": None} if fmt == "svg" else None)
    mime = "image/svg+xml" if fmt == "svg" else "image/png"
    return f"data:{mime};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def robust_accuracy_curves(eps: Sequence[float], curves: dict[str, Sequence[float | None]],
                           clean: float | None, norm: str) -> str:
    """Robust accuracy (y) against eps (x): one line per attack, the worst case bold.

    ``curves`` maps an attack name (and ``"worst"``) to one value per eps
    (None where not run); the clean accuracy is the point at eps = 0."""
    fig, axes = new_figure((5.2, 3.2))
    ax = axes[0, 0]
    xs0 = [0.0] if clean is not None else []
    for name, values in curves.items():
        pts = [(e, v) for e, v in zip(eps, values) if v is not None]
        if not pts:
            continue
        xs = xs0 + [p[0] for p in pts]
        ys = ([clean] if clean is not None else []) + [p[1] for p in pts]
        style = {"color": "black", "linewidth": 2.4, "zorder": 5} if name == WORST else {"linewidth": 1.2, "alpha": 0.85}
        ax.plot(xs, ys, marker="o", markersize=3.5, label="worst case" if name == WORST else name, **style)
    ax.set_xlabel(f"eps ({norm})")
    ax.set_ylabel("robust accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False, loc="best")
    return to_uri(fig)


def training_curves(epochs: Sequence[dict[str, Any]]) -> str:
    """DANN training: accuracies (left) and losses / lambda (right) per epoch,
    with the source-only baseline dashed where it was trained."""
    fig, axes = new_figure((9, 3.2), ncols=2)
    acc, loss = axes[0]
    xs = [e["epoch"] for e in epochs]

    def series(model: str, key: str) -> list[float]:
        return [np.nan if (e.get(model) or {}).get(key) is None else e[model][key] for e in epochs]

    for key, colour in (("source_accuracy", SOURCE_COLOUR), ("target_accuracy", TARGET_COLOUR)):
        label = key.replace("_accuracy", "")
        acc.plot(xs, series("dann", key), color=colour, label=f"DANN {label}")
        base = series("source_only", key)
        if not np.all(np.isnan(base)):
            acc.plot(xs, base, color=colour, linestyle="--", label=f"source-only {label}")
    dom = series("dann", "domain_accuracy")
    if not np.all(np.isnan(dom)):
        acc.plot(xs, dom, color="#7f7f7f", linestyle=":", label="domain classifier")
    acc.set_xlabel("epoch")
    acc.set_ylabel("accuracy")
    acc.set_ylim(-0.02, 1.02)
    acc.legend(fontsize=7, frameon=False)
    for key, colour in (("label_loss", "#2ca02c"), ("domain_loss", "#d62728"), ("lambda", "#9467bd")):
        values = series("dann", key)
        if not np.all(np.isnan(values)):
            loss.plot(xs, values, color=colour, label=key.replace("_", " "))
    loss.set_xlabel("epoch")
    loss.set_ylabel("loss / lambda")
    loss.legend(fontsize=7, frameon=False)
    for ax in (acc, loss):
        ax.grid(alpha=0.3)
    return to_uri(fig)


def feature_pca(before: dict[str, Any] | None, after: dict[str, Any] | None) -> str:
    """Source and target features on their first two principal axes, before
    (source-only model) and after (DANN) adaptation."""
    panels = [(t, p) for t, p in (("before: source-only features", before), ("after: DANN features", after)) if p]
    fig, axes = new_figure((4.3 * len(panels), 3.4), ncols=len(panels))
    for ax, (title, pca) in zip(axes[0], panels):
        for key, colour in (("source", SOURCE_COLOUR), ("target", TARGET_COLOUR)):
            pts = np.asarray(pca[key], dtype=np.float64).reshape(-1, 2)
            ax.scatter(pts[:, 0], pts[:, 1], s=6, alpha=0.55, color=colour, label=key, linewidths=0)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(fontsize=7, frameon=False, markerscale=2)
    return to_uri(fig, "png")

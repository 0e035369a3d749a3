"""The safety map of one image: the image with its regions coloured by verdict.

Green: safe, red: unsafe, grey: unknown (hatched when regions overlap or a
method is missing).  Drawn with matplotlib's Agg backend into a PNG; the
reports issue renders the same data from the JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

COLOURS = {"safe": "#2ca02c", "unsafe": "#d62728", "unknown": "#7f7f7f"}


def save_safety_map(image: dict[str, Any], path: str | Path, *, method: str | None = None,
                    title: str | None = None) -> Path:
    """Write the safety map PNG of one image of a ``regions`` result.

    ``image``: one entry of the result's ``images`` list (or
    ``ImageResult.to_dict()``); ``method``: which method's verdicts to show
    (default: the first present).  Returns the path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    regions = image.get("regions", [])
    methods = [r["method"] for r in regions]
    method = method or (methods[0] if methods else None)
    shape = image["shape"]
    x = np.asarray(image["x"], dtype=np.float64)
    gray = x.reshape(shape[-2], shape[-1]) if len(shape) == 2 else x.reshape(shape).mean(axis=0)
    fig, ax = plt.subplots(figsize=(3.2, 3.4), dpi=100)
    ax.imshow(gray, cmap="gray", vmin=0.0, vmax=max(1.0, float(gray.max())), interpolation="nearest")
    for r in regions:
        if r["method"] != method:
            continue
        r0, c0, r1, c1 = r["box"]
        ax.add_patch(Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0, r1 - r0, facecolor=COLOURS[r["verdict"]],
                               alpha=0.45, edgecolor="white", linewidth=1.0))
    ax.set_xticks([])
    ax.set_yticks([])
    label = f"label {image.get('label')}, predicted {image.get('predicted')}"
    ax.set_title(title or f"image {image.get('index')}: {label}" + (f"\n{method}" if method else ""), fontsize=8)
    ax.legend(handles=[Patch(color=c, alpha=0.6, label=v) for v, c in COLOURS.items()], loc="upper center",
              bbox_to_anchor=(0.5, -0.02), ncol=3, fontsize=7, frameon=False)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, bbox_inches="tight")
    plt.close(fig)
    return out

"""Region safety over many images: the plan of a run and the loop that carries it out.

A :class:`RunPlan` names what to check (images by index, regions, the
manipulation, the method); :func:`check_images` checks every planned region
of every planned image with :func:`nnaudit.verify.regions.api.check_image`,
keeps the results it is given (``done``, from an interrupted run) and tells a
:class:`RunListener` about every image started, region checked and image
finished.  Recording results (the ``regions`` JSON document, writing it as
the run goes, resuming from it) is the glue's job (:mod:`nnaudit.runs.regions`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nnaudit.verify.regions.api import RegionConfig, check_image
from nnaudit.verify.regions.result import ImageResult, RegionResult
from nnaudit.verify.regions.layout import ImageLayout, ImageRegion, RegionChannels, layout_of
from nnaudit.verify.regions.spec import Manipulation

log = logging.getLogger(__name__)

#: region results to keep, by image index, then by (region id, method)
Done = Mapping[int, Mapping[tuple[int, str], RegionResult]]


@dataclass(frozen=True)
class RunPlan:
    """What to check: images by index, regions, manipulation, method.

    ``layout``: how the input is an image (None: :func:`layout_of` the
    network); ``channels``: whether the regions (already in ``regions``)
    were made per channel, recorded with the run."""

    indices: tuple[int, ...]
    regions: tuple[ImageRegion, ...]
    manipulation: Manipulation
    method: str
    grid: tuple[int, int] | None
    patch: int | None
    config: RegionConfig
    flush_every: int = 8       # write the JSON after this many new region results
    layout: ImageLayout | None = None                   # None: layout_of(network)
    channels: RegionChannels = RegionChannels.ALL       # regions move all channels of their pixels, or one each


class RunListener:
    """What :func:`check_images` reports as it goes; these defaults do nothing."""

    def image_started(self, index: int) -> None:
        """Image ``index`` is about to be checked."""

    def region_checked(self, result: RegionResult) -> None:
        """A new result of the current image (kept results are not reported)."""

    def image_checked(self, image: ImageResult) -> None:
        """The current image is finished (or skipped: misclassified)."""


def check_images(network: Any, x: np.ndarray, y: np.ndarray, plan: RunPlan, *, done: Done | None = None,
                 listener: RunListener | None = None) -> list[ImageResult]:
    """Check every planned region of the images ``x[i]`` (labels ``y[i]``), ``i`` in ``plan.indices``.

    ``x``: ``(N, *input_shape)``; ``done``: results to keep instead of
    checking again.  One onnxruntime session on ``network``'s file confirms
    every counterexample.  Returns the image results in plan order.
    """
    from nnaudit.networks.devices import device_name
    from nnaudit.networks.runtime import reference

    device_name(plan.config.device)  # a GPU asked for and missing: a ConfigError before any work
    listener = listener or RunListener()
    ort = reference(network)
    results = []
    for index in plan.indices:
        listener.image_started(index)
        image = check_image(network, x[index], int(y[index]), list(plan.regions), plan.manipulation,
                            method=plan.method, config=plan.config, ort=ort, index=index,
                            done=(done or {}).get(index), on_result=listener.region_checked,
                            layout=plan.layout or layout_of(network))
        results.append(image)
        listener.image_checked(image)
    log.debug("checked %d images", len(results))
    return results


def image_shape(network: Any, layout: ImageLayout | None = None) -> list[int]:
    """The ``shape`` recorded for an image: ``[H, W]`` for one channel, else
    ``[C, H, W]`` or ``[H, W, C]`` in the order of the flat input."""
    return list((layout or layout_of(network)).shape)


def summary(results: Sequence[ImageResult]) -> dict[str, dict[str, int]]:
    """``{method: {verdict: count}}`` over all images."""
    out: dict[str, dict[str, int]] = {}
    for im in results:
        for m, counts in im.counts().items():
            tgt = out.setdefault(m, dict.fromkeys(counts, 0))
            for k, v in counts.items():
                tgt[k] += v
    return out

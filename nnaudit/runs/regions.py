"""``run_regions``: region safety of many images, and their ``regions`` document.

The images are checked by :func:`nnaudit.verify.regions.run.check_images`;
this module records them: the document gets one entry per image, filled
region by region, and is written after every image and every
``plan.flush_every`` region results, and on Ctrl-C, when the record has a
JSON path.  Resuming keeps the region results already in the file (also of
an image left half done) and checks only the rest.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from nnaudit.errors import DataError
from nnaudit.runs.record import Record, finish, open_document, save
from nnaudit.verify.regions.api import RegionConfig, bound_batching, method_list, resolve_regions
from nnaudit.verify.regions.result import ImageResult, RegionResult, RegionVerdict
from nnaudit.verify.regions.run import RunListener, RunPlan, check_images, image_shape
from nnaudit.verify.regions.layout import ImageLayout, RegionChannels, layout_of
from nnaudit.verify.regions.spec import Manipulation


@dataclass(frozen=True)
class RegionsRun:
    """A region run given by keywords, as the checks file and the pytest fixture give it."""

    grid: tuple[int, int] | None = (4, 4)    # region grid (rows, cols); None and no patch: the whole image
    patch: int | None = None                 # square patches of this side instead of a grid
    step: float = 0.1                        # manipulation step per pixel ...
    steps: int = 1                           # ... and steps each way
    budget: float | None = None              # budget over the region (None: none)
    budget_norm: str = "l0"                  # l0: values changed; l1: summed change
    clip: tuple[float, float] = (0.0, 1.0)   # valid input range
    method: str = "exact"                    # exact, dlv or both
    timeout: float = 10.0                    # seconds per region and method
    seed: int = 0                            # recorded as the run's seed
    time_bank: float = 0.0                   # exact: extra time per region from the image's unused time, in timeouts
    device: str = "cpu"                      # where the torch work runs: cpu, cuda, cuda:N (auto: resolve first)

    @property
    def spec(self) -> str:
        """The regions as :func:`~nnaudit.verify.regions.api.resolve_regions` reads them."""
        if self.patch is not None:
            return f"patch:{self.patch}"
        return f"{self.grid[0]}x{self.grid[1]}" if self.grid else "whole"

    def manipulation(self) -> Manipulation:
        return Manipulation(step=self.step, steps=self.steps, clip=self.clip,
                            budget_norm=None if self.budget is None else self.budget_norm, budget=self.budget)

    def plan(self, network: Any, count: int) -> RunPlan:
        """The plan over the first ``count`` images."""
        regions = resolve_regions(layout_of(network), self.spec)
        grid = tuple(self.grid) if self.grid and self.patch is None else None
        return RunPlan(tuple(range(count)), tuple(regions), self.manipulation(), self.method, grid, self.patch,
                       RegionConfig(timeout_per_region=self.timeout, bank=self.time_bank, device=self.device))

    def settings(self, count: int) -> dict[str, Any]:
        """The ``settings`` recorded for this run over ``count`` images."""
        return {"regions": self.spec, "manipulation": self.manipulation().to_dict(), "method": self.method,
                "timeout_per_region": self.timeout, "num_images": int(count),
                **({"bank": self.time_bank} if self.time_bank else {}),
                **({"device": self.device} if self.device != "cpu" else {})}


def regions_settings(plan: RunPlan, data: str | None) -> dict[str, Any]:
    """The ``settings`` recorded for ``plan`` on the data named ``data`` (what ``nnaudit regions`` records;
    per-channel regions and an explicit layout only when used, so older files still resume)."""
    extra: dict[str, Any] = {}
    if plan.channels is not RegionChannels.ALL:
        extra["region_channels"] = plan.channels.value
    if plan.layout is not None:
        extra["image_shape"] = list(plan.layout.shape)
    return {"data": data, "indices": list(plan.indices), "grid": None if plan.grid is None else list(plan.grid),
            "patch": plan.patch, "method": plan.method, "manipulation": plan.manipulation.to_dict(),
            **plan.config.to_dict(), **extra}


def run_regions(network: Any, x: np.ndarray, y: np.ndarray, plan: RunPlan | RegionsRun, record: Record = Record(), *,
                progress: Callable[[int, int], None] | None = None) -> tuple[list[ImageResult], dict[str, Any]]:
    """Check every planned region of the images ``x`` ``(N, *input_shape)``, labels ``y`` ``(N,)``.

    ``plan``: a :class:`~nnaudit.verify.regions.run.RunPlan` (settings default
    to :func:`regions_settings` with ``record.data``) or a :class:`RegionsRun`
    over all of ``x``.  ``progress(n, unsafe)`` is called with the number of region
    results just added (including ones kept from a resumed file) and how many of them are unsafe.  On
    KeyboardInterrupt the document is written with ``complete: false`` and
    the interrupt re-raised.  Returns the image results and the document.
    """
    if isinstance(plan, RegionsRun):
        record = record.filled(settings=plan.settings(len(x)), seeds={"regions": plan.seed})
        plan = plan.plan(network, len(x))
    else:
        record = record.filled(settings=regions_settings(plan, record.data), seeds={"attack": plan.config.exact.seed})
    check_range(network, x, plan)
    doc, saved = open_document("regions", network, record, body=_body(network, plan))
    recorder = _Recorder(doc, record, plan, _Blank(network, x, y, plan.layout), progress,
                         previous={int(im["index"]): im for im in (saved or {}).get("images", [])})
    try:
        images = check_images(network, x, y, plan, done=recorder.done(), listener=recorder)
    except KeyboardInterrupt:
        save(doc, record)
        raise
    return images, finish(doc, record)


def run_regions_campaign(network: Any, x: np.ndarray, y: np.ndarray, plan: RunPlan, record: Record,
                         campaign: CampaignSetup, *, progress: Callable[[int, int], None] | None = None
                         ) -> tuple[list[ImageResult], dict[str, Any], list[str]]:
    """:func:`run_regions` as a campaign: one job per image on the executor of ``campaign``, every image's result
    in its store as it arrives (images stored by an earlier run with the same settings are not checked again).

    Returns the image results, the document (written to ``record.json_path`` if set) and the error messages of
    images whose job raised (in the document as skipped, ``"error: ..."``)."""
    from nnaudit.campaign.executor import Executor, ExecutorConfig
    from nnaudit.campaign.regions import RegionsCampaign, run_images
    from nnaudit.reports.schema import plain
    from nnaudit.reports.store import ResultStore

    record = record.filled(settings=regions_settings(plan, record.data), seeds={"attack": plan.config.exact.seed})
    check_range(network, x, plan)
    doc, _ = open_document("regions", network, replace(record, resume=False), body=_body(network, plan))
    with ResultStore(campaign.store) as store, Executor(campaign.executor or ExecutorConfig()) as executor:
        job = RegionsCampaign(network, x, y, plan, plain(doc["settings"]))
        doc["images"], errors, _ = run_images(job, executor, store, progress=progress)
    images = [ImageResult.from_dict(im) for im in doc["images"] if not str(im.get("skipped", "")).startswith("error")]
    return images, finish(doc, record), errors


@dataclass(frozen=True)
class CampaignSetup:
    """Where a campaign's jobs run and where its results go."""

    store: str                 # the SQLite results store (":memory:" for none kept)
    executor: Any = None       # nnaudit.campaign.executor.ExecutorConfig (None: embedded, all cores)


def _body(network: Any, plan: RunPlan) -> dict[str, Any]:
    """The ``regions`` body of a document over ``plan``, with no images yet."""
    return {"manipulation": plan.manipulation.to_dict(), "grid": None if plan.grid is None else list(plan.grid),
            "patch": plan.patch, "methods": method_list(plan.method), "region_channels": plan.channels.value,
            "bounds": bound_batching(network, plan.method), "images": []}


def load_images(data: str, network: Any, layout: ImageLayout) -> tuple[np.ndarray, np.ndarray]:
    """The images of ``--data`` (a bundled name or an .npz) as ``(N, *input_shape)`` and their labels,
    after checking that their own shape fits the image ``layout`` of ``network``'s input."""
    from nnaudit.networks.datasets import read_data, validate_arrays

    x, y, source = read_data(data)
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim >= 2:
        check_image_shape(tuple(x.shape[1:]), layout, source)
    return validate_arrays(x, y, tuple(int(d) for d in network.input_shape), network.output_size, source)


def check_image_shape(sample_shape: tuple[int, ...], layout: ImageLayout, source: str) -> None:
    """DataError when images shaped ``sample_shape`` hold as many values as the network's
    input but in another arrangement (channels last for a channels-first network, HxW for
    another HxW), which reshaping would silently scramble; flat samples are taken as they are."""
    dims = tuple(d for d in sample_shape if d != 1)
    want = tuple(d for d in layout.shape if d != 1)
    if len(dims) <= 1 or dims == want or math.prod(dims) != layout.size:
        return                      # flat, matching, or a size mismatch load_data reports itself
    order = "channels first" if layout.channels_first else "channels last"
    hint = ""
    if len(dims) == 3 and layout.channels > 1 and sorted(dims) == sorted(want):
        perm = (0, 3, 1, 2) if layout.channels_first else (0, 2, 3, 1)
        hint = f" (e.g. x.transpose{perm})"
    raise DataError(f"{source}: images in 'x' are shaped {sample_shape} but the network reads images shaped "
                    f"{layout.shape} ({order if layout.channels > 1 else 'H x W'}); reorder the data{hint} or give "
                    "--image-shape")


def check_range(network: Any, x: np.ndarray, plan: RunPlan) -> None:
    """DataError naming the first planned image with values outside the clip range, before any work."""
    clip = plan.manipulation.clip
    if clip is None or not plan.indices:
        return
    flat = np.asarray(x)[np.asarray(plan.indices)].reshape(len(plan.indices), -1)
    out = (flat < clip[0]).any(axis=1) | (flat > clip[1]).any(axis=1)
    if out.any():
        i = int(np.argmax(out))
        hint = ("; the model normalises its input (--mean/--std), so give pixels, not normalised values"
                if getattr(network, "normalisation", None) is not None else "")
        raise DataError(f"regions: image {plan.indices[i]} has values in [{flat[i].min():g}, {flat[i].max():g}], outside "
                        f"the clip range [{clip[0]:g}, {clip[1]:g}] ({int(out.sum())} such images); set the clip "
                        f"range to the data's valid range (--clip LOW HIGH){hint}")


@dataclass(frozen=True)
class _Blank:
    """The document entry of an image before its first region result."""

    network: Any
    x: np.ndarray
    y: np.ndarray
    layout: Any = None      # the plan's ImageLayout (None: the network's)

    def __call__(self, index: int) -> dict[str, Any]:
        return {"index": index, "label": int(self.y[index]), "predicted": None,
                "shape": image_shape(self.network, self.layout),
                "x": np.asarray(self.x[index], dtype=np.float64).reshape(-1), "regions": []}


@dataclass
class _Recorder(RunListener):
    """Keeps the document in step with the run."""

    doc: dict[str, Any]
    record: Record
    plan: RunPlan
    blank: Callable[[int], dict[str, Any]]
    progress: Callable[[int, int], None] | None   # progress(regions done, of them unsafe)
    previous: dict[int, dict[str, Any]] = field(default_factory=dict)  # index -> saved entry (resume)
    pending: int = 0                                                   # results not yet written

    def done(self) -> dict[int, dict[tuple[int, str], RegionResult]]:
        return {index: {(r["id"], r["method"]): RegionResult.from_dict(r) for r in im["regions"]}
                for index, im in self.previous.items()}

    def _advance(self, n: int, unsafe: int = 0) -> None:
        if self.progress is not None and n:
            self.progress(n, unsafe)

    def image_started(self, index: int) -> None:
        entry = self.previous.get(index)
        self._advance(len(entry["regions"]) if entry else 0, _unsafe([entry] if entry else []))
        self.doc["images"].append(entry or self.blank(index))

    def region_checked(self, result: RegionResult) -> None:
        self.doc["images"][-1]["regions"].append(result.to_dict())
        self.pending += 1
        self._advance(1, int(result.verdict is RegionVerdict.UNSAFE))
        if self.pending >= self.plan.flush_every:
            self.pending = 0
            save(self.doc, self.record)

    def image_checked(self, image: ImageResult) -> None:
        kept = len(self.previous.get(image.index, {}).get("regions", []))
        self.doc["images"][-1] = image.to_dict()
        if image.skipped:
            self._advance(len(self.plan.regions) * len(method_list(self.plan.method)) - kept)
        save(self.doc, self.record)


def _unsafe(images: list[dict[str, Any]]) -> int:
    """How many regions of the image entries ``images`` are unsafe (progress)."""
    return sum(1 for im in images for r in (im or {}).get("regions", []) if r.get("verdict") == "unsafe")

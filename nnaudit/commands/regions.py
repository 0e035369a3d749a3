"""``nnaudit regions MODEL.onnx --data ...``: safety of every image region."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from nnaudit.commands import normalisation
from nnaudit.commands.types import COUNT, OUTPUT_FILE, SECONDS, WORKERS
from nnaudit.errors import Terminated

if TYPE_CHECKING:  # pragma: no cover
    from nnaudit.verify.regions.api import RegionConfig
    from nnaudit.verify.regions.result import ImageResult
    from nnaudit.verify.regions.run import RunPlan
    from nnaudit.verify.regions.spec import Manipulation

EPILOG = ("Exit codes: 0 every region safe, 1 some region unsafe, 2 bad input, 3 some region unknown "
          "(none unsafe), 130 interrupted (partial JSON written; continue with --resume), 143 terminated "
          "by SIGTERM (the same).")


@click.command("regions", epilog=EPILOG)
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--data", required=True, help="Images: a bundled set (digits) or an .npz with arrays x and y.")
@click.option("--limit", type=COUNT, default=None, help="Check only the first N images.")
@click.option("--start", type=int, default=0, show_default=True, help="Index of the first image.")
@click.option("--grid", default=None, help="Regions: a ROWSxCOLS grid, e.g. 4x4 (default 4x4 unless --patch/--whole).")
@click.option("--patch", type=int, default=None, help="Regions: non-overlapping PATCH x PATCH squares.")
@click.option("--whole", is_flag=True, help="Regions: the whole image as one region.")
@click.option("--region-channels", type=click.Choice(["all", "each"]), default="all", show_default=True,
              help="all: a region moves its pixels in every channel; each: one region per pixel set and channel.")
@click.option("--image-shape", default=None, metavar="HxW|CxHxW",
              help="How the input is an image, e.g. 28x28 or 3x32x32 (default: from the model's input).")
@click.option("--step", type=float, default=0.05, show_default=True, help="Size of one manipulation step.")
@click.option("--steps", type=int, default=2, show_default=True, help="Steps each way: values move by k*step, |k| <= STEPS.")
@click.option("--clip", nargs=2, type=float, default=(0.0, 1.0), show_default=True, help="Valid input range LOW HIGH.")
@click.option("--budget-l1", type=float, default=None, help="Keep members with sum |k|*step <= this over the region.")
@click.option("--budget-l0", type=int, default=None, help="Keep members changing at most this many values.")
@click.option("--method", type=click.Choice(["exact", "dlv", "both"]), default="exact", show_default=True,
              help="exact: bounds / Z3 / enumeration; dlv: the paper's layer-by-layer search; both.")
@click.option("--timeout-per-region", type=SECONDS, default=10.0, show_default=True, help="Seconds per region and method.")
@click.option("--time-bank", type=click.FloatRange(0.0, 100.0), default=0.0, show_default=True,
              help="exact: a region may also spend what its image's earlier regions left unused of their timeouts, "
                   "up to this many timeouts more (the image never takes longer than regions x timeout).")
@click.option("--dlv-layer", type=int, default=1, show_default=True, help="DLV: layer to manipulate (0 = input).")
@click.option("--dlv-features", type=int, default=4, show_default=True, help="DLV: number of features (numOfFeatures).")
@click.option("--dlv-dims", type=int, default=3, show_default=True, help="DLV: dimensions per feature (featureDims).")
@click.option("--dlv-mode", type=click.Choice(["corners", "line", "point"]), default="corners", show_default=True,
              help="DLV: enumeration of each feature's ladder points.")
@click.option("--dlv-search", type=click.Choice(["path", "single"]), default="path", show_default=True,
              help="DLV: compose features along paths, best-first, or try each feature alone.")
@click.option("--dlv-heuristic", type=click.Choice(["activation", "derivative"]), default="derivative",
              show_default=True, help="DLV: ranking of features (heuristics).")
@click.option("--dlv-depth", type=int, default=64, show_default=True,
              help="DLV: features composed along a path at most (--dlv-search path).")
@click.option("--dlv-all", is_flag=True, help="DLV: collect all adversarial examples instead of stopping at the first.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the discrete attack.")
@click.option("--json", "json_path", type=OUTPUT_FILE, default=None, help="Write the result JSON here.")
@click.option("--resume", is_flag=True, help="Continue the run recorded in --json (same model and settings).")
@click.option("--maps", type=click.Path(file_okay=False), default=None, help="Write a safety-map PNG per image here.")
@click.option("--store", type=OUTPUT_FILE, default=None,
              help="Run as a campaign, one job per image, each image's result kept in this SQLite store as it "
                   "arrives; a re-run skips stored images.")
@click.option("--scheduler", default=None, metavar="tcp://HOST:PORT",
              help="Run the images on this Dask scheduler (default: $NNAUDIT_SCHEDULER with --store).")
@click.option("--workers", type=WORKERS, default=None,
              help="Local worker processes of a campaign (--store; default: all cores).")
@click.option("--device", default="cpu", show_default=True,
              help="Where the bounds, the lattice attack and the ReLU-splitting search run: cpu, cuda, cuda:N or "
                   "auto (cuda when present).")
@normalisation.options()
def command(model: str, **options: Any) -> None:
    """Check, for every image of DATA and every region of it, whether moving
    each pixel of the region by up to STEPS steps of STEP (clipped to CLIP)
    can change MODEL's class: safe (proved), unsafe (an input onnxruntime
    confirms) or unknown (time budget spent).  With --mean/--std the model
    normalises its input itself: DATA, STEP and CLIP are in pixel space."""
    from nnaudit.runs.record import Record
    from nnaudit.networks.datasets import check_value_range
    from nnaudit.runs.regions import check_range, load_images, run_regions, run_regions_campaign

    opts = RegionsOptions(**options)
    opts.check()
    net = normalisation.load_model(model, normalisation.parse(opts.mean, opts.std))
    x, y = load_images(opts.data, net, opts.layout(net))
    plan = opts.plan(net, len(x))
    check_value_range(x[list(plan.indices)], *opts.clip, str(opts.data), normalisation.range_hint(net))
    check_range(net, x, plan)  # before the progress bar: bad data is one line
    record = Record(data=str(opts.data), json_path=opts.json_path, resume=opts.resume, device=plan.config.device)
    total = len(plan.indices) * len(plan.regions) * (2 if opts.method == "both" else 1)
    errors: list[str] = []
    try:
        with click.progressbar(length=total, label="regions", file=sys.stderr) as bar:
            def advance(n: int, unsafe: int) -> None:
                bar.update(n)

            if opts.campaign() is None:
                results, doc = run_regions(net, x, y, plan, record, progress=advance)
            else:
                results, doc, errors = run_regions_campaign(net, x, y, plan, record, opts.campaign(),
                                                            progress=advance)
    except KeyboardInterrupt as stop:
        term = isinstance(stop, Terminated)
        where = f"; partial results in {opts.json_path} (continue with --resume)" if opts.json_path else ""
        where = f"; results so far in {opts.store} (run the same command again to go on)" if opts.store else where
        click.echo(f"\n{'terminated (SIGTERM)' if term else 'interrupted'}{where}", err=True)
        raise SystemExit(Terminated.exit_code if term else 130) from None
    if opts.maps:
        from nnaudit.reports.images import save_safety_map

        for im in doc["images"]:
            save_safety_map(im, Path(opts.maps) / f"image_{im['index']:04d}.png")
    _report(results, opts.json_path, errors)


def _report(results: list[ImageResult], json_path: str | None, errors: Sequence[str] = ()) -> None:
    """Print the counts per method and exit with the code of the worst verdict (an image whose job
    raised counts as unknown: none of its regions is known safe)."""
    from nnaudit.verify.regions.run import summary

    counts = summary(results)
    skipped = sum(1 for r in results if r.skipped)
    for m, c in counts.items():
        click.echo(f"{m:<6} safe {c['safe']:>5}  unsafe {c['unsafe']:>5}  unknown {c['unknown']:>5}")
    for message in errors:
        click.echo(f"error  {message}")
    failed = f", {len(errors)} errors" if errors else ""
    click.echo(f"images {len(results) + len(errors)} ({skipped} skipped: misclassified{failed})"
               + (f"; result in {json_path}" if json_path else ""))
    logging.getLogger(__name__).debug("regions done")
    if any(c["unsafe"] for c in counts.values()):
        raise SystemExit(1)
    if errors or any(c["unknown"] for c in counts.values()):
        raise SystemExit(3)


@dataclass(frozen=True)
class RegionsOptions:
    """The options of ``nnaudit regions`` as Click parsed them, and what they make."""

    data: str
    limit: int | None
    start: int
    grid: str | None
    patch: int | None
    whole: bool
    step: float
    steps: int
    clip: tuple[float, float]
    budget_l1: float | None
    budget_l0: int | None
    method: str
    timeout_per_region: float
    time_bank: float
    dlv_layer: int
    dlv_features: int
    dlv_dims: int
    dlv_mode: str
    dlv_all: bool
    seed: int
    json_path: str | None
    resume: bool
    maps: str | None
    store: str | None = None          # --store FILE: run as a campaign, results in this SQLite store
    scheduler: str | None = None      # --scheduler tcp://HOST:PORT (a campaign on Dask)
    workers: int | None = None        # --workers N: local processes of a campaign
    mean: str | None = None   # --mean: input normalisation, comma-separated (parsed by commands.normalisation)
    std: str | None = None    # --std
    region_channels: str = "all"      # --region-channels all|each (RegionChannels)
    image_shape: str | None = None    # --image-shape HxW|CxHxW (None: from the model's input)
    dlv_search: str = "path"          # --dlv-search path|single (DLVSearch)
    dlv_heuristic: str = "derivative"  # --dlv-heuristic activation|derivative (Heuristic)
    dlv_depth: int = 64               # --dlv-depth N
    device: str = "cpu"               # --device cpu|cuda|cuda:N|auto

    def check(self) -> None:
        """Options that exclude or need each other; SpecError/ConfigError before any work."""
        from nnaudit.errors import ConfigError, SpecError

        if sum(v is not None and v is not False for v in (self.grid, self.patch, self.whole or None)) > 1:
            raise SpecError("regions: give only one of --grid, --patch and --whole")
        if self.budget_l1 is not None and self.budget_l0 is not None:
            raise SpecError("regions: give only one of --budget-l1 and --budget-l0")
        if self.resume and self.json_path is None:
            raise ConfigError("regions: --resume needs --json FILE to continue from")

    def campaign(self) -> Any:
        """The :class:`~nnaudit.runs.regions.CampaignSetup` of --store/--scheduler/--workers (None: one process)."""
        from nnaudit.runs.regions import CampaignSetup

        if self.store is None and self.scheduler is None and self.workers is None:
            return None
        from nnaudit.campaign.executor import ExecutorConfig

        return CampaignSetup(self.store or ":memory:", ExecutorConfig.from_options(self.scheduler, self.workers))

    @property
    def spec(self) -> str:
        """The regions as ``resolve_regions`` reads them."""
        return "whole" if self.whole else f"patch:{self.patch}" if self.patch is not None else (self.grid or "4x4")

    def manipulation(self) -> Manipulation:
        from nnaudit.verify.regions.spec import Manipulation

        budget_norm = "l1" if self.budget_l1 is not None else "l0" if self.budget_l0 is not None else None
        return Manipulation(step=self.step, steps=self.steps, clip=tuple(self.clip), budget_norm=budget_norm,
                            budget=self.budget_l1 if self.budget_l1 is not None else self.budget_l0)

    def config(self) -> RegionConfig:
        from nnaudit.verify.regions.api import RegionConfig
        from nnaudit.verify.regions.dlv import DLVConfig
        from nnaudit.verify.regions.exact import ExactConfig

        dlv = DLVConfig(layer=self.dlv_layer, num_features=self.dlv_features, feature_dims=self.dlv_dims,
                        mode=self.dlv_mode, exit_when="all" if self.dlv_all else "first", search=self.dlv_search,
                        heuristic=self.dlv_heuristic, depth=self.dlv_depth)
        from nnaudit.networks.devices import device_name

        return RegionConfig(timeout_per_region=self.timeout_per_region, bank=self.time_bank,
                            exact=replace(ExactConfig(), seed=self.seed), dlv=dlv,
                            device=device_name(self.device))  # auto resolved: the record names what ran

    def plan(self, network: Any, count: int) -> RunPlan:
        """The :class:`~nnaudit.verify.regions.run.RunPlan` over ``count`` images of ``network``'s input."""
        from nnaudit.errors import ConfigError
        from nnaudit.verify.regions.api import resolve_regions
        from nnaudit.verify.regions.run import RunPlan
        from nnaudit.verify.regions.spec import RegionChannels, parse_grid

        if self.start < 0 or self.start >= count:
            raise ConfigError(f"regions: --start {self.start} is outside the {count} images of {self.data}")
        end = count if self.limit is None else min(count, self.start + max(self.limit, 0))
        manip = self.manipulation()
        channels = RegionChannels(self.region_channels)
        regions = resolve_regions(self.layout(network), self.spec, channels)
        grid = parse_grid(self.spec) if self.patch is None and not self.whole else None
        return RunPlan(tuple(range(self.start, end)), tuple(regions), manip, self.method, grid, self.patch,
                       self.config(), layout=self.layout(network) if self.image_shape else None, channels=channels)

    def layout(self, network: Any) -> Any:
        """The :class:`~nnaudit.verify.regions.layout.ImageLayout` of ``network``'s input (``--image-shape`` first)."""
        from nnaudit.verify.regions.layout import layout_of

        return layout_of(network, self.image_shape)

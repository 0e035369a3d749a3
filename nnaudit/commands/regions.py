"""``nnaudit regions MODEL.onnx --data ...``: safety of every image region."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

EPILOG = ("Exit codes: 0 every region safe, 1 some region unsafe, 2 bad input, 3 some region unknown "
          "(none unsafe), 130 interrupted (partial JSON written; continue with --resume).")


@click.command("regions", epilog=EPILOG)
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--data", required=True, help="Images: a bundled set (digits) or an .npz with arrays x and y.")
@click.option("--limit", type=int, default=None, help="Check only the first N images.")
@click.option("--start", type=int, default=0, show_default=True, help="Index of the first image.")
@click.option("--grid", default=None, help="Regions: a ROWSxCOLS grid, e.g. 4x4 (default 4x4 unless --patch/--whole).")
@click.option("--patch", type=int, default=None, help="Regions: non-overlapping PATCH x PATCH squares.")
@click.option("--whole", is_flag=True, help="Regions: the whole image as one region.")
@click.option("--step", type=float, default=0.05, show_default=True, help="Size of one manipulation step.")
@click.option("--steps", type=int, default=2, show_default=True, help="Steps each way: values move by k*step, |k| <= STEPS.")
@click.option("--clip", nargs=2, type=float, default=(0.0, 1.0), show_default=True, help="Valid input range LOW HIGH.")
@click.option("--budget-l1", type=float, default=None, help="Keep members with sum |k|*step <= this over the region.")
@click.option("--budget-l0", type=int, default=None, help="Keep members changing at most this many values.")
@click.option("--method", type=click.Choice(["exact", "dlv", "both"]), default="exact", show_default=True,
              help="exact: bounds / Z3 / enumeration; dlv: the paper's layer-by-layer search; both.")
@click.option("--timeout-per-region", type=float, default=10.0, show_default=True, help="Seconds per region and method.")
@click.option("--dlv-layer", type=int, default=1, show_default=True, help="DLV: layer to manipulate (0 = input).")
@click.option("--dlv-features", type=int, default=4, show_default=True, help="DLV: number of features (numOfFeatures).")
@click.option("--dlv-dims", type=int, default=3, show_default=True, help="DLV: dimensions per feature (featureDims).")
@click.option("--dlv-mode", type=click.Choice(["corners", "line", "point"]), default="corners", show_default=True,
              help="DLV: enumeration of each feature's ladder points.")
@click.option("--dlv-all", is_flag=True, help="DLV: collect all adversarial examples instead of stopping at the first.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the discrete attack.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None, help="Write the result JSON here.")
@click.option("--resume", is_flag=True, help="Continue the run recorded in --json (same model and settings).")
@click.option("--maps", type=click.Path(file_okay=False), default=None, help="Write a safety-map PNG per image here.")
def command(model: str, data: str, limit: int | None, start: int, grid: str | None, patch: int | None, whole: bool,
            step: float, steps: int, clip: tuple[float, float], budget_l1: float | None, budget_l0: int | None,
            method: str, timeout_per_region: float, dlv_layer: int, dlv_features: int, dlv_dims: int, dlv_mode: str,
            dlv_all: bool, seed: int, json_path: str | None, resume: bool, maps: str | None) -> None:
    """Check, for every image of DATA and every region of it, whether moving
    each pixel of the region by up to STEPS steps of STEP (clipped to CLIP)
    can change MODEL's class: safe (proved), unsafe (an input onnxruntime
    confirms) or unknown (time budget spent)."""
    from dataclasses import replace

    from nnaudit.errors import ConfigError, SpecError
    from nnaudit.networks import load
    from nnaudit.networks.datasets import load_data
    from nnaudit.verify.regions.dlv import DLVConfig
    from nnaudit.verify.regions.api import RegionConfig, resolve_regions
    from nnaudit.verify.regions.exact import ExactConfig
    from nnaudit.verify.regions.run import RunPlan, run, summary
    from nnaudit.verify.regions.spec import ImageLayout, Manipulation, parse_grid

    if sum(v is not None and v is not False for v in (grid, patch, whole or None)) > 1:
        raise SpecError("regions: give only one of --grid, --patch and --whole")
    if budget_l1 is not None and budget_l0 is not None:
        raise SpecError("regions: give only one of --budget-l1 and --budget-l0")
    if resume and json_path is None:
        raise ConfigError("regions: --resume needs --json FILE to continue from")
    net = load(model)
    x, y = load_data(data, tuple(net.input_shape), num_classes=net.output_size)
    if start < 0 or start >= len(x):
        raise ConfigError(f"regions: --start {start} is outside the {len(x)} images of {data}")
    end = len(x) if limit is None else min(len(x), start + max(limit, 0))
    budget_norm = "l1" if budget_l1 is not None else "l0" if budget_l0 is not None else None
    manip = Manipulation(step=step, steps=steps, clip=tuple(clip), budget_norm=budget_norm,
                         budget=budget_l1 if budget_l1 is not None else budget_l0)
    layout = ImageLayout.from_input_shape(net.input_shape)
    spec = "whole" if whole else f"patch:{patch}" if patch is not None else (grid or "4x4")
    region_list = resolve_regions(layout, spec)
    config = RegionConfig(timeout_per_region=timeout_per_region, exact=replace(ExactConfig(), seed=seed),
                          dlv=DLVConfig(layer=dlv_layer, num_features=dlv_features, feature_dims=dlv_dims,
                                        mode=dlv_mode, exit_when="all" if dlv_all else "first"))
    plan = RunPlan(tuple(range(start, end)), tuple(region_list), manip, method,
                   parse_grid(spec) if patch is None and not whole else None, patch, config)
    total = len(plan.indices) * len(region_list) * (2 if method == "both" else 1)
    target = Path(json_path) if json_path else None
    try:
        with click.progressbar(length=total, label="regions", file=sys.stderr) as bar:
            doc, results = run(net, x, y, plan, data=str(data), json_path=target, resume=resume, progress=bar.update)
    except KeyboardInterrupt:
        where = f"; partial results in {target} (continue with --resume)" if target else ""
        click.echo(f"\ninterrupted{where}", err=True)
        raise SystemExit(130) from None
    if maps:
        from nnaudit.verify.region_map import save_safety_map

        for im in doc["images"]:
            save_safety_map(im, Path(maps) / f"image_{im['index']:04d}.png")
    counts = summary(results)
    skipped = sum(1 for r in results if r.skipped)
    for m, c in counts.items():
        click.echo(f"{m:<6} safe {c['safe']:>5}  unsafe {c['unsafe']:>5}  unknown {c['unknown']:>5}")
    click.echo(f"images {len(results)} ({skipped} skipped: misclassified)" + (f"; result in {target}" if target else ""))
    logging.getLogger(__name__).debug("regions done")
    if any(c["unsafe"] for c in counts.values()):
        raise SystemExit(1)
    if any(c["unknown"] for c in counts.values()):
        raise SystemExit(3)

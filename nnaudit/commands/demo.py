"""``nnaudit demo [--out DIR]``: the whole suite on the bundled zoo, and one report.

What ``make demo`` runs.  Four short runs, each writing its JSON result
(reports/SCHEMA.md) into DIR, then ``report.html`` from all of them:

1. region safety (DLV question) of a 4x4 grid on a few test digits (digits-ffn),
   through the runner of ``nnaudit regions``;
2. FGSM and PGD at a few eps on 100 test digits (digits-ffn);
3. complete verification of local-robustness properties around a few digits;
4. DANN on the two-moons task (source-only baseline alongside), exported to ONNX.

Each part runs through the same function as its command (:mod:`nnaudit.runs`),
so it writes the same document.  A part that fails is reported and the
others still run (exit 1).
About a minute on 2 CPU cores; ``--quick`` is a seconds-long smoke run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click

log = logging.getLogger("nnaudit.demo")


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo runs."""

    model: str = "digits-ffn"                     # zoo network for regions, attacks and verify
    region_images: int = 4                        # correctly classified test digits whose regions are checked
    grid: str = "4x4"                             # region grid on the 8x8 image
    region_step: float = 0.3                      # manipulation step (input units) ...
    region_steps: int = 2                         # ... and number of steps each way
    region_timeout: float = 2.0                   # seconds per region
    attack_samples: int = 100                     # test digits attacked
    attacks: tuple[str, ...] = ("fgsm", "pgd")    # attacks run at every eps
    eps: tuple[float, ...] = (0.05, 0.1, 0.2)     # L-inf budgets
    verify_eps: tuple[float, ...] = (0.02, 0.05)  # robustness radii verified around each digit
    verify_images: int = 3                        # correctly classified digits used for properties
    verify_timeout: float = 20.0                  # seconds per property
    dann_epochs: int = 300                        # DANN epochs on moons (100 did not separate the moons)
    seed: int = 0                                 # every seed of the demo


QUICK = DemoConfig(region_images=1, grid="2x2", attack_samples=12, attacks=("fgsm",), eps=(0.1,),
                   verify_eps=(0.05,), verify_images=1, verify_timeout=5.0, dann_epochs=3)


@click.command("demo", epilog="Exit codes: 0 ok, 1 a demo part failed (the report shows the others).")
@click.option("--out", "out_dir", default="out/demo", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the JSON results and report.html.")
@click.option("--quick", is_flag=True, help="A seconds-long smoke run with tiny sizes.")
def command(out_dir: str, quick: bool) -> None:
    """Run region safety, attacks, verification and DANN on the bundled zoo,
    then write one HTML report and print where it is."""
    from nnaudit.reports.render import write_report

    config = QUICK if quick else DemoConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    command_line = f"nnaudit demo --out {out_dir}" + (" --quick" if quick else "")
    parts: list[tuple[str, Callable[..., dict[str, Any]]]] = [
        ("regions", _regions), ("attack", _attack), ("verify", _verify), ("adapt", _adapt)]
    written, failed = [], []
    for n, (name, run) in enumerate(parts, start=1):
        click.echo(f"[{n}/{len(parts)}] {name} ...", err=True)
        t0 = time.perf_counter()
        try:
            doc = run(config, out, command_line)
        except Exception as exc:  # noqa: BLE001 - a broken part must not hide the others
            log.exception("demo: %s failed", name)
            click.echo(f"      FAILED: {type(exc).__name__}: {exc}", err=True)
            failed.append(name)
            continue
        written.append(_write(doc, out / f"{name}.json"))
        click.echo(f"      done in {time.perf_counter() - t0:.1f} s -> {written[-1]}", err=True)
    if not written:
        raise click.ClickException("no demo part ran; nothing to report")
    report = write_report(written, out / "report.html", title="nnaudit demo: the bundled zoo")
    click.echo(f"report: {report.resolve()}")
    if failed:
        raise SystemExit(1)


def _write(doc: dict[str, Any], path: Path) -> Path:
    from nnaudit.reports import schema

    schema.finish(doc)
    return schema.write_json(doc, path)


def _settings(config: DemoConfig, **used: Any) -> dict[str, Any]:
    """The settings a part used, and which demo preset it belongs to."""
    return {"demo": "quick" if config == QUICK else ("full" if config == DemoConfig() else asdict(config)), **used}


def _digits() -> tuple[Any, Any]:
    from nnaudit.networks.datasets import digits

    return digits("test")


def _regions(config: DemoConfig, out: Path, command_line: str) -> dict[str, Any]:
    """Region safety through the same runner as ``nnaudit regions`` (same document)."""
    import numpy as np

    from nnaudit.networks import zoo
    from nnaudit.runs.record import Record
    from nnaudit.runs.regions import regions_settings, run_regions
    from nnaudit.verify.regions.api import RegionConfig, resolve_regions
    from nnaudit.verify.regions.run import RunPlan
    from nnaudit.verify.regions.spec import ImageLayout, Manipulation

    net = zoo.load(config.model)
    x, y = _digits()
    chosen = np.flatnonzero(net.predict(x[:50]) == y[:50])[: config.region_images]  # misclassified ones are skipped anyway
    rows, cols = (int(v) for v in config.grid.split("x"))
    plan = RunPlan(tuple(int(i) for i in chosen),
                   tuple(resolve_regions(ImageLayout.from_input_shape(net.input_shape), config.grid)),
                   Manipulation(step=config.region_step, steps=config.region_steps, clip=(0.0, 1.0)), "exact",
                   (rows, cols), None, RegionConfig(timeout_per_region=config.region_timeout))
    record = Record(settings=_settings(config, **regions_settings(plan, "digits:test")), command=command_line)
    _, doc = run_regions(net, x, y, plan, record)
    return doc


def _attack(config: DemoConfig, out: Path, command_line: str) -> dict[str, Any]:
    from nnaudit.networks import zoo
    from nnaudit.runs.attack import AttackRun, run_attack
    from nnaudit.runs.record import Record

    net = zoo.load(config.model)
    x, y = _digits()
    n = config.attack_samples
    record = Record(settings=_settings(config, attacks=list(config.attacks), eps=list(config.eps), norm="linf",
                                       samples=n, data="digits:test", model=config.model),
                    seeds={"seed": config.seed}, command=command_line)
    run = AttackRun(attacks=config.attacks, eps=config.eps, norm="linf", seed=config.seed, threads=1)
    _, doc = run_attack(net, x[:n], y[:n], run, record)
    return doc


def _verify(config: DemoConfig, out: Path, command_line: str) -> dict[str, Any]:
    import numpy as np

    from nnaudit.networks import zoo
    from nnaudit.runs.record import Record
    from nnaudit.runs.verify import run_verify
    from nnaudit.verify.engine import VerifyConfig
    from nnaudit.verify.spec import robustness_property

    net = zoo.load(config.model)
    x, y = _digits()
    correct = np.flatnonzero(net.predict(x[:50]) == y[:50])[: config.verify_images]
    vc = VerifyConfig(timeout_s=config.verify_timeout)
    record = Record(settings=_settings(config, timeout_s=config.verify_timeout, radii=list(config.verify_eps),
                                       digits=[int(i) for i in correct], model=config.model, verify=asdict(vc)),
                    seeds={"seed": config.seed}, command=command_line)
    properties = []
    for i in correct:
        for eps in config.verify_eps:
            lo, hi = np.clip(x[i] - eps, 0.0, 1.0), np.clip(x[i] + eps, 0.0, 1.0)
            properties.append(robustness_property(lo, hi, int(y[i]), net.output_size, name=f"digit{int(i)}-linf{eps:g}"))
    _, doc = run_verify(net, properties, vc, record)
    return doc


def _adapt(config: DemoConfig, out: Path, command_line: str) -> dict[str, Any]:
    import numpy as np

    from nnaudit.adaptation import adapt_body, export_onnx, for_task, moons_task, train_dann
    from nnaudit.reports import schema

    data = moons_task(seed=config.seed)
    dann_config = for_task("moons", epochs=config.dann_epochs, seed=config.seed, a_distance_every=0, cpu_threads=1)
    doc = schema.new_result("adapt", command=command_line, seeds={"seed": config.seed},
                            settings=_settings(config, task="moons", dann=dann_config.to_dict()))
    run = train_dann(data, dann_config)
    samples = np.concatenate([data.source_eval.x[:128], data.target_eval.x[:128]])
    export = export_onnx(run, out / "moons-dann.onnx", samples=samples)
    doc.update(adapt_body(run, data, export))
    return doc

"""``nnaudit verify MODEL.onnx PROPERTY.vnnlib``: the complete verifier."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import click

from nnaudit.errors import NnauditError


@click.command("verify", epilog="Exit codes: 0 holds, 1 violated, 3 unknown/timeout, 2 bad input.")
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("prop", metavar="PROPERTY", type=click.Path(dir_okay=False))
@click.option("--timeout", "timeout", default=60.0, show_default=True, help="Wall-clock limit in seconds.")
@click.option("--result-file", type=click.Path(dir_okay=False), help="Write the verdict in the VNN-COMP result format.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON result document instead of a summary.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Also write the JSON result document to this file.")
@click.option("--workers", default=None, type=int, help="Processes: one search shares its sub-domains among them (ReLU or input splitting), Z3 leaves are decided in parallel (default: all cores).")
@click.option("--seed", default=0, show_default=True, help="Seed of the falsifier.")
@click.option("--alpha-steps", default=0, show_default=True, help="Optimise lower ReLU slopes (alpha-CROWN) for this many steps per batch.")
@click.option("--progress/--no-progress", default=None, help="Progress on stderr (default: when stderr is a terminal).")
def command(model: str, prop: str, timeout: float, result_file: str | None, as_json: bool, output: str | None,
            workers: int | None, seed: int, alpha_steps: int, progress: bool | None) -> None:
    """Decide whether PROPERTY (VNN-LIB) holds on MODEL (ONNX): holds (proved),
    violated (with a counterexample confirmed by onnxruntime) or unknown/timeout."""
    from nnaudit.verify.engine import VerifyConfig, verify_property
    from nnaudit.verify.results import Verdict, VerifyResult

    cfg = VerifyConfig(timeout_s=timeout)
    cfg = replace(cfg, falsify=replace(cfg.falsify, seed=seed),
                  bab=replace(cfg.bab, workers=workers if workers is not None else (os.cpu_count() or 1),
                              alpha_steps=alpha_steps))
    show = sys.stderr.isatty() if progress is None else progress
    from nnaudit import cli as entry

    # from the console script, the deadline counts from the start of the process (interpreter start-up
    # and imports included); called in-process (tests, the Python API), from here
    start = entry.PROCESS_START if entry.PROCESS_START is not None else time.monotonic()

    def report(done: int, left: int) -> None:
        click.echo(f"\r  sub-domains done {done}, open {left}, {time.monotonic() - start:.1f}s ", err=True, nl=False)

    try:
        from nnaudit.networks import load
        from nnaudit.verify.vnnlib import parse

        net = load(model)
        spec = parse(prop)
        spec.check_network(net.input_size, net.output_size, where=prop)
        # loading and parsing count against the deadline
        cfg = replace(cfg, timeout_s=max(0.1, timeout - (time.monotonic() - start)))
        res = verify_property(net, spec, config=cfg, progress=report if show else None)
    except NnauditError as exc:
        if result_file:
            Path(result_file).write_text("error\n")
        raise exc
    res = replace(res, prop=Path(prop).name)
    if show:
        click.echo("", err=True)
    if result_file:
        Path(result_file).write_text(res.vnncomp())
    doc = _document(net, res, cfg, seed)
    if output:
        from nnaudit.reports.schema import write_json

        write_json(doc, output)
    if as_json:
        click.echo(json.dumps(doc, indent=1, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
    else:
        _summary(res)
    raise SystemExit(res.verdict.exit_code if isinstance(res, VerifyResult) else Verdict.ERROR.exit_code)


def _document(net, res, cfg, seed: int) -> dict:
    from nnaudit.reports.schema import finish, new_result

    settings = {"timeout_s": cfg.timeout_s, "falsify": asdict(cfg.falsify), "bab": asdict(cfg.bab)}
    doc = new_result("verify", network=net, settings=settings, seeds={"falsify": seed})
    doc["instances"] = [res.to_dict()]
    return finish(doc, complete=True)


def _summary(res) -> None:
    click.echo(f"{res.verdict.value}  ({res.model}, {res.prop}, {res.time_s:.2f}s, "
               f"{res.subdomains} sub-domains, {res.z3_calls} Z3 calls)")
    if res.counterexample is not None:
        click.echo(f"  counterexample x = {[round(float(v), 6) for v in res.counterexample.x][:16]}")
        click.echo(f"  onnxruntime   y = {[round(float(v), 6) for v in res.counterexample.y][:16]}")
    if res.message:
        click.echo(f"  {res.message}")

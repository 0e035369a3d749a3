"""``nnaudit verify MODEL.onnx PROPERTY.vnnlib``: the complete verifier."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from nnaudit.commands import normalisation
from nnaudit.commands.types import OUTPUT_FILE, SECONDS, WORKERS
from nnaudit.errors import NnauditError

if TYPE_CHECKING:  # pragma: no cover
    from nnaudit.verify.engine import VerifyConfig


VERIFY_MEAN_HELP = ("Input normalisation as part of the model, per input channel or one value for all: PROPERTY's X_i are "
                    "then pixels, before (x - mean) / std.  Properties written for the normalised input (VNN-COMP's "
                    "oval21) need no --mean/--std; a box with a bound below 0 is refused as one of those.")


class MemorySize(click.ParamType):
    """A number of bytes with an optional unit (K, M, G, T: powers of 1024), at least 64 MiB."""

    name = "size"
    UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int):
            return value
        text = str(value).strip().upper().removesuffix("IB").removesuffix("B")
        unit = text[-1:] if text[-1:] in self.UNITS and text[-1:] != "" else ""
        try:
            number = float(text[:-1] if unit else text)
        except ValueError:
            self.fail(f"expected a size such as 4G, 512M or 2000000000, got {value!r}", param, ctx)
        size = number * self.UNITS[unit]
        if not size == size or size < (64 << 20) or size > (1 << 50):
            self.fail(f"expected a size between 64M and 1024T, got {value!r}", param, ctx)
        return int(size)


@click.command("verify", epilog="Exit codes: 0 holds, 1 violated, 3 unknown/timeout, 2 bad input.")
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("prop", metavar="PROPERTY", type=click.Path(dir_okay=False))
@click.option("--timeout", "timeout", type=SECONDS, default=60.0, show_default=True, help="Wall-clock limit in seconds.")
@click.option("--result-file", type=OUTPUT_FILE, help="Write the verdict in the VNN-COMP result format.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON result document instead of a summary.")
@click.option("--output", "-o", type=OUTPUT_FILE, help="Also write the JSON result document to this file.")
@click.option("--workers", default=None, type=WORKERS, help="Processes: one search shares its sub-domains among them (ReLU or input splitting), Z3 leaves are decided in parallel (default: all cores).")
@click.option("--seed", default=0, show_default=True, help="Seed of the falsifier.")
@click.option("--alpha-steps", default=0, show_default=True, help="Optimise lower ReLU slopes (alpha-CROWN) for this many steps per batch.")
@click.option("--progress/--no-progress", default=None, help="Progress on stderr (default: when stderr is a terminal).")
@click.option("--max-memory", type=MemorySize(), default=None,
              help="Memory budget of the run, e.g. 4G or 512M (default: min(8 GiB, 60% of physical memory)); "
                   "a run that would exceed it ends as unknown (exit 3).")
@click.option("--device", default="cpu", show_default=True,
              help="Where the bound computations run: cpu, cuda, cuda:N or auto (cuda when present). On a GPU the "
                   "search runs in one process (--workers does not apply to it).")
@click.option("--route", type=click.Choice(["auto", "torch", "dense"]), default="auto", hidden=True,
              help="Which route decides (benchmarks and tests): auto (the NumPy dense route first for small ReLU "
                   "networks, then the torch route), torch (the torch route only), dense (the dense route only).")
@normalisation.options(mean_help=VERIFY_MEAN_HELP)
@click.pass_context
def command(ctx: click.Context, model: str, prop: str, **options: Any) -> None:
    """Decide whether PROPERTY (VNN-LIB) holds on MODEL (ONNX): holds (proved),
    violated (with a counterexample confirmed by onnxruntime) or unknown/timeout."""
    from nnaudit.runs.record import Record
    from nnaudit.runs.verify import run_verify
    from nnaudit.verify.vnnlib import parse

    opts = VerifyOptions(**options)
    cfg = opts.engine()
    show = sys.stderr.isatty() if opts.progress is None else opts.progress
    start = _start(ctx)
    try:
        net = normalisation.load_model(model, normalisation.parse(opts.mean, opts.std))
        spec = parse(prop)
        spec.check_network(net.input_size, net.output_size, where=prop)
        # loading and parsing count against the deadline
        cfg = replace(cfg, timeout_s=max(0.1, opts.timeout - (time.monotonic() - start)))
        (res,), doc = run_verify(net, [spec], cfg, Record(json_path=opts.output, device=cfg.device),
                                 progress=_Progress(start) if show else None)
    except NnauditError:
        if opts.result_file:
            Path(opts.result_file).write_text("error\n")
        raise
    if show:
        click.echo("", err=True)
    _fast_exit(ctx)
    if opts.result_file:
        Path(opts.result_file).write_text(res.vnncomp())
    if opts.as_json:
        click.echo(json.dumps(doc, indent=1, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
    else:
        _summary(res)
    raise SystemExit(res.verdict.exit_code)


@dataclass(frozen=True)
class VerifyOptions:
    """The options of ``nnaudit verify`` as Click parsed them."""

    timeout: float
    result_file: str | None
    as_json: bool
    output: str | None
    workers: int | None
    seed: int
    alpha_steps: int
    progress: bool | None
    max_memory: int | None = None   # --max-memory in bytes (None: the default budget)
    route: str = "auto"             # --route (hidden): which route of the verifier decides
    device: str = "cpu"             # --device: where the torch route's bounds run
    mean: str | None = None   # --mean: input normalisation, comma-separated (parsed by commands.normalisation)
    std: str | None = None    # --std

    def engine(self) -> VerifyConfig:
        """The verifier's configuration: the defaults with these options."""
        from nnaudit.networks.devices import device_name
        from nnaudit.verify.dense_bab import Route
        from nnaudit.verify.engine import VerifyConfig

        cfg = VerifyConfig(timeout_s=self.timeout, route=Route(self.route), device=device_name(self.device))
        if self.max_memory is not None:
            cfg = replace(cfg, max_memory=self.max_memory)
        workers = self.workers if self.workers is not None else (os.cpu_count() or 1)
        return replace(cfg, falsify=replace(cfg.falsify, seed=self.seed),
                       bab=replace(cfg.bab, workers=workers, alpha_steps=self.alpha_steps))


def _start(ctx: click.Context) -> float:
    """When the deadline starts: from the console script, at the start of the process
    (interpreter start-up and imports included); called in-process (tests, the Python API), now."""
    from nnaudit.cli import CliContext

    obj = ctx.find_object(CliContext)
    return obj.process_start if obj is not None and obj.process_start is not None else time.monotonic()


def _fast_exit(ctx: click.Context) -> None:
    """Let the console script end the process as soon as the answer is out (see ``nnaudit.cli.main``)."""
    from nnaudit.cli import CliContext

    obj = ctx.find_object(CliContext)
    if obj is not None:
        obj.fast_exit = True


class _Progress:
    """Sub-domains done and open, and the seconds since the deadline started, on one stderr line."""

    def __init__(self, start: float) -> None:
        self.start = start

    def __call__(self, done: int, left: int) -> None:
        click.echo(f"\r  sub-domains done {done}, open {left}, {time.monotonic() - self.start:.1f}s ", err=True,
                   nl=False)


def _summary(res) -> None:
    click.echo(f"{res.verdict.value}  ({res.model}, {res.prop}, {res.time_s:.2f}s, "
               f"{res.subdomains} sub-domains, {res.z3_calls} Z3 calls)")
    if res.counterexample is not None:
        click.echo(f"  counterexample x = {[round(float(v), 6) for v in res.counterexample.x][:16]}")
        click.echo(f"  onnxruntime   y = {[round(float(v), 6) for v in res.counterexample.y][:16]}")
    if res.message:
        click.echo(f"  {res.message}")

"""``nnaudit attack MODEL.onnx --data DATA``: robust accuracy under adversarial attacks."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from nnaudit.commands import normalisation
from nnaudit.commands.types import COUNT, OUTPUT_FILE, WORKERS
from nnaudit.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from nnaudit.runs.attack import AttackRun


def _floats(text: str, what: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--{what}: expected comma-separated numbers, got {text!r}") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise ConfigError(f"--{what}: expected one or more finite numbers, got {text!r}")
    return values


def _options(pairs: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``ATTACK.FIELD=VALUE`` pairs -> {attack: {field: value}}; values parsed as JSON when possible."""
    out: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        attack, dot, name = key.partition(".")
        if not sep or not dot or not attack or not name:
            raise ConfigError(f"--set: expected ATTACK.OPTION=VALUE (e.g. pgd.steps=100), got {pair!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out.setdefault(attack.strip().lower(), {})[name.strip()] = value
    return out


def _check_option_types(options: dict[str, dict[str, Any]]) -> None:
    """``--set`` values of the type of the option's default (an int for ``steps``, a finite number
    for ``step_size``, a member for an enum), else ConfigError naming the key (issue #23): never a
    TypeError deep in an attack, nor an endless run on ``steps=1e999``."""
    import dataclasses
    import enum
    import importlib

    from nnaudit.attacks.api import ATTACKS, canonical

    for attack, values in options.items():
        module, cls, _ = ATTACKS[canonical(attack)]
        config = getattr(importlib.import_module(module), cls).config_class
        defaults = {f.name: f.default for f in dataclasses.fields(config)} if dataclasses.is_dataclass(config) else {}
        for key, value in values.items():
            default = defaults.get(key, dataclasses.MISSING)
            if isinstance(default, enum.Enum):
                ok = isinstance(value, str) and value in {m.value for m in type(default)}
            elif isinstance(default, (bool, str)):
                ok = type(value) is type(default)
            elif isinstance(default, int):
                ok = type(value) is int and abs(value) <= 10**9
            elif isinstance(default, float):
                ok = type(value) in (int, float) and math.isfinite(value) and abs(value) <= 1e9
            else:  # unknown keys are reported by the attack; None defaults take any JSON value
                ok = True
            if not ok:
                raise ConfigError(f"--set {attack}.{key}: expected a value like {default!r} "
                                  f"({type(default).__name__}), got {str(value)[:40]!r}")


@click.command("attack", epilog="Exit codes: 0 ok, 2 bad input (model, data, options).")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--data", required=True, help="Labelled samples: an .npz with x (N, ...) float and y (N,) int, or a bundled name (digits, moons).")
@click.option("--attacks", default="pgd", show_default=True,
              help="Comma-separated: fgsm, pgd, apgd-ce, apgd-dlr, apgd-t, fab, fab-t, square, cw (l2), deepfool, "
                   "jsma (l0); or autoattack (alias standard) alone: AutoAttack's cascade.")
@click.option("--version", "aa_version", type=click.Choice(["standard", "plus", "rand"]), default="standard",
              show_default=True, help="AutoAttack version (with --attacks autoattack).")
@click.option("--targeted", is_flag=True, help="Targeted: attack each sample towards each of its --target-classes most "
                                               "likely other classes; success = the target is reached.")
@click.option("--target-classes", type=COUNT, default=None,
              help="Target classes per sample for --targeted, APGD-T and FAB-T [default: 9, fewer when the model has fewer].")
@click.option("--eps", default="0.1", show_default=True, help="Comma-separated radii (for l0: numbers of changed input values).")
@click.option("--norm", type=click.Choice(["linf", "l2", "l1", "l0"]), default="linf", show_default=True, help="Threat-model norm (l1: fab, fab-t only).")
@click.option("--low", default=0.0, show_default=True, help="Smallest valid input value (data outside is an error).")
@click.option("--high", default=1.0, show_default=True, help="Largest valid input value.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--seed", default=0, show_default=True, help="Random seed (random starts); same seed, same result on CPU.")
@click.option("--batch-size", default=256, show_default=True, help="Samples attacked together.")
@click.option("--threads", type=WORKERS, default=None, help="torch CPU threads (default: torch's choice; 1 is fastest for small networks).")
@click.option("--limit", type=COUNT, default=None, help="Use only the first N samples.")
@click.option("--set", "settings", multiple=True, metavar="ATTACK.OPTION=VALUE", help="Attack option, e.g. pgd.steps=100 or cw.binary_search_steps=9 (repeatable).")
@click.option("--examples", default=4, show_default=True, help="Adversarial examples per eps kept in the JSON gallery.")
@click.option("--json", "json_path", type=OUTPUT_FILE, default=None, help="Write the result document here (updated after each attack).")
@click.option("--resume", is_flag=True, help="Continue the interrupted run saved in --json, skipping finished attacks.")
@click.option("--store", type=OUTPUT_FILE, default=None,
              help="Run as a campaign, one job per --chunk samples, each batch's result kept in this SQLite store "
                   "as it arrives; the same command again skips stored batches.")
@click.option("--scheduler", default=None, metavar="tcp://HOST:PORT",
              help="Run the batches on this Dask scheduler (default: $NNAUDIT_SCHEDULER with --store).")
@click.option("--workers", type=WORKERS, default=None,
              help="Local worker processes of a campaign (--store; default: all cores).")
@click.option("--chunk", type=COUNT, default=None, help="Samples per campaign job [default: 128].")
@normalisation.options()
def command(model: str, **options: Any) -> None:
    """Attack MODEL on DATA and report clean accuracy, robust accuracy per eps
    (per attack and the per-sample worst case over all attacks), success rate,
    median perturbation of successful attacks and time per attack.  Every
    success is confirmed by onnxruntime on MODEL itself.  With --mean/--std
    the model normalises its input itself: DATA, EPS, --low/--high are in pixel space."""
    from nnaudit.networks.datasets import check_value_range, load_data
    from nnaudit.runs.attack import run_attack
    from nnaudit.runs.record import Record

    opts = AttackOptions(**options)
    config = opts.config()  # everything checked before any work
    net = normalisation.load_model(model, normalisation.parse(opts.mean, opts.std))
    x, y = load_data(opts.data, tuple(net.input_shape), num_classes=net.output_size)
    if opts.limit is not None:
        x, y = x[:opts.limit], y[:opts.limit]
    check_value_range(x, opts.low, opts.high, opts.data, normalisation.range_hint(net))  # names the data file
    record = Record(settings=opts.recorded(config), json_path=opts.json_path, resume=opts.resume)
    if opts.campaign() is None:
        ev, _ = run_attack(net, x, y, config, record, progress=_Progress())
    else:
        ev = _campaign(opts, net, x, y, config, record)
    _print(ev)
    if opts.json_path is not None:
        click.echo(f"wrote {opts.json_path}")


def _campaign(opts: AttackOptions, net: Any, x: Any, y: Any, config: AttackRun, record: Any) -> Any:
    """The run as a campaign (--store/--scheduler/--workers), with a progress bar over the samples."""
    from nnaudit.campaign.attack import DEFAULT_CHUNK
    from nnaudit.errors import Terminated
    from nnaudit.runs.attack import run_attack_campaign

    try:
        with click.progressbar(length=len(y), label="batches", file=sys.stderr) as bar:
            ev, _, stats = run_attack_campaign(net, x, y, config, record, opts.campaign(), chunk=opts.chunk,
                                               progress=bar.update)
    except KeyboardInterrupt as stop:
        term = isinstance(stop, Terminated)
        where = f"; results so far in {opts.store} (run the same command again to go on)" if opts.store else ""
        click.echo(f"\n{'terminated (SIGTERM)' if term else 'interrupted'}{where}", err=True)
        raise SystemExit(Terminated.exit_code if term else 130) from None
    click.echo(f"campaign: {stats.line()} (batches of {opts.chunk or DEFAULT_CHUNK} samples)")
    return ev


@dataclass(frozen=True)
class AttackOptions:
    """The options of ``nnaudit attack`` as Click parsed them, and the run they make."""

    data: str
    attacks: str
    eps: str
    norm: str
    low: float
    high: float
    device: str
    seed: int
    batch_size: int
    threads: int | None
    limit: int | None
    settings: tuple[str, ...]
    examples: int
    json_path: str | None
    resume: bool
    aa_version: str = "standard"  # --version (AutoAttack)
    targeted: bool = False
    target_classes: int | None = None
    mean: str | None = None   # --mean: input normalisation, comma-separated (parsed by commands.normalisation)
    std: str | None = None    # --std
    store: str | None = None          # --store FILE: run as a campaign, results in this SQLite store
    scheduler: str | None = None      # --scheduler tcp://HOST:PORT (a campaign on Dask)
    workers: int | None = None        # --workers N: local processes of a campaign
    chunk: int | None = None          # --chunk N: samples per campaign job

    def campaign(self) -> Any:
        """The :class:`~nnaudit.runs.regions.CampaignSetup` of --store/--scheduler/--workers (None: one process)."""
        if self.store is None and self.scheduler is None and self.workers is None:
            return None
        from nnaudit.campaign.executor import ExecutorConfig
        from nnaudit.runs.regions import CampaignSetup

        return CampaignSetup(self.store or ":memory:", ExecutorConfig.from_options(self.scheduler, self.workers))

    def config(self) -> AttackRun:
        """The run's configuration, after checking the options (ConfigError, before any work)."""
        from nnaudit.attacks.base import resolve_device
        from nnaudit.runs.attack import AttackRun

        if self.resume and self.json_path is None:
            raise ConfigError("--resume: needs --json PATH of the interrupted run")
        if self.resume and self.campaign() is not None:
            raise ConfigError("--resume: a campaign (--store/--scheduler/--workers) resumes from its store: "
                              "run the same command again without --resume")
        if self.chunk is not None and self.campaign() is None:
            raise ConfigError("--chunk: only for a campaign (give --store, --scheduler or --workers)")
        if self.batch_size < 1 or (self.limit is not None and self.limit < 1) or self.examples < 0:
            raise ConfigError(f"expected --batch-size >= 1, --limit >= 1 and --examples >= 0, "
                              f"got {self.batch_size}, {self.limit}, {self.examples}")
        eps = _floats(self.eps, "eps")
        device = str(resolve_device(self.device))  # the JSON names the device that ran
        names = [a.strip() for a in self.attacks.split(",") if a.strip()]
        run = AttackRun(attacks=tuple(names), eps=tuple(eps), norm=self.norm, bounds=(self.low, self.high),
                        options=self.checked_options(), seed=self.seed, device=device, batch_size=self.batch_size,
                        threads=self.threads, examples=self.examples, version=self.aa_version,
                        targeted=self.targeted, target_classes=self.target_classes)
        names, _, _ = run.plan()  # attack names, autoattack alone
        if self.target_classes is not None and not self.targeted and not {"apgd-t", "fab-t"} & set(names):
            raise ConfigError("--target-classes: used by --targeted, apgd-t, fab-t and autoattack; none of them is run")
        return run

    def checked_options(self) -> dict[str, dict[str, Any]]:
        """The ``--set`` options, each checked against the type of its default (issue #23)."""
        options = _options(self.settings)
        _check_option_types(options)
        return options

    def recorded(self, config: AttackRun) -> dict[str, Any]:
        """The ``settings`` that ``nnaudit attack`` records (what a resume must match)."""
        plan = config.settings(0)  # autoattack expanded into the attacks and options it runs
        return {"data": self.data, "attacks": plan["attacks"], "eps": list(config.eps), "norm": self.norm,
                "range": [self.low, self.high], "batch_size": self.batch_size, "limit": self.limit,
                "options": plan["options"], "examples": self.examples, "autoattack": plan["autoattack"],
                "targeted": plan["targeted"]}


class _Progress:
    """Progress bar per (attack, eps) on stderr, advanced after each batch."""

    def __init__(self) -> None:
        self.key: tuple[str, float] | None = None
        self.bar: Any = None
        self.done = 0

    def __call__(self, attack: str, eps: float, done: int, total: int) -> None:
        if self.key != (attack, eps):
            self._close()
            self.key, self.done = (attack, eps), 0
            self.bar = click.progressbar(length=total, label=f"{attack:>9} eps={eps:g}", file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(done - self.done)
        self.done = done
        if done >= total:
            self._close()

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar, self.key = None, None


def _print(ev: Any) -> None:
    body = ev.to_dict(examples=0)
    click.echo(f"samples {body['num_samples']}   clean accuracy {body['clean_accuracy']:.2%}   norm {body['norm']}"
               + (f"   targeted (top {ev.targeted} classes)" if ev.targeted else ""))
    if ev.cascade:
        click.echo("AutoAttack cascade: each attack only on the samples still robust; robust acc is after the attack "
                   "and all before it, success counts the samples it broke first")
    click.echo(f"{'eps':>8}  {'attack':<9} {'robust acc':>10} {'success':>8} {'median l0/l2/linf':>26} {'time s':>8} {'mismatch':>8}")
    for entry in body["results"]:
        e = entry["eps"]
        for a in list(ev.attacks) + ["worst"]:
            if a not in entry["robust_accuracy"]:
                continue
            med = entry["median_perturbation"].get(a)
            med_s = "-" if not med else f"{med['l0']:g}/{med['l2']:.3g}/{med['linf']:.3g}"
            t = entry["time_s"].get(a)
            t_s = "" if t is None or math.isnan(t) else f"{t:.2f}"
            mism = entry["mismatches"].get(a, "")
            robust = entry.get("robust_after", {}).get(a, entry["robust_accuracy"][a])
            click.echo(f"{e:>8g}  {a:<9} {robust:>10.2%} {entry['success_rate'][a]:>8.2%} "
                       f"{med_s:>26} {t_s:>8} {mism!s:>8}")

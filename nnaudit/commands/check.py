"""``nnaudit check``: run the declarative robustness checks of nnaudit.toml (for CI)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from nnaudit.commands.types import SECONDS, WORKERS
from nnaudit.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from nnaudit.checks.outcome import CheckOutcome

EPILOG = """\b
Exit codes:
  0  every requirement holds
  1  a requirement failed (or was inconclusive, with --unknown-is-failure), or a
     regression against the baseline
  2  bad input: checks file, model, data, property or baseline (reported before any
     check runs), or a baseline run with other settings
  3  a check was inconclusive (unknown regions, verifier timeout)
"""


@click.command("check", epilog=EPILOG)
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Checks file: nnaudit.toml or a pyproject.toml with [tool.nnaudit] "
                   "(default: ./nnaudit.toml, else ./pyproject.toml).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), default=None,
              help="Write one self-contained HTML report of every check here.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Write the 'check' result document (with each check's full result) here.")
@click.option("--junit", "junit_path", type=click.Path(dir_okay=False), default=None,
              help="Write JUnit XML (one testcase per check) for CI dashboards.")
@click.option("--unknown-is-failure", is_flag=True, help="Inconclusive checks fail (exit 1) instead of exit 3.")
@click.option("--device", default=None, help="Override every check's device (cpu, cuda, cuda:N, auto).")
@click.option("--timeout", type=SECONDS, default=None, help="Override every check's timeout (seconds per property/region).")
@click.option("--only", multiple=True, metavar="NAME", help="Run only the named check (repeatable).")
@click.option("--baseline", "baseline", type=click.Path(dir_okay=False), default=None,
              help="Compare with a previous check result JSON (default: [defaults] baseline): a drop of robust "
                   "accuracy by more than max_drop, of clean accuracy, or a region/property no longer safe fails.")
@click.option("--no-baseline", is_flag=True, help="Compare with no baseline, even one the checks file names "
                                                  "(to record the first baseline).")
@click.option("--store", type=click.Path(dir_okay=False), default=None,
              help="Run the attack and regions checks as campaigns, every job's result kept in this SQLite store; "
                   "an interrupted check run again resumes from it (default: [defaults] store).")
@click.option("--scheduler", default=None, metavar="tcp://HOST:PORT",
              help="Run the campaigns on this Dask scheduler (default: [defaults] scheduler, $NNAUDIT_SCHEDULER).")
@click.option("--workers", type=WORKERS, default=None,
              help="Local worker processes of the campaigns (default: [defaults] workers, else all cores).")
@click.option("--quiet", "-q", is_flag=True, help="No progress output (default: a bar on a terminal, "
                                                    "else a line every few seconds).")
def command(config_path: str | None, report_path: str | None, json_path: str | None, junit_path: str | None,
            unknown_is_failure: bool, device: str | None, timeout: float | None, only: tuple[str, ...],
            baseline: str | None, no_baseline: bool, quiet: bool, store: str | None = None,
            scheduler: str | None = None, workers: int | None = None) -> None:
    """Run every check of the checks file, print a table, write the reports
    and exit with the code of the worst outcome."""
    from nnaudit.checks import output
    from nnaudit.checks.adapters import RunSettings
    from nnaudit.checks.outcome import CheckOutcome, ExitPolicy
    from nnaudit.checks.progress import Progress
    from nnaudit.checks.runner import run_checks

    if timeout is not None and not timeout > 0:
        raise ConfigError(f"--timeout: expected a number of seconds > 0, got {timeout}")
    path, checks, defaults = _checks(config_path, only)
    campaign = _campaign(defaults, store, scheduler, workers)
    if baseline and no_baseline:
        raise ConfigError("--baseline and --no-baseline: give one of them")
    if report_path:
        output.require_html_renderer()
    from nnaudit.reports import schema

    command_line = _command_line(path, device, timeout, unknown_is_failure, only, baseline, no_baseline,
                                 campaign=(("--store", store), ("--scheduler", scheduler), ("--workers", workers)))
    mode = Progress.choose(quiet=quiet, tty=sys.stderr.isatty())
    settings = RunSettings(device=device, timeout=timeout, command=command_line,
                           baseline=Path(baseline) if baseline else None, use_baseline=not no_baseline,
                           progress=Progress(mode, lambda line: click.echo(line, err=True), heartbeat=True),
                           campaign=campaign)
    run_settings = {"config": str(path), "device": device, "timeout": timeout,
                    "unknown_is_failure": unknown_is_failure, "only": list(only), "baseline": baseline}
    done: list[CheckOutcome] = []

    def progress(outcome: CheckOutcome) -> None:
        if not quiet:
            click.echo(f"{outcome.status.value.upper():>12}  {outcome.name} ({outcome.time_s:.1f} s)", err=True)
        done.append(outcome)
        if json_path:  # an interrupted run leaves the finished checks (complete: false)
            partial = output.check_document(done, command=command_line, device=device, settings=run_settings)
            schema.write_json(schema.finish(partial, complete=False), json_path)

    outcomes = run_checks(checks, settings, unknown_is_failure=unknown_is_failure, on_outcome=progress)
    click.echo(output.format_table(outcomes))
    for text in (output.failure_details(outcomes), output.baseline_summary(outcomes)):
        if text:
            click.echo("\n" + text)
    doc = output.check_document(outcomes, command=command_line, device=device, settings=run_settings)
    if json_path:
        schema.write_json(doc, json_path)
        click.echo(f"wrote {json_path}")
    if junit_path:
        output.write_junit(outcomes, junit_path)
        click.echo(f"wrote {junit_path}")
    if report_path:
        output.write_html([doc], report_path, title=f"nnaudit checks: {path.name}",
                          names=[Path(json_path).name if json_path else "nnaudit-check.json"])
        click.echo(f"wrote {report_path}")
    code = ExitPolicy(unknown_is_failure=unknown_is_failure).code(o.status for o in outcomes)
    if code:
        sys.exit(code)


def _campaign(defaults: dict[str, Any], store: str | None, scheduler: str | None, workers: int | None) -> Any:
    """The :class:`~nnaudit.runs.regions.CampaignSetup` of --store/--scheduler/--workers, else of the checks
    file's ``[defaults]`` store/scheduler/workers (None: every check in this process)."""
    store = store or (str(defaults["store"]) if "store" in defaults else None)
    scheduler = scheduler or defaults.get("scheduler")
    workers = workers or defaults.get("workers")
    if store is None and scheduler is None and workers is None:
        return None
    from nnaudit.campaign.executor import ExecutorConfig
    from nnaudit.runs.regions import CampaignSetup

    return CampaignSetup(store or ":memory:", ExecutorConfig.from_options(scheduler, workers))


def _checks(config_path: str | None, only: tuple[str, ...]) -> tuple[Path, tuple[Any, ...], dict[str, Any]]:
    """The checks file, its checks (those of ``--only``, if given) and its campaign defaults; ConfigError
    when bad."""
    from nnaudit.config import find_config, load_checks

    path = Path(config_path) if config_path else find_config()
    if path is None:
        raise ConfigError(f"{Path.cwd()}: no nnaudit.toml and no pyproject.toml with [tool.nnaudit]; "
                          "pass --config PATH")
    loaded = load_checks(path)
    checks = loaded.checks
    if only:
        unknown = sorted(set(only) - {c.name for c in checks})
        if unknown:
            raise ConfigError(f"--only: no check named {', '.join(map(repr, unknown))} in {path}; "
                              f"checks: {', '.join(c.name for c in checks)}")
        checks = tuple(c for c in checks if c.name in only)
    return path, checks, loaded.campaign


def _command_line(path: Path, device: str | None, timeout: float | None, unknown_is_failure: bool,
                  only: tuple[str, ...], baseline: str | None = None, no_baseline: bool = False, *,
                  campaign: tuple[tuple[str, Any], ...] = ()) -> str:
    """The command that reruns these checks (recorded in every result document)."""
    args = ["nnaudit", "check", "--config", str(path)]
    args += ["--baseline", baseline] if baseline else []
    args += ["--no-baseline"] if no_baseline else []
    args += ["--device", device] if device else []
    args += ["--timeout", f"{timeout:g}"] if timeout else []
    args += ["--unknown-is-failure"] if unknown_is_failure else []
    for name in only:
        args += ["--only", name]
    for flag, value in campaign:      # --store/--scheduler/--workers, where given
        args += [flag, str(value)] if value is not None else []
    return shlex.join(args)

"""The ``nnaudit`` command line.

One Click group builds a context object (:class:`CliContext`: when the
process started) that the subcommands share.  Each subcommand lives in ``nnaudit/commands/<name>.py``
as a module-level ``command`` and is imported only when it is invoked, so
``nnaudit --help`` stays fast and does not import torch or z3.

Exit codes: 0 ok (for ``verify``: holds), 1 a requirement or property
failed (``verify``: violated), 2 bad input or usage, 3 unknown/timeout,
4 internal error (a bug: an exception that is not an ``NnauditError``).
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from nnaudit.errors import NnauditError, Terminated

#: subcommand name -> one-line help (shown without importing the command)
COMMANDS: dict[str, str] = {
    "inspect": "Show a model's layers, shapes, parameters and the onnxruntime cross-check.",
    "verify": "Verify a VNN-LIB property: holds, violated (with counterexample) or unknown.",
    "verify-suite": "Verify a VNN-COMP-style instances.csv as one campaign (local or Dask), results CSV + store.",
    "regions": "Check safety of every image region under discretized manipulations (DLV).",
    "attack": "Run adversarial attacks and report robust accuracy per eps.",
    "adapt": "Domain-adversarial (DANN) training and export of the adapted model to ONNX.",
    "report": "Render JSON results into one self-contained HTML report.",
    "check": "Run the declarative robustness checks of nnaudit.toml (for CI).",
    "baseline": "Record a check run as the baseline that `check --baseline` compares with.",
    "property": "Write a VNN-LIB property (e.g. local robustness of one data sample) without writing VNN-LIB.",
    "demo": "Run the whole suite on the bundled zoo and write a report.",
}

EXIT_CODES_HELP = """\b
Exit codes:
  0  ok (verify: the property holds)
  1  a check failed (verify: the property is violated)
  2  bad input or usage
  3  unknown or timeout
  4  internal error (a bug: please report it)
"""

#: exit code of an unexpected exception (a bug), see :meth:`LazyGroup.invoke`
INTERNAL_ERROR_EXIT = 4


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        return importlib.import_module(f"nnaudit.commands.{name.replace('-', '_')}").command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl(sorted(COMMANDS.items()))

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NnauditError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)
        except Terminated:
            click.echo("\nterminated (SIGTERM); results finished so far were kept", err=True)
            ctx.exit(Terminated.exit_code)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:  # noqa: BLE001 - the one top-level guard: a bug gets one line, not a traceback
            logging.getLogger(__name__).debug("internal error", exc_info=True)
            click.echo(f"internal error: {type(exc).__name__}: {exc} (please report this with the command line)",
                       err=True)
            ctx.exit(INTERNAL_ERROR_EXIT)


@dataclass
class CliContext:
    """What the group hands its subcommands (``ctx.obj``)."""

    #: ``time.monotonic()`` at the start of this process when run as the console script
    #: (set by :func:`main`), so that wall-clock limits such as ``verify --timeout`` include
    #: interpreter start-up and imports; None when invoked in-process (tests, the Python API)
    process_start: float | None = None
    #: set by a command whose answer is final once printed (``verify``): :func:`main` then ends the
    #: process at once instead of tearing down torch's modules (1-5 s after the answer)
    fast_exit: bool = False


@click.group(cls=LazyGroup, epilog=EXIT_CODES_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nnaudit")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.pass_context
def cli(ctx: click.Context, verbose: int) -> None:
    """nnaudit: verification and robustness testing for ONNX neural networks."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    ctx.ensure_object(CliContext)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    _handle_sigterm()
    obj = CliContext(process_start=time.monotonic() - _process_age())
    try:
        cli.main(args=argv, prog_name="nnaudit", obj=obj)
    except SystemExit as exc:
        if obj.fast_exit:
            _exit_now(exc.code)
        raise


def _exit_now(code: Any) -> None:
    """End the process with ``code`` now: output flushed, logging shut down, worker processes
    killed, but no interpreter teardown (torch's takes seconds after the answer is printed)."""
    import multiprocessing as mp

    if code is not None and not isinstance(code, int):
        click.echo(str(code), err=True)
        code = 1
    for child in mp.active_children():
        child.kill()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code or 0)


def _on_sigterm(signum: int, frame: Any) -> None:
    """Turn SIGTERM into :class:`Terminated` (a KeyboardInterrupt), once: a second one kills."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise Terminated()


def _handle_sigterm() -> None:
    """Handle SIGTERM like Ctrl-C (partial results are written), then exit 143."""
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread: leave the default
        pass


#: a process age above this is not start-up time but a clock that jumped (a paused virtual machine):
#: taken as unknown, so that it cannot use up a verification's whole budget before it starts
MAX_PLAUSIBLE_AGE_S = 10.0


def _process_age() -> float:
    """Seconds since this process started (Linux ``/proc``; 0 where unknown or implausible)."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return plausible_age(uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def plausible_age(age: float) -> float:
    """``age`` when it can be interpreter start-up (0 to :data:`MAX_PLAUSIBLE_AGE_S`), else 0."""
    return age if 0.0 <= age <= MAX_PLAUSIBLE_AGE_S else 0.0


if __name__ == "__main__":  # pragma: no cover
    # ``python -m nnaudit.cli``: this file runs as __main__, a second module; the
    # subcommands look for nnaudit.cli's CliContext, so start from that module
    from nnaudit.cli import main as _main

    _main(sys.argv[1:])

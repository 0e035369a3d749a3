"""Click parameter types shared by the subcommands: numbers with a valid range.

``click.FloatRange`` lets ``nan`` through (every comparison with it is false), so
``--timeout nan`` would be accepted; :class:`FiniteFloatRange` refuses it and the
infinities, so a bad option is a usage error (exit 2) before any work starts.
:data:`OUTPUT_FILE` checks that a file to be written can be, before the work.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import click


class FiniteFloatRange(click.FloatRange):
    """A float in a range that is also finite (no ``nan``, no ``inf``)."""

    name = "finite float range"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        rv = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"expected a finite number, got {value!r}", param, ctx)
        return super().convert(rv, param, ctx)


#: a wall-clock limit in seconds: finite and above 0
SECONDS = FiniteFloatRange(min=0.0, min_open=True)
#: a number of worker processes or threads: 1 or more
WORKERS = click.IntRange(min=1)
#: how many items to use (--limit): 1 or more
COUNT = click.IntRange(min=1)


class OutputFile(click.Path):
    """A file the command will write: its folder must exist and be writable, checked when the options
    are parsed (a usage error, exit 2) rather than after the work is done."""

    def __init__(self) -> None:
        super().__init__(dir_okay=False)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        rv = super().convert(value, param, ctx)
        path = Path(os.fsdecode(rv))
        folder = path.parent
        if path.is_dir():
            self.fail(f"{path}: is a directory, expected a file to write", param, ctx)
        if not folder.is_dir():
            self.fail(f"{path}: cannot be written, folder {str(folder)!r} does not exist", param, ctx)
        if not os.access(path if path.exists() else folder, os.W_OK):
            self.fail(f"{path}: cannot be written (permission denied)", param, ctx)
        return rv


#: a file to write (--output, --json, --result-file, ...)
OUTPUT_FILE = OutputFile()

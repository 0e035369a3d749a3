"""The one exception hierarchy of nnaudit.

Every error a user can cause (a bad file, a bad option, a spec that does not
parse) is an ``NnauditError`` whose message names the file, the place, what was
expected and what was found.  The CLI turns these into a one-line message and
exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Sequence


class NnauditError(Exception):
    """Base class of every error nnaudit raises on purpose."""


class ModelLoadError(NnauditError):
    """An ONNX file cannot be read or turned into the IR."""


class UnsupportedOpError(ModelLoadError):
    """One or more ONNX operations have no IR class.

    Carries every offending node at once so a user fixes the model in one go.
    ``unsupported`` is a sequence of ``(op_type, node_name, node_index)``.
    """

    def __init__(self, path: str, unsupported: Sequence[tuple[str, str, int]]) -> None:
        self.path = path
        self.unsupported = list(unsupported)
        listed = "; ".join(
            f"{op} (node {name!r}, index {idx})" for op, name, idx in self.unsupported
        )
        super().__init__(
            f"{path}: {len(self.unsupported)} unsupported operation(s): {listed}"
        )


class UnsupportedAttributeError(ModelLoadError):
    """A supported op uses an attribute value the IR does not implement."""


class SpecError(NnauditError):
    """A property / specification (VNN-LIB, region, manipulation) is malformed."""


class DataError(NnauditError):
    """Data handed to a command has the wrong form (shape, dtype, range, labels)."""


class SolverError(NnauditError):
    """A solver failed in a way that is not a plain 'unknown'."""


class ConfigError(NnauditError):
    """A configuration file or option is invalid."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised by the console script's handler (:func:`nnaudit.cli.main`).

    A KeyboardInterrupt, so that every place that keeps a partial result on
    Ctrl-C (``complete: false`` JSON, resumable) does the same on SIGTERM;
    the CLI then prints one line and exits 143 (128 + SIGTERM) instead of 130.
    """

    exit_code = 143

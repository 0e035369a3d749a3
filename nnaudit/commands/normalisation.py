"""``--mean`` / ``--std``: the input normalisation options that ``regions``, ``attack`` and ``verify`` share.

With them the model is loaded with ``(x - mean) / std`` in front
(:func:`nnaudit.networks.normalised`), so it takes pixels: data, steps, eps,
clip ranges and counterexamples are all in pixel space, and onnxruntime
confirms results on the file with the normalisation prepended.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

MEAN_HELP = ("Input normalisation as part of the model: subtract this mean per input channel (the input's first "
             "axis, or its last for channels-last inputs), e.g. 0.485,0.456,0.406, or one value for all; data, steps, "
             "eps and ranges stay in pixel space.")
STD_HELP = "Then divide by this standard deviation (> 0), per channel or one value for all, e.g. 0.225."


def options(*, mean_help: str = MEAN_HELP, std_help: str = STD_HELP) -> Callable[[Any], Any]:
    """The ``--mean`` and ``--std`` options (comma-separated numbers; parsed by :func:`load_model`)."""

    def deco(f: Any) -> Any:
        f = click.option("--std", default=None, metavar="S[,S...]", help=std_help)(f)
        return click.option("--mean", default=None, metavar="M[,M...]", help=mean_help)(f)

    return deco


def parse(mean: str | None, std: str | None) -> Any:
    """The :class:`~nnaudit.networks.Normalisation` of the options (None: neither given); ConfigError if bad."""
    from nnaudit.networks.normalise import Normalisation

    return Normalisation.parse(mean, std)


def load_model(model: str, normalisation: Any) -> Any:
    """``model`` loaded, with ``normalisation`` (from :func:`parse`; None: none) in front."""
    from nnaudit.networks import load

    return load(model, normalisation=normalisation)


def range_hint(network: Any) -> str:
    """The end of an out-of-range data message for a model that normalises its input itself."""
    if getattr(network, "normalisation", None) is None:
        return ""
    return "; the model normalises its input (--mean/--std), so give pixels, not normalised values"

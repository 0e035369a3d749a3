"""nnaudit: verification and robustness testing for ONNX neural networks.

The public Python API, resolved lazily so ``import nnaudit`` is cheap (no
torch, z3 or onnxruntime until a function that needs them is called):

- ``nnaudit.load(path)`` — an ONNX file as a :class:`~nnaudit.networks.Network`;
- ``nnaudit.networks``, ``nnaudit.verify``, ``nnaudit.attacks``,
  ``nnaudit.adaptation``, ``nnaudit.reports`` — the subsystems;
- ``nnaudit.errors`` — the :class:`~nnaudit.errors.NnauditError` hierarchy.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import Any

from nnaudit.errors import (
    ConfigError,
    DataError,
    ModelLoadError,
    NnauditError,
    SolverError,
    SpecError,
    UnsupportedAttributeError,
    UnsupportedOpError,
)

try:
    __version__ = metadata.version("nnaudit")
except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0+unknown"

_LAZY_FUNCS = {"load": ("nnaudit.networks.loader", "load")}
_SUBPACKAGES = {"networks", "verify", "attacks", "adaptation", "reports"}

__all__ = [
    "ConfigError", "DataError", "ModelLoadError", "NnauditError", "SolverError", "SpecError",
    "UnsupportedAttributeError", "UnsupportedOpError", "load", *sorted(_SUBPACKAGES),
]


def __getattr__(name: str) -> Any:
    if name in _LAZY_FUNCS:
        module, attr = _LAZY_FUNCS[name]
        return getattr(importlib.import_module(module), attr)
    if name in _SUBPACKAGES:
        return importlib.import_module(f"nnaudit.{name}")
    raise AttributeError(f"module 'nnaudit' has no attribute {name!r}")

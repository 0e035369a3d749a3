"""Lazy public names for packages whose modules import torch, z3 or onnxruntime.

``import nnaudit.attacks`` (and the other subpackages) must stay cheap, so
their ``__init__`` maps each public name to the module that defines it and
imports that module on first access (PEP 562 module ``__getattr__``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(package: str, table: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` resolving ``name`` from ``table[name]``.

    ``table`` maps a public name to a module path, absolute (``nnaudit.x.y``)
    or relative to ``package`` (``y``).
    """

    def __getattr__(name: str) -> Any:
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = table[name] if table[name].startswith("nnaudit.") else f"{package}.{table[name]}"
        return getattr(importlib.import_module(module), name)

    return __getattr__

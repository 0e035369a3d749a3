"""Which torch device a run uses, named by the user: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.

One resolver for every package that runs torch (attacks, the verifier's bounds, DANN), so
``--device`` means the same everywhere and asking for a GPU that is not there is a clear
configuration error before any work starts, never a CUDA traceback halfway through.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from nnaudit.errors import ConfigError

if TYPE_CHECKING:
    import torch


def parse_device(device: Any) -> str:
    """``device`` spelled the one way (``cpu``, ``cuda``, ``cuda:N`` or ``auto``), without asking
    whether it is present: for a run whose workers are on other machines."""
    import re

    name = str(device).strip().lower()
    if not re.fullmatch(r"cpu|auto|cuda(:[0-9]+)?", name):
        raise ConfigError(f"device: expected cpu, cuda, cuda:N or auto, got {device!r}")
    return name


def resolve_device(device: Any) -> torch.device:
    """``"auto"`` -> cuda when available else cpu; a cuda device must exist (index included)."""
    import torch

    name = parse_device(device)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device: {device!r} requested but CUDA is not available; use cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device: {device!r} requested but only {torch.cuda.device_count()} CUDA "
                              f"device(s) are visible")
    return dev


def device_name(device: str | None) -> str:
    """``device`` resolved and named as records name it (``auto`` -> the device that will run);
    None and ``cpu`` give ``"cpu"`` without importing torch."""
    if device is None or str(device).strip().lower() == "cpu":
        return "cpu"
    return str(resolve_device(device))


def on_device(device: str | None) -> AbstractContextManager:
    """A context in which torch makes every new tensor on ``device`` (resolved as by
    :func:`resolve_device`): ``with torch.device(...)``, or nothing at all on the CPU, where the
    device context's dispatch hook would only cost every small operation."""
    name = device_name(device)
    if name == "cpu":
        return nullcontext()
    import torch

    return torch.device(name)

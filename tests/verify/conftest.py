"""Fixtures shared by the verifier's device tests (``test_verify_device.py``, ``test_region_device.py``)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def host_reads_marked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Emulate a device on the CPU: a tensor may become a NumPy array (``.numpy()``,
    ``np.asarray``) only when it came out of ``.cpu()``, as a CUDA tensor must."""
    real_cpu, real_numpy, real_array = torch.Tensor.cpu, torch.Tensor.numpy, torch.Tensor.__array__

    def cpu(self: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        out = real_cpu(self, *args, **kwargs)
        out = out.view_as(out) if out is self else out  # a new tensor object (same storage) to mark
        out._nnaudit_host = True
        return out

    def guarded(real: object) -> object:
        def read(self: torch.Tensor, *args: object, **kwargs: object) -> object:
            if not getattr(self, "_nnaudit_host", False):
                raise AssertionError("a tensor was read into NumPy without .cpu() (fails on a GPU)")
            return real(self, *args, **kwargs)
        return read

    monkeypatch.setattr(torch.Tensor, "cpu", cpu)
    monkeypatch.setattr(torch.Tensor, "numpy", guarded(real_numpy))
    monkeypatch.setattr(torch.Tensor, "__array__", guarded(real_array))

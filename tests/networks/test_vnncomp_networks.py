"""Every VNN-COMP network (45 ACAS Xu, 3 mnist_fc) loads, and the IR matches
onnxruntime on the original file to 1e-5 relative on random inputs drawn
inside the input box of one of its properties."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest

from nnaudit.networks import load

ROOT = Path(__file__).resolve().parents[1] / "data" / "vnncomp"
_BOUND = re.compile(r"\(assert\s+\((<=|>=)\s+X_(\d+)\s+([-+0-9.eE]+)\)\)")


def _instances() -> list[tuple[str, Path, Path]]:
    rows = []
    for family in ("acasxu", "mnist_fc"):
        folder = ROOT / family
        seen: dict[str, Path] = {}
        with open(folder / "instances.csv") as fh:
            for onnx_rel, vnnlib_rel, _timeout in csv.reader(fh):
                if onnx_rel not in seen and (folder / vnnlib_rel).exists():
                    seen[onnx_rel] = folder / vnnlib_rel
        rows += [(family, folder / o, v) for o, v in sorted(seen.items())]
    return rows


def input_box(vnnlib: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The X bounds of a simple (single-box) VNN-LIB file."""
    lo, hi = np.full(size, -np.inf), np.full(size, np.inf)
    for op, idx, val in _BOUND.findall(vnnlib.read_text()):
        (hi if op == "<=" else lo)[int(idx)] = float(val)
    assert np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)), vnnlib
    return lo, hi


INSTANCES = _instances()


def test_all_48_networks_are_covered() -> None:
    families = [f for f, _, _ in INSTANCES]
    assert families.count("acasxu") == 45 and families.count("mnist_fc") == 3


@pytest.mark.parametrize("family,model,prop", INSTANCES, ids=[m.name for _, m, _ in INSTANCES])
def test_ir_matches_onnxruntime(family: str, model: Path, prop: Path) -> None:
    net = load(model)
    lo, hi = input_box(prop, net.input_size)
    res = net.check(samples=64, low=lo.reshape(net.input_shape), high=hi.reshape(net.input_shape), seed=1)
    assert res.ok, res
    assert res.argmax_agree == 1.0
    expected_in = (1, 1, 5) if family == "acasxu" else (784, 1)
    assert net.input_shape == expected_in
    assert net.output_shape == ((5,) if family == "acasxu" else (10,))


def test_load_check_flag_runs_the_cross_check() -> None:
    _, model, _ = INSTANCES[0]
    net = load(model, check=True)
    assert net.sha256 and len(net.sha256) == 64

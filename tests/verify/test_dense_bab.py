"""The dense route (``verify/dense_bab.py``, ``verify/dense_bounds.py``): zero wrong answers against
brute force on random small ReLU networks, the known ACAS Xu answers, the fall-back to the torch
route, and a CLI run that never imports torch."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from nnaudit.networks import load
from nnaudit.networks.dense import dense_chain
from nnaudit.networks.runtime import reference
from nnaudit.verify.dense_bab import DenseConfig, Route
from nnaudit.verify.dense_bounds import bound_rows
from nnaudit.verify.engine import VerifyConfig, counterexample_ok, verify_property
from nnaudit.verify.results import Verdict
from nnaudit.verify.spec import linear_property
from onnx_build import random_mlp, save

ACAS = Path(__file__).resolve().parents[1] / "data" / "vnncomp" / "acasxu"
DENSE = VerifyConfig(timeout_s=20, route=Route.DENSE)
MODES = {"dense": DENSE,
         # multi-row disjuncts closed by an LP over row combinations from the root on (default: depth 30)
         "dense-lp-from-root": replace(DENSE, dense=DenseConfig(lp_depth=0))}


def _case(tmp_path: Path, seed: int, n_in: int, depth: int):
    """A random ReLU network of ``n_in`` inputs and ``depth`` hidden layers (an ONNX file), a box
    (one dimension fixed now and then, as ACAS Xu's properties fix some), and onnxruntime's
    outputs on a grid of the box."""
    rng = np.random.default_rng(seed)
    sizes = [n_in] + [int(rng.integers(3, 9)) for _ in range(depth)] + [int(rng.integers(2, 4))]
    path = save(random_mlp(rng, sizes), tmp_path / f"mlp{seed}_{n_in}_{depth}.onnx")
    lo = rng.uniform(-1, 0.5, n_in)
    hi = lo + rng.uniform(0.05, 1.0, n_in)
    if rng.random() < 0.25:
        hi[0] = lo[0]
    k = max(2, int(round(20_000 ** (1 / n_in))))
    axes = [np.linspace(a, b, k) for a, b in zip(lo, hi)]
    grid = np.stack(np.meshgrid(*axes), -1).reshape(-1, n_in)
    net = load(path)
    y = reference(net).run(grid.astype(np.float32).reshape((len(grid),) + net.input_shape))
    return path, net, lo, hi, y, rng


def _region(rng: np.random.Generator, y: np.ndarray, quantile: float, n_disj: int, rows: int):
    """Disjuncts of ``rows`` random rows ``c y - t <= 0``, each threshold ``t`` at ``quantile`` of its
    row's range over the grid (below 0: no grid point reaches it)."""
    disjuncts = []
    for _ in range(n_disj):
        c = rng.normal(0, 1, (rows, y.shape[1]))
        v = y @ c.T
        t = v.min(axis=0) + quantile * (v.max(axis=0) - v.min(axis=0))
        disjuncts.append((c, -t))
    return disjuncts


@pytest.mark.parametrize("mode", list(MODES))
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), n_in=st.integers(2, 4), depth=st.integers(1, 3),
       quantile=st.sampled_from([-0.05, 0.0, 0.01, 0.3, 1.05]), n_disj=st.integers(1, 2), rows=st.integers(1, 2))
@example(seed=1, n_in=2, depth=2, quantile=-0.05, n_disj=1, rows=1)
@example(seed=7, n_in=4, depth=3, quantile=0.01, n_disj=2, rows=2)
@example(seed=141, n_in=2, depth=1, quantile=0.0, n_disj=1, rows=1)  # a boundary point: batch and single runs differ
@example(seed=720, n_in=3, depth=3, quantile=-0.05, n_disj=1, rows=1)  # halving a 1e-7-wide dimension again and again
@example(seed=9999, n_in=3, depth=3, quantile=0.0, n_disj=1, rows=1)  # holds by 1.3e-7 in float64, not in float32
@example(seed=9999, n_in=4, depth=3, quantile=-0.05, n_disj=1, rows=1)  # a counterexample between grid points
def test_verdicts_agree_with_brute_force(tmp_path: Path, mode: str, seed: int, n_in: int, depth: int,
                                         quantile: float, n_disj: int, rows: int) -> None:
    """"holds" survives a dense grid evaluated by onnxruntime and the torch route's exact search
    (bounds and Z3) never finds a counterexample to it; "violated" carries a counterexample that
    onnxruntime confirms on the file; clear answers are found."""
    path, net, lo, hi, y, rng = _case(tmp_path, seed, n_in, depth)
    prop = linear_property(lo, hi, _region(rng, y, quantile, n_disj, rows))
    region = prop.cases[0][1]
    margin = region.margin(y)
    span = float(np.ptp(y @ np.concatenate([c for c, _ in region.disjuncts]).T))
    tol = 1e-6 * (1 + span)  # float32 rounding of onnxruntime's outputs (batch and single runs differ)
    res = verify_property(net, prop, config=MODES[mode])
    if res.verdict is Verdict.HOLDS:
        assert margin.min() > -tol, "holds contradicted by the grid"
        exact = verify_property(net, prop, config=VerifyConfig(timeout_s=30))
        if exact.verdict is Verdict.VIOLATED:  # only a point on the boundary, within float32 rounding
            x = exact.counterexample.x.reshape((1,) + tuple(net.input_shape))
            assert region.margin(net.evaluate(x)).min() > -tol, "holds contradicted by the torch route"
    if res.verdict is Verdict.VIOLATED:
        assert counterexample_ok(path, prop, res.counterexample.x)
        assert res.counterexample.input_shape == tuple(net.input_shape)
    if margin.min() < -0.05 * (1 + span):
        assert res.verdict is Verdict.VIOLATED
    if margin.min() > 1e-3 * (1 + span):  # the grid may miss a counterexample: decided either way
        assert res.verdict in (Verdict.HOLDS, Verdict.VIOLATED)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), n_in=st.integers(1, 5), depth=st.integers(0, 3), refine=st.booleans())
def test_bounds_are_below_every_sampled_value(tmp_path: Path, seed: int, n_in: int, depth: int, refine: bool) -> None:
    rng = np.random.default_rng(seed)
    sizes = [n_in] + [int(rng.integers(2, 12)) for _ in range(depth)] + [3]
    chain = dense_chain(load(save(random_mlp(rng, sizes), tmp_path / f"b{seed}.onnx")))
    rows = chain.with_rows(rng.normal(0, 1, (4, 3)), rng.normal(0, 1, 4))
    lo = rng.uniform(-2, 1, (6, n_in))
    hi = lo + rng.uniform(0, 1.5, (6, n_in)) * (rng.random((6, n_in)) < 0.9)
    rb = bound_rows(rows, lo, hi, refine=refine)
    x = lo[:, None] + (hi - lo)[:, None] * rng.random((6, 400, n_in))
    corners = np.where(rng.random((6, 100, n_in)) < 0.5, lo[:, None], hi[:, None])
    x = np.concatenate([x, corners], axis=1)
    values = rows.evaluate(x.reshape(-1, n_in)).reshape(6, 500, 4)
    assert (rb.lower[:, None] <= values + 1e-9).all()
    assert rb.a_in.shape == (6, 4, n_in)


def _expected(net: str, prop: str) -> str:
    rows = [line.split(",") for line in (ACAS / "expected.csv").read_text().split()[1:]]
    return {(o, v): e for o, v, e in rows}[(f"onnx/ACASXU_run2a_{net}_batch_2000.onnx", f"vnnlib/{prop}.vnnlib")]


ACAS_CASES = [("1_1", "prop_1"), ("3_3", "prop_1"), ("2_2", "prop_1"), ("4_5", "prop_10"), ("1_2", "prop_2"),
              ("2_1", "prop_2"), ("1_9", "prop_4"), ("1_1", "prop_4")]


@pytest.mark.parametrize("net,prop", ACAS_CASES, ids=[f"{n}-{p}" for n, p in ACAS_CASES])
def test_acas_xu_known_answers(net: str, prop: str) -> None:
    """The dense route alone gives the answers of VNN-COMP's expected.csv (which the torch route
    gives too: tests/verify/test_engine_acasxu.py)."""
    model, spec = ACAS / "onnx" / f"ACASXU_run2a_{net}_batch_2000.onnx", ACAS / "vnnlib" / f"{prop}.vnnlib"
    res = verify_property(model, spec, config=replace(DENSE, timeout_s=40))
    assert res.verdict.vnncomp == _expected(net, prop), res
    assert set(res.phases) == {"dense_falsify", "dense_search"}
    if res.verdict is Verdict.VIOLATED:
        from nnaudit.verify.vnnlib import parse

        assert counterexample_ok(model, parse(spec), res.counterexample.x)
        assert res.counterexample.input_shape == (1, 1, 5)


def test_unsupported_networks_take_the_torch_route(tmp_path: Path) -> None:
    """A sigmoid network: the dense route does not apply (unknown when forced), and the automatic
    route answers as the torch route does."""
    path = save(random_mlp(np.random.default_rng(3), [2, 6, 2], act="Sigmoid"), tmp_path / "sig.onnx")
    net = load(path)
    prop = linear_property(np.zeros(2), np.full(2, 0.1), [(np.array([[1.0, -1.0]]), np.array([100.0]))])
    forced = verify_property(net, prop, config=DENSE)
    assert forced.verdict is Verdict.UNKNOWN and "does not apply" in forced.message
    auto = verify_property(net, prop, config=replace(DENSE, route=Route.AUTO))
    torch_route = verify_property(net, prop, config=replace(DENSE, route=Route.TORCH))
    assert auto.verdict is torch_route.verdict is Verdict.HOLDS
    assert "bab" in auto.phases and "dense" in auto.phases


def test_undecided_dense_route_falls_back_to_the_torch_route() -> None:
    """A dense route that may split only once leaves ACAS Xu 3_3 prop 1 open: the torch route decides
    it with the time left, and the result counts both routes' sub-domains."""
    cfg = VerifyConfig(timeout_s=40, route=Route.AUTO, dense=DenseConfig(max_depth=1))
    res = verify_property(ACAS / "onnx" / "ACASXU_run2a_3_3_batch_2000.onnx", ACAS / "vnnlib" / "prop_1.vnnlib",
                          config=cfg)
    assert res.verdict is Verdict.HOLDS
    assert {"dense_search", "bab"} <= set(res.phases) and res.subdomains > 0


CLI_SCRIPT = """
import json, sys
from click.testing import CliRunner
from nnaudit.cli import cli
r = CliRunner().invoke(cli, ["verify", *sys.argv[1:]], catch_exceptions=False)
print(json.dumps({"exit": r.exit_code, "output": r.output, "torch": "torch" in sys.modules, "z3": "z3" in sys.modules}))
"""


@pytest.mark.parametrize("prop,code", [("prop_1", 0), ("prop_2", 1)])
def test_the_cli_decides_small_acas_instances_without_torch(tmp_path: Path, prop: str, code: int) -> None:
    """``nnaudit verify`` in a fresh interpreter: holds (1_1 prop 1) and violated (1_2 prop 2) with the
    usual summary, exit code and JSON document, and neither torch nor z3 imported."""
    net = "1_1" if prop == "prop_1" else "1_2"
    doc = tmp_path / "res.json"
    args = [str(ACAS / "onnx" / f"ACASXU_run2a_{net}_batch_2000.onnx"), str(ACAS / "vnnlib" / f"{prop}.vnnlib"),
            "--timeout", "60", "--output", str(doc)]
    run = subprocess.run([sys.executable, "-c", CLI_SCRIPT, *args], capture_output=True, text=True, timeout=300)
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["exit"] == code, out
    assert not out["torch"] and not out["z3"]
    assert out["output"].startswith("holds" if code == 0 else "violated")
    inst = json.loads(doc.read_text())["instances"][0]
    assert inst["verdict"] == ("holds" if code == 0 else "violated") and inst["subdomains"] >= (1 if code == 0 else 0)
    assert "dense_search" in inst["phases"]

"""The Z3 boundary and the exact encoding: fixed inputs reproduce the IR's
outputs, Int-step inputs agree with brute-force enumeration, and solver
outcomes map to sat/unsat/unknown."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import z3

from nnaudit.errors import SolverError
from nnaudit.networks import load
from nnaudit.verify.encode import encode_network
from nnaudit.verify.smt import SmtStatus, solve

import verify_nets


@pytest.mark.parametrize("kind", ["mlp", "cnn", "residual"])
def test_encoding_reproduces_outputs_at_a_point(kind: str, tmp_path) -> None:
    path = verify_nets.mlp(tmp_path, 1, (3, 6, 6, 2)) if kind == "mlp" else getattr(verify_nets, kind)(tmp_path, 1)
    net = load(path)
    x0 = np.random.default_rng(2).uniform(-1, 1, (1,) + net.input_shape)
    xs = [z3.Real(f"x{i}") for i in range(net.input_size)]
    for box in (None, (x0[0] - 0.1, x0[0] + 0.1)):
        cons, ys = encode_network(net, xs, lower=None if box is None else box[0], upper=None if box is None else box[1])
        fix = [x == float(v) for x, v in zip(xs, x0.ravel())]
        out = solve(cons + fix, timeout_s=30, values_of=ys)
        assert out.status is SmtStatus.SAT
        assert np.allclose(out.values, net.evaluate(x0).ravel(), atol=1e-9)


def test_int_step_inputs_match_enumeration(tmp_path) -> None:
    net = load(verify_nets.mlp(tmp_path, 4, (2, 6, 6, 2)))
    x0, step = np.array([0.1, -0.2]), 0.15
    ks = [z3.Int(f"k{i}") for i in range(2)]
    xs = [float(x0[i]) + ks[i] * z3.RealVal(step) for i in range(2)]
    lo, hi = x0 - 2 * step, x0 + 2 * step
    cons, ys = encode_network(net, xs, lower=lo, upper=hi)
    grid = np.array([x0 + step * np.array(k) for k in itertools.product(range(-2, 3), repeat=2)])
    best = net.evaluate(grid)[:, 0].max()
    rng = [c for k in ks for c in (k >= -2, k <= 2)]
    assert solve(cons + rng + [ys[0] >= best + 1e-6], timeout_s=30).status is SmtStatus.UNSAT
    sat = solve(cons + rng + [ys[0] >= best - 1e-6], timeout_s=30, values_of=ks)
    assert sat.status is SmtStatus.SAT and np.all(np.abs(sat.values) <= 2)


def test_solver_outcomes() -> None:
    x = z3.Real("x")
    assert solve([x > 1, x < 0], timeout_s=5).status is SmtStatus.UNSAT
    out = solve([x > 1, x < 3], timeout_s=5, values_of=[x, 2 * x])
    assert out.status is SmtStatus.SAT and 1 < out.values[0] < 3 and out.values[1] == 2 * out.values[0]
    assert solve([x > 1], timeout_s=0).status is SmtStatus.UNKNOWN


def test_sigmoid_cannot_be_encoded(tmp_path) -> None:
    net = load(verify_nets.mlp(tmp_path, 0, (2, 3, 2), act="Sigmoid"))
    with pytest.raises(SolverError, match="not piecewise linear"):
        encode_network(net, [z3.Real("a"), z3.Real("b")])

"""The verifier's rules on the IR op classes, one op at a time: every
``interval``, and ``linear_bounds`` and ``forward_linear_bounds`` through the
op's ``relax``, contains the op's
own ``forward`` at random points of random boxes (hypothesis), ``z3_encode``
is exact at those points, and every affine op's ``linear_form`` reproduces its
``forward``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import z3
from hypothesis import given, settings
from hypothesis import strategies as st

from nnaudit.errors import SolverError
from nnaudit.networks.ir import Layer
from nnaudit.networks.ops.activations import Relu, Sigmoid, Tanh
from nnaudit.networks.ops.pool import MaxPool, window_table
from nnaudit.networks.ops.spatial import Window2d
from nnaudit.verify.smt import real

_S = settings(max_examples=25, deadline=None)
TOL = 1e-9


def _ops() -> dict[str, tuple[Layer, tuple[int, ...]]]:
    """Op under test and its input node shape."""
    pool = lambda k, s, p: MaxPool("p", ("x",), "y", Window2d(k, s, p, (1, 1)))  # noqa: E731
    return {
        "relu": (Relu("r", ("x",), "y"), (1, 7)),
        "sigmoid": (Sigmoid("s", ("x",), "y"), (1, 5)),
        "tanh": (Tanh("t", ("x",), "y"), (1, 5)),
        "maxpool-2x2": (pool((2, 2), (2, 2), (0, 0, 0, 0)), (2, 4, 4)),
        "maxpool-overlap-pad": (pool((3, 3), (2, 2), (1, 1, 1, 1)), (1, 5, 5)),
    }


OPS = list(_ops())


def _forward(op: Layer, shape: tuple[int, ...], x: np.ndarray) -> np.ndarray:
    return op.forward(x.reshape((len(x),) + shape)).reshape(len(x), -1)


def _box_and_points(seed: int, n: int, d: int = 3, m: int = 40) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``d`` random boxes (some degenerate, some straddling 0) and ``m`` points in each, corners included."""
    rng = np.random.default_rng(seed)
    centre = rng.uniform(-2, 2, (d, n))
    width = rng.uniform(0, 2, (d, n)) * (rng.random((d, n)) > 0.1)
    lo, hi = centre - width * rng.random((d, n)), centre + width * rng.random((d, n))
    pts = lo[:, None] + (hi - lo)[:, None] * rng.random((d, m, n))
    pts[:, 0], pts[:, 1] = lo, hi
    return lo, hi, pts


@pytest.mark.parametrize("name", OPS)
@_S
@given(seed=st.integers(0, 100_000))
def test_interval_contains_forward(name: str, seed: int) -> None:
    op, shape = _ops()[name]
    lo, hi, pts = _box_and_points(seed, int(np.prod(shape)))
    blo, bhi = op.interval(torch.as_tensor(lo), torch.as_tensor(hi), in_shape=shape)
    y = _forward(op, shape, pts.reshape(-1, pts.shape[-1])).reshape(pts.shape[0], pts.shape[1], -1)
    assert np.all(y >= blo.numpy()[:, None] - TOL) and np.all(y <= bhi.numpy()[:, None] + TOL)


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("with_alpha", [False, True])
@_S
@given(seed=st.integers(0, 100_000))
def test_linear_bounds_are_below_forward(name: str, with_alpha: bool, seed: int) -> None:
    """``a @ op(x) >= a_in @ x + const`` at every point, for random ``a`` (and random ReLU slopes)."""
    op, shape = _ops()[name]
    n = int(np.prod(shape))
    lo, hi, pts = _box_and_points(seed, n)
    rng = np.random.default_rng(seed + 1)
    n_out = _forward(op, shape, lo).shape[1]
    a = torch.as_tensor(rng.normal(size=(lo.shape[0], 4, n_out)))
    alpha = torch.as_tensor(rng.random((lo.shape[0], n))) if with_alpha else None
    relax = op.relax(torch.as_tensor(lo), torch.as_tensor(hi), in_shape=shape, alpha=alpha)
    a_in, const = op.linear_bounds(a, relax, in_shape=shape)
    y = _forward(op, shape, pts.reshape(-1, n)).reshape(pts.shape[0], pts.shape[1], -1)
    lhs = np.einsum("drk,dmk->dmr", a.numpy(), y)
    rhs = np.einsum("drk,dmk->dmr", a_in.numpy(), pts) + const.numpy()[:, None]
    assert np.all(lhs >= rhs - 1e-8)


@pytest.mark.parametrize("name", OPS)
@_S
@given(seed=st.integers(0, 100_000))
def test_forward_linear_bounds_enclose_forward(name: str, seed: int) -> None:
    """Starting from the exact form ``z = x`` the pushed bounds enclose ``op(x)``."""
    op, shape = _ops()[name]
    n = int(np.prod(shape))
    lo, hi, pts = _box_and_points(seed, n)
    d = lo.shape[0]
    ident = torch.cat([torch.eye(n, dtype=torch.float64), torch.zeros(1, n, dtype=torch.float64)])
    zl = ident.expand(d, -1, -1).clone()
    relax = op.relax(torch.as_tensor(lo), torch.as_tensor(hi), in_shape=shape)
    ol, ou = op.forward_linear_bounds(zl, zl.clone(), relax, in_shape=shape)
    y = _forward(op, shape, pts.reshape(-1, n)).reshape(d, pts.shape[1], -1)
    lower = np.einsum("dmn,dnk->dmk", pts, ol[:, :-1].numpy()) + ol[:, -1].numpy()[:, None]
    upper = np.einsum("dmn,dnk->dmk", pts, ou[:, :-1].numpy()) + ou[:, -1].numpy()[:, None]
    assert np.all(y >= lower - 1e-8) and np.all(y <= upper + 1e-8)


@pytest.mark.parametrize("name", ["relu", "maxpool-2x2", "maxpool-overlap-pad"])
@pytest.mark.parametrize("use_bounds", [False, True])
@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 100_000))
def test_z3_encoding_is_exact_at_points(name: str, use_bounds: bool, seed: int) -> None:
    """With the inputs fixed to a point of the box, the only output the
    encoding allows is ``forward`` at that point."""
    op, shape = _ops()[name]
    n = int(np.prod(shape))
    lo, hi, pts = _box_and_points(seed, n, d=1, m=3)
    x = pts[0, 2]
    bounds = (lo[0], hi[0]) if use_bounds else None
    need = op.z3_inputs_needed(bounds, None, in_shape=shape)
    z = [z3.Real(f"z{i}") if need is None or need[i] else None for i in range(n)]
    outs, cons = op.z3_encode(z, bounds, None, in_shape=shape, name="y")
    expected = _forward(op, shape, x[None])[0]
    fix = [zi == real(float(x[i])) for i, zi in enumerate(z) if zi is not None]
    solver = z3.Solver()
    solver.add(*cons, *fix)
    assert solver.check() == z3.sat
    deviates = z3.Or([z3.Or(o > real(e) + real(1e-9), o < real(e) - real(1e-9)) for o, e in zip(outs, expected)])
    solver.add(deviates)
    assert solver.check() == z3.unsat


def test_relu_phases_constrain_the_encoding() -> None:
    """A fixed phase is a constraint: active forces ``z >= 0`` and ``x = z``, inactive ``z <= 0`` and ``x = 0``."""
    op = Relu("r", ("x",), "y")
    z = [z3.Real("a"), z3.Real("b")]
    outs, cons = op.z3_encode(z, None, np.array([1, -1]), in_shape=(2,), name="y")
    solver = z3.Solver()
    solver.add(*cons, z[0] == -1)
    assert solver.check() == z3.unsat
    solver = z3.Solver()
    solver.add(*cons, z[0] == 2, z[1] == -3, outs[0] == 2, outs[1] == 0)
    assert solver.check() == z3.sat


@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
def test_smooth_activations_refuse_an_exact_encoding(name: str) -> None:
    op, shape = _ops()[name]
    with pytest.raises(SolverError, match="not piecewise linear"):
        op.z3_encode([z3.Real("z")], None, None, in_shape=shape, name="y")


def test_window_table_marks_padding() -> None:
    table = window_table(Window2d((3, 3), (2, 2), (1, 1, 1, 1), (1, 1)), (1, 5, 5))
    assert table.shape == (9, 9)
    assert list(table[0]) == [-1, -1, -1, -1, 0, 1, -1, 5, 6]
    assert table.max() == 24


def test_affine_ops_linear_form_reproduces_forward() -> None:
    """Every affine layer of the bundled CNN and MLP: ``x @ M + b == forward(x)``."""
    from nnaudit.networks import zoo

    seen = set()
    for name in ("digits-cnn", "digits-ffn"):
        net = zoo.load(name)
        rng = np.random.default_rng(0)
        env = net.run_layers(rng.uniform(0, 1, (3,) + net.input_node_shape))
        for layer in net.layers:
            if not layer.affine:
                continue
            seen.add(type(layer).__name__)
            in_shapes = [net.node_shapes[t] for t in layer.inputs]
            mats, bias = layer.linear_form(in_shapes, net.node_shapes[layer.output])
            got = sum(env[t].reshape(3, -1) @ m for t, m in zip(layer.inputs, mats)) + bias
            assert np.allclose(got, env[layer.output].reshape(3, -1), atol=1e-9), layer
    assert {"Linear", "Conv"} <= seen


def test_a_non_affine_op_has_no_linear_form() -> None:
    with pytest.raises(TypeError, match="not affine"):
        Relu("r", ("x",), "y").linear_form([(1, 3)], (1, 3))

"""The dense route's network (``networks/dense.py``): which graphs become a NumPy chain, and that
the chain computes what onnxruntime computes on the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import helper

from nnaudit.networks import load
from nnaudit.networks.dense import DenseLimits, agrees_with_runtime, dense_chain, single_threaded_blas
from nnaudit.networks.runtime import reference
from onnx_build import make_model, random_mlp, save

ACAS = Path(__file__).resolve().parents[1] / "data" / "vnncomp" / "acasxu"


def _mlp(tmp_path: Path, sizes: list[int], seed: int = 0, **kw) -> Path:
    return save(random_mlp(np.random.default_rng(seed), sizes, **kw), tmp_path / f"mlp{seed}.onnx")


def test_acas_xu_is_a_chain_that_onnxruntime_confirms() -> None:
    net = load(ACAS / "onnx" / "ACASXU_run2a_1_1_batch_2000.onnx")
    chain = dense_chain(net)
    assert chain is not None and chain.input_size == 5 and chain.output_size == 5 and chain.hidden == 300
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (64, 5))
    assert np.allclose(chain.evaluate(x), net.evaluate(x.reshape(64, 1, 1, 5)), atol=1e-9)
    lo, hi = np.full(5, -0.5), np.full(5, 0.5)
    assert agrees_with_runtime(chain, reference(net), lo, hi, net.input_shape)


@pytest.mark.parametrize("gemm", [True, False], ids=["gemm", "matmul-add"])
def test_fully_connected_relu_nets_become_chains(tmp_path: Path, gemm: bool) -> None:
    net = load(_mlp(tmp_path, [3, 7, 6, 2], gemm=gemm))
    chain = dense_chain(net)
    assert chain is not None and [w.shape for w in chain.weights] == [(3, 7), (7, 6), (6, 2)]
    assert agrees_with_runtime(chain, reference(net), np.full(3, -1.0), np.ones(3), net.input_shape, samples=32)


def test_input_normalisation_is_composed_into_the_first_map(tmp_path: Path) -> None:
    """Flatten, Sub and Div in front (ACAS Xu's own files normalise this way in some versions)."""
    rng = np.random.default_rng(1)
    nodes = [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("Sub", ["f", "mean"], ["s"]),
             helper.make_node("Div", ["s", "std"], ["n"]), helper.make_node("Gemm", ["n", "w1", "b1"], ["h"], transB=1),
             helper.make_node("Relu", ["h"], ["r"]), helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], transB=1)]
    inits = {"mean": rng.normal(0, 1, (1, 4)).astype(np.float32), "std": rng.uniform(0.5, 2, (1, 4)).astype(np.float32),
             "w1": rng.normal(0, 1, (6, 4)).astype(np.float32), "b1": rng.normal(0, 1, 6).astype(np.float32),
             "w2": rng.normal(0, 1, (3, 6)).astype(np.float32), "b2": rng.normal(0, 1, 3).astype(np.float32)}
    path = save(make_model(nodes, ("x", [1, 1, 4]), ("y", [1, 3]), inits), tmp_path / "norm.onnx")
    net = load(path)
    chain = dense_chain(net)
    assert chain is not None and len(chain.weights) == 2
    assert agrees_with_runtime(chain, reference(net), np.full(4, -2.0), np.full(4, 2.0), net.input_shape, samples=32)


def test_other_graphs_are_not_chains(tmp_path: Path) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "verify"))
    import verify_nets

    assert dense_chain(load(_mlp(tmp_path, [3, 5, 2], act="Sigmoid"))) is None     # another activation
    assert dense_chain(load(verify_nets.cnn(tmp_path, 0))) is None                  # conv, max-pool, 36 inputs
    assert dense_chain(load(verify_nets.residual(tmp_path, 0))) is None             # a skip connection
    assert dense_chain(load(_mlp(tmp_path, [20, 4, 2], seed=2))) is None            # too many inputs
    wide = load(_mlp(tmp_path, [3, 40, 40, 2], seed=3))
    assert dense_chain(wide, DenseLimits(max_hidden=79)) is None and dense_chain(wide) is not None


def test_a_chain_that_onnxruntime_contradicts_is_refused(tmp_path: Path) -> None:
    net = load(_mlp(tmp_path, [2, 4, 2]))
    chain = dense_chain(net)
    off = type(chain)(chain.weights, chain.biases[:-1] + (chain.biases[-1] + 1e-3,))
    assert not agrees_with_runtime(off, reference(net), np.zeros(2), np.ones(2), net.input_shape)


def test_rows_and_gradients(tmp_path: Path) -> None:
    chain = dense_chain(load(_mlp(tmp_path, [3, 8, 8, 2], seed=4)))
    rows = chain.with_rows(np.array([[1.0, -1.0], [0.0, 2.0]]), np.array([0.5, -1.0]))
    x = np.random.default_rng(4).uniform(-1, 1, (16, 3))
    y = chain.evaluate(x)
    assert np.allclose(rows.evaluate(x), np.stack([y[:, 0] - y[:, 1] + 0.5, 2 * y[:, 1] - 1.0], 1))
    pick = np.arange(16) % 2
    _, grad = rows.gradient(x, pick)
    eps = 1e-6
    for i in range(3):
        step = np.zeros(3)
        step[i] = eps
        fd = (rows.evaluate(x + step) - rows.evaluate(x - step))[np.arange(16), pick] / (2 * eps)
        assert np.allclose(grad[:, i], fd, atol=1e-5)


def test_single_threaded_blas_restores_the_thread_count() -> None:
    from threadpoolctl import threadpool_info

    def blas_threads() -> list[int]:
        return [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]

    before = blas_threads()
    if not before:
        pytest.skip("NumPy loaded no BLAS that threadpoolctl knows")
    with single_threaded_blas():
        assert set(blas_threads()) == {1}
    assert blas_threads() == before

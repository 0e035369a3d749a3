"""Every attack on ``cuda``: results confirmed by onnxruntime, inside the
threat model, and as strong as the same attack on the CPU.

Skipped where torch sees no CUDA device (CI has none); run on a GPU machine
with ``pytest tests/attacks/test_attacks_cuda.py`` (``bench/gpu_checks.sh``
does, and records the outcome)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import nnaudit.attacks as A
from nnaudit.attacks.threat import perturbation_norms
from nnaudit.networks.runtime import OnnxRuntimeModel

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

SETTINGS = {
    "fgsm": ("linf", 0.1, {}),
    "pgd": ("linf", 0.1, {"steps": 20}),
    "pgd-l2": ("l2", 1.5, {"steps": 20}),
    "apgd-ce": ("linf", 0.1, {"steps": 20}),
    "apgd-dlr": ("linf", 0.1, {"steps": 20}),
    "cw": ("l2", 1.0, {"steps": 50, "binary_search_steps": 3, "initial_const": 1.0, "lr": 0.05}),
    "deepfool": ("linf", 0.1, {}),
    "jsma": ("l0", 8, {}),
}


@pytest.fixture(scope="module")
def digits_net():
    from nnaudit.networks import datasets, zoo

    net = zoo.load("digits-cnn")
    x, y = datasets.digits("test")
    return net, x[:96].reshape((96, *net.input_shape)), y[:96]


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_cuda_attack_is_confirmed_and_as_strong_as_cpu(digits_net, name):
    net, x, y = digits_net
    norm, eps, opts = SETTINGS[name]
    attack = "pgd" if name == "pgd-l2" else name
    gpu = A.run_attack(attack, net, x, y, eps=eps, norm=norm, device="cuda", seed=0, **opts)
    cpu = A.run_attack(attack, net, x, y, eps=eps, norm=norm, device="cpu", seed=0, threads=1, **opts)
    assert gpu.device == "cuda"
    ort = OnnxRuntimeModel(net.source)
    np.testing.assert_array_equal(gpu.success, ort.predict(gpu.x_adv) != y)
    norms = perturbation_norms(x, gpu.x_adv)
    if norm != "l2" or attack != "cw":  # CW is unbounded in L2 here: eps only filters the report
        bound = {"linf": "linf", "l2": "l2", "l0": "l0"}[norm]
        assert np.all(norms[bound][gpu.success] <= eps * (1 + 1e-5) + 1e-6)
    assert gpu.x_adv.min() >= 0.0 and gpu.x_adv.max() <= 1.0
    # float rounding differs between devices; the attack may not be weaker by more than 2 samples
    assert gpu.success.sum() >= cpu.success.sum() - 2, (gpu.success.sum(), cpu.success.sum())


def test_cuda_evaluate_and_auto_device(digits_net):
    net, x, y = digits_net
    rep = A.evaluate(net, x, y, attacks=["fgsm", "pgd"], eps=[0.05, 0.1], device="auto", seed=0)
    assert rep.device == "cuda" and len(rep.cells) == 4
    res = A.fgsm(net, x, y, eps=0.1, device="auto")
    assert res.device == "cuda"


def test_cuda_same_seed_same_result(digits_net):
    net, x, y = digits_net
    a = A.pgd(net, x, y, eps=0.05, steps=10, seed=3, device="cuda")
    b = A.pgd(net, x, y, eps=0.05, steps=10, seed=3, device="cuda")
    np.testing.assert_array_equal(a.success, b.success)
    np.testing.assert_allclose(a.x_adv, b.x_adv, atol=1e-6)


def test_cuda_pgd_through_a_dense_chain():
    """digits-ffn is a chain of dense layers and ReLUs: on the GPU too PGD takes the chain's
    hand-written gradient, and finds what it finds on the CPU (confirmed by onnxruntime)."""
    from nnaudit.attacks.base import torch_logits
    from nnaudit.networks import datasets, zoo
    from nnaudit.networks.torch_chain import DenseChain

    net = zoo.load("digits-ffn")
    x, y = datasets.load_data("digits", tuple(net.input_shape), num_classes=net.output_size)
    x, y = x[:96], y[:96]
    assert isinstance(torch_logits(net, torch.device("cuda")), DenseChain)
    gpu = A.pgd(net, x, y, eps=0.1, steps=20, seed=0, device="cuda")
    cpu = A.pgd(net, x, y, eps=0.1, steps=20, seed=0, device="cpu", threads=1)
    np.testing.assert_array_equal(gpu.success, OnnxRuntimeModel(net.source).predict(gpu.x_adv) != y)
    assert gpu.success.sum() >= cpu.success.sum() - 2, (gpu.success.sum(), cpu.success.sum())


@pytest.mark.parametrize("name, norm, eps", [("digits-ffn", "linf", 0.1), ("digits-cnn", "linf", 0.1),
                                             ("digits-cnn", "l2", 0.5)])
def test_cuda_graph_replays_what_the_eager_masked_form_computes(name, norm, eps):
    """PGD's restarts replayed as CUDA graphs (the default on CUDA) end where the eager masked
    form ends, through the hand-written gradient (digits-ffn) and autograd (digits-cnn); the
    graph captured for the first batch is replayed for the second (same padded shape), the
    restarts and the last, smaller batch included; successes confirmed by onnxruntime."""
    from nnaudit.attacks import cuda_graphs
    from nnaudit.networks import datasets, zoo

    net = zoo.load(name)
    x, y = datasets.digits("test")
    x, y = x[:200].reshape((200, *net.input_shape)), y[:200]
    kw = dict(eps=eps, norm=norm, steps=20, restarts=2, seed=1, device="cuda", batch_size=120)
    cuda_graphs.clear()
    graphed = A.pgd(net, x, y, graph=True, **kw)
    assert cuda_graphs.cached() == 1  # 120 and 80 rows both pad to 128; both restarts share the graph
    eager = A.pgd(net, x, y, graph=False, **kw)
    again = A.pgd(net, x, y, graph=True, **kw)
    assert cuda_graphs.cached() == 1
    np.testing.assert_array_equal(graphed.success, OnnxRuntimeModel(net.source).predict(graphed.x_adv) != y)
    np.testing.assert_array_equal(graphed.success, again.success)
    np.testing.assert_allclose(graphed.x_adv, again.x_adv, atol=1e-6)  # cuDNN's kernels need not be bitwise deterministic
    # the eager form runs other batch shapes (compacted): kernels may round differently
    assert abs(int(graphed.success.sum()) - int(eager.success.sum())) <= 2
    assert np.mean(np.abs(graphed.x_adv - eager.x_adv).max(axis=tuple(range(1, x.ndim))) <= 1e-5) >= 0.9
    assert 0 < graphed.success.sum() < len(x)


@pytest.mark.parametrize("name", ["digits-ffn", "digits-cnn"])
def test_cuda_graph_replays_cw_rounds_like_the_eager_ones(name):
    """CW's rounds replayed as CUDA graphs (the default on CUDA) end where the eager rounds (torch's
    Adam, a loop that breaks) end; every round of the search replays the one graph."""
    from nnaudit.attacks import cuda_graphs
    from nnaudit.networks import datasets, zoo

    net = zoo.load(name)
    x, y = datasets.digits("test")
    x, y = x[:100].reshape((100, *net.input_shape)), y[:100]
    kw = dict(eps=float("inf"), norm="l2", steps=60, binary_search_steps=3, initial_const=10.0, lr=0.05, device="cuda")
    cuda_graphs.clear()
    graphed = A.cw(net, x, y, graph=True, **kw)
    assert cuda_graphs.cached() == 1
    eager = A.cw(net, x, y, graph=False, **kw)
    np.testing.assert_array_equal(graphed.success, OnnxRuntimeModel(net.source).predict(graphed.x_adv) != y)
    assert abs(int(graphed.success.sum()) - int(eager.success.sum())) <= 1
    both = graphed.success & eager.success
    np.testing.assert_allclose(graphed.norms["l2"][both], eager.norms["l2"][both], atol=1e-3)


def test_cuda_graph_capture_failure_falls_back_to_eager(caplog):
    """A function that waits for the device cannot be captured: replay warns once, runs it
    eagerly from then on (right results for new inputs), and later graphs still capture."""
    import logging

    from nnaudit.attacks import cuda_graphs

    cuda_graphs.clear()
    owner, x = object(), torch.arange(4.0, device="cuda")

    def waits(t):
        return (t * 2 + float(t.sum()),)  # float(): a wait for the device, not allowed in a capture

    with caplog.at_level(logging.WARNING, logger="nnaudit.attacks.cuda_graphs"):
        (out,) = cuda_graphs.replay(owner, "waits", waits, [x])
    assert "capture failed" in caplog.text
    torch.testing.assert_close(out, x * 2 + 6)
    (again,) = cuda_graphs.replay(owner, "waits", waits, [x + 1])
    torch.testing.assert_close(again, (x + 1) * 2 + 10)
    cuda_graphs.replay(owner, "pure", lambda t: (t * 3,), [x])  # captured here
    (tripled_again,) = cuda_graphs.replay(owner, "pure", lambda t: (t * 3,), [x + 1])
    torch.testing.assert_close(tripled_again, (x + 1) * 3)
    assert cuda_graphs.cached() == 2

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

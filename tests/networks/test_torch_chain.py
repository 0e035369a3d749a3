"""The dense-chain torch form: only chains of dense layers and ReLUs have one, its logits
are the module's, its hand-written input gradient is autograd's, and PGD through it finds
what PGD through the module finds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nnaudit.attacks as A
from nnaudit.networks import load, zoo
from nnaudit.networks.torch_chain import DenseChain

from onnx_build import random_mlp, save


def _mlp(tmp_path, seed: int, sizes: list[int], act: str = "Relu", gemm: bool = True):
    return load(save(random_mlp(np.random.default_rng(seed), sizes, act=act, gemm=gemm),
                     tmp_path / f"m{seed}{act}{gemm}.onnx"))


def test_only_chains_of_dense_layers_and_relus_have_a_chain_form(tmp_path) -> None:
    assert DenseChain.of(zoo.load("digits-ffn"), "cpu") is not None
    assert DenseChain.of(zoo.load("digits-cnn"), "cpu") is None
    assert DenseChain.of(_mlp(tmp_path, 0, [3, 4, 2], act="Sigmoid"), "cpu") is None
    assert DenseChain.of(_mlp(tmp_path, 0, [3, 4, 2], gemm=False), "cpu") is not None


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), depth=st.integers(1, 4), gemm=st.booleans())
def test_logits_and_input_gradients_match_the_module_and_autograd(seed: int, depth: int, gemm: bool,
                                                                  tmp_path) -> None:
    rng = np.random.default_rng(seed)
    sizes = [int(v) for v in rng.integers(2, 9, depth + 1)]
    net = _mlp(tmp_path, seed, sizes, gemm=gemm)
    chain, module = DenseChain.of(net, "cpu"), net.to_torch("cpu")
    x = torch.as_tensor(rng.normal(0, 1, (16, sizes[0])), dtype=torch.float32)
    seed_k = torch.as_tensor(rng.normal(0, 1, (16, sizes[-1])), dtype=torch.float32)
    before = x.clone()
    logits, tape = chain.with_tape(x)
    assert torch.allclose(logits, module(x), atol=1e-5)
    assert torch.allclose(chain(x), logits)
    xg = x.clone().requires_grad_(True)
    (want,) = torch.autograd.grad(module(xg), xg, seed_k)
    assert torch.allclose(chain.input_grad(tape, seed_k), want, atol=1e-5)
    assert torch.equal(x, before)  # the input is left as it was


@pytest.mark.parametrize("eps", [0.05, 0.1])
def test_pgd_through_the_chain_finds_what_pgd_through_autograd_finds(eps: float) -> None:
    """The same attack with the network's chain form hidden (a plain function: autograd path)."""
    from nnaudit.attacks.base import torch_logits
    from nnaudit.networks import datasets

    net = zoo.load("digits-ffn")
    x, y = datasets.load_data("digits", tuple(net.input_shape), num_classes=net.output_size)
    x, y = x[:200], y[:200]
    fast = A.pgd(net, x, y, eps=eps, steps=10, seed=3, budget=1.0)
    key = "attack-logits:cpu"
    chain = torch_logits(net, torch.device("cpu"))
    assert isinstance(chain, DenseChain)
    net._torch_cache[key] = lambda t: chain(t)
    try:
        slow = A.pgd(net, x, y, eps=eps, steps=10, seed=3, budget=1.0)
    finally:
        net._torch_cache[key] = chain
    assert np.array_equal(fast.success, slow.success)
    assert np.allclose(fast.x_adv, slow.x_adv, atol=1e-6)

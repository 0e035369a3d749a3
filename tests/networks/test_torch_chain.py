"""The dense-chain torch form: only sequences of affine layers and ReLUs whose dense form is
small have one (chains of dense layers directly, others lowered to matrices), its logits are
the module's, its hand-written input gradient is autograd's, and PGD through it finds what PGD
through the module finds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nnaudit.attacks as A
from nnaudit.networks import load, zoo
from nnaudit.networks.torch_chain import DenseChain

from onnx import helper

from onnx_build import make_model, random_mlp, save


def _mlp(tmp_path, seed: int, sizes: list[int], act: str = "Relu", gemm: bool = True):
    return load(save(random_mlp(np.random.default_rng(seed), sizes, act=act, gemm=gemm),
                     tmp_path / f"m{seed}{act}{gemm}.onnx"))


def _conv_net(tmp_path, rng: np.random.Generator, *, channels: int, size: int, stride: int,
              pads: list[int], residual: bool = False, name: str = "c"):
    """conv 3x3 -> relu (-> + its input, residual) -> flatten -> gemm to 3 classes."""
    w = rng.normal(0, 0.5, (channels, 1, 3, 3)).astype(np.float32)
    b = rng.normal(0, 0.1, channels).astype(np.float32)
    h, w_out = ((size + pads[i] + pads[i + 2] - 3) // stride + 1 for i in (0, 1))  # ONNX pads: begins, then ends
    n = channels * h * w_out
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["c"], kernel_shape=[3, 3], strides=[stride, stride], pads=pads),
             helper.make_node("Relu", ["c"], ["r"])]
    last = "r"
    if residual:
        nodes.append(helper.make_node("Add", ["r", "c"], ["s"]))
        last = "s"
    nodes += [helper.make_node("Flatten", [last], ["f"]), helper.make_node("Gemm", ["f", "G", "g"], ["y"], transB=1)]
    inits = {"W": w, "B": b, "G": rng.normal(0, 1 / np.sqrt(n), (3, n)).astype(np.float32),
             "g": rng.normal(0, 0.1, 3).astype(np.float32)}
    model = make_model(nodes, ("x", ["N", 1, size, size]), ("y", ["N", 3]), inits)
    return load(save(model, tmp_path / f"{name}.onnx"))


def test_only_small_sequences_of_affine_layers_and_relus_have_a_chain_form(tmp_path) -> None:
    rng = np.random.default_rng(0)
    ffn = DenseChain.of(zoo.load("digits-ffn"), "cpu")
    assert ffn is not None and [None if s is None else tuple(s[0].shape) for s in ffn.steps] == [
        (64, 32), None, (32, 32), None, (32, 10)]
    cnn = DenseChain.of(zoo.load("digits-cnn"), "cpu")  # conv, relu, conv, relu, flatten, linear: lowered
    assert cnn is not None and [None if s is None else tuple(s[0].shape) for s in cnn.steps] == [
        (64, 256), None, (256, 128), None, (128, 10)]
    assert DenseChain.of(_mlp(tmp_path, 0, [3, 4, 2], act="Sigmoid"), "cpu") is None
    assert DenseChain.of(_mlp(tmp_path, 0, [3, 4, 2], gemm=False), "cpu") is not None
    residual = _conv_net(tmp_path, rng, channels=2, size=5, stride=1, pads=[1, 1, 1, 1], residual=True, name="res")
    assert DenseChain.of(residual, "cpu") is None  # a ReLU's input read again: not a chain
    big = _conv_net(tmp_path, rng, channels=16, size=64, stride=1, pads=[1, 1, 1, 1], name="big")
    assert DenseChain.of(big, "cpu") is None  # 4096 x 65536 entries: keeps the module, nothing built


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), channels=st.integers(1, 3), size=st.integers(4, 7), stride=st.integers(1, 2),
       pads=st.lists(st.integers(0, 2), min_size=4, max_size=4))
def test_a_lowered_convolutional_chain_is_the_module_and_its_gradient_autograds(
        seed: int, channels: int, size: int, stride: int, pads: list[int], tmp_path) -> None:
    rng = np.random.default_rng(seed)
    net = _conv_net(tmp_path, rng, channels=channels, size=size, stride=stride, pads=pads, name=f"c{seed}")
    chain, module = DenseChain.of(net, "cpu"), net.to_torch("cpu")
    assert chain is not None
    x = torch.as_tensor(rng.uniform(0, 1, (8, 1, size, size)), dtype=torch.float32)
    seed_k = torch.as_tensor(rng.normal(0, 1, (8, 3)), dtype=torch.float32)
    logits, tape = chain.with_tape(x)
    assert torch.allclose(logits, module(x).reshape(8, 3), atol=1e-5)
    xg = x.clone().requires_grad_(True)
    (want,) = torch.autograd.grad(module(xg).reshape(8, 3), xg, seed_k)
    grad = chain.input_grad(tape, seed_k)
    assert grad.shape == x.shape and torch.allclose(grad, want, atol=1e-5)


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

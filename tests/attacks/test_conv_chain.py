"""The conv chain (:mod:`nnaudit.attacks.conv_chain`): its hand-written input gradient
equals autograd's, on single convolutions of many shapes and on real conv networks,
and PGD through it finds what it finds through the IR's module."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nnaudit.attacks.conv_chain import ConvChain, _Conv

DATA = Path(__file__).resolve().parents[1] / "data"
CIFAR_MEAN, CIFAR_STD = (0.485, 0.456, 0.406), (0.225, 0.225, 0.225)


@pytest.mark.parametrize("stride, kernel, pads, dilation, size", [
    ((2, 2), (4, 4), (1, 1, 1, 1), (1, 1), (32, 32)),  # cifar_base_kw's layers
    ((1, 1), (3, 3), (1, 1, 1, 1), (1, 1), (9, 7)),
    ((2, 2), (3, 3), (0, 0, 0, 0), (1, 1), (11, 10)),  # odd input: the last row and column get no gradient phase
    ((3, 2), (5, 3), (2, 0, 1, 1), (1, 1), (13, 9)),  # unequal strides, asymmetric pads
    ((2, 1), (3, 3), (1, 2, 0, 1), (2, 1), (12, 8)),  # dilation
    ((3, 3), (2, 2), (0, 0, 0, 0), (1, 1), (10, 10)),  # stride larger than the kernel: input cells no tap reaches
])
def test_subpixel_gradient_equals_autograd(stride, kernel, pads, dilation, size) -> None:
    gen = torch.Generator().manual_seed(3)
    c_in, c_out = 3, 5
    x = torch.rand((4, c_in) + size, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn((c_out, c_in) + kernel, generator=gen, dtype=torch.float64)
    b = torch.randn(c_out, generator=gen, dtype=torch.float64)
    top, left, bottom, right = pads
    y = F.conv2d(F.pad(x, (left, right, top, bottom)), w, b, stride=stride, dilation=dilation)
    g = torch.randn(y.shape, generator=gen, dtype=torch.float64)
    (want,) = torch.autograd.grad((y * g).sum(), x)
    window = SimpleNamespace(strides=stride, dilations=dilation, pads=pads)
    conv = _Conv((c_in,) + size, tuple(y.shape[1:]), w, b, window)
    assert torch.allclose(conv.forward(x.detach()), y.detach(), atol=1e-12)
    assert torch.allclose(conv.backward(g), want, atol=1e-12)


def _cifar():
    from nnaudit.networks.normalise import normalised

    d = np.load(DATA / "cifar10" / "cifar10_test_3.npz")
    return normalised(DATA / "cifar10" / "cifar_base_kw.onnx", CIFAR_MEAN, CIFAR_STD), d["x"], d["y"]


def test_chain_matches_module_on_cifar_base_kw() -> None:
    net, x, _ = _cifar()
    chain = ConvChain.of(net, "cpu")
    assert chain is not None
    module = net.to_torch("cpu")
    xt = torch.as_tensor(x).requires_grad_(True)
    logits = module(xt).reshape(len(x), -1)
    seed = torch.randn(logits.shape, generator=torch.Generator().manual_seed(1))
    (want,) = torch.autograd.grad((logits * seed).sum(), xt)
    ours, tape = chain.with_tape(torch.as_tensor(x))
    assert torch.allclose(ours, logits.detach(), atol=1e-4)
    assert torch.allclose(chain.input_grad(tape, seed), want, atol=1e-5, rtol=1e-4)
    assert torch.allclose(chain(torch.as_tensor(x)), ours)  # the differentiable call: the same logits


def test_chain_of_digits_cnn_and_not_of_dense_networks() -> None:
    from nnaudit.networks import zoo

    assert ConvChain.of(zoo.load("digits-cnn"), "cpu") is not None
    assert ConvChain.of(zoo.load("digits-ffn"), "cpu") is None  # no convolution: the dense chain's case


def test_pgd_through_the_chain_finds_what_the_module_finds() -> None:
    """torch_logits picks the chain for cifar_base_kw; PGD's successes through it are the module's,
    and every one is confirmed by onnxruntime."""
    import nnaudit.attacks as A
    from nnaudit.attacks.base import onnx_reference, torch_logits

    net, x, y = _cifar()
    assert isinstance(torch_logits(net, torch.device("cpu")), ConvChain)
    through_chain = A.pgd(net, x, y, eps=8 / 255, steps=20, seed=0)
    net2, _, _ = _cifar()
    module = net2.to_torch("cpu").eval()
    net2._torch_cache["attack-logits:cpu"] = lambda t: module(t).reshape(len(t), -1)
    through_module = A.pgd(net2, x, y, eps=8 / 255, steps=20, seed=0)
    assert through_chain.success.tolist() == through_module.success.tolist()
    assert not through_chain.mismatch.any()
    confirmed = onnx_reference(net).run(through_chain.x_adv).argmax(axis=1) != y
    assert (confirmed == through_chain.success).all()

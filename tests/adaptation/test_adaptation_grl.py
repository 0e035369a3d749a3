"""Gradient reversal layer: identity forward, -lambda * gradient backward."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from nnaudit.adaptation.grl import GradientReversal, grad_reverse
from nnaudit.adaptation.models import DANN, mlp_parts


def _head(x: torch.Tensor) -> torch.Tensor:
    """A nonlinear function of the features, so gradients depend on x."""
    return torch.tanh(x @ torch.arange(1.0, 4.0, dtype=x.dtype)).sum() + (x**3).sum()


def _numerical_grad(f, x: torch.Tensor, h: float = 1e-6) -> torch.Tensor:
    g = torch.zeros_like(x)
    for i in range(x.numel()):
        e = torch.zeros_like(x).view(-1)
        e[i] = h
        e = e.view_as(x)
        g.view(-1)[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


def test_forward_is_identity() -> None:
    x = torch.randn(4, 3, dtype=torch.float64)
    assert torch.equal(grad_reverse(x, 0.7), x)
    assert torch.equal(GradientReversal(2.0)(x), x)


@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0, 2.5])
def test_backward_is_minus_lambda_times_true_gradient(lam: float) -> None:
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    _head(grad_reverse(x, lam)).backward()
    expected = -lam * _numerical_grad(_head, x.detach())
    assert torch.allclose(x.grad, expected, atol=1e-6)


def test_gradcheck_sign_and_scale() -> None:
    x = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    # lambda = -1 reverses the reversal: the gradient is the true one, so gradcheck passes ...
    assert torch.autograd.gradcheck(lambda t: _head(grad_reverse(t, -1.0)), (x,))
    # ... reversing twice with scales a and 1/a is also the true gradient (scale is multiplicative) ...
    assert torch.autograd.gradcheck(lambda t: _head(grad_reverse(grad_reverse(t, 4.0), 0.25)), (x,))
    # ... while a single reversal is not the gradient of the identity forward.
    assert not torch.autograd.gradcheck(lambda t: _head(grad_reverse(t, 0.5)), (x,), raise_exception=False)


def test_module_lambda_is_read_at_call_time() -> None:
    grl = GradientReversal(1.0)
    x = torch.ones(3, requires_grad=True)
    grl.lambda_ = 0.25
    grl(x).sum().backward()
    assert x.grad.tolist() == [-0.25, -0.25, -0.25]


def test_dann_domain_loss_pushes_features_against_domain_head() -> None:
    torch.manual_seed(0)
    model = DANN(*mlp_parts(2, 2, (8,), 8)).double()
    x = torch.randn(5, 2, dtype=torch.float64)
    y = torch.tensor([0, 1, 0, 1, 1])

    def feature_grad(lam: float) -> torch.Tensor:
        model.zero_grad()
        model.grl.lambda_ = lam
        _, dom, _ = model(x)
        torch.nn.functional.cross_entropy(dom, y).backward()
        return model.features[0].weight.grad.clone(), model.domain_head[0].weight.grad.clone()

    f_rev, d_rev = feature_grad(0.5)
    f_id, d_id = feature_grad(-1.0)  # lambda -1 = plain backprop
    assert torch.allclose(f_rev, -0.5 * f_id)
    assert torch.allclose(d_rev, d_id)  # the domain head itself is trained normally


def test_import_adaptation_does_not_import_torch() -> None:
    code = "import sys, nnaudit.adaptation as a; assert 'torch' not in sys.modules; a.DannConfig; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)

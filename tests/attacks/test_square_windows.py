"""Square on a dense chain answers its queries from the window's inputs: same logits, same search.

:class:`nnaudit.attacks.square_dense.WindowQueries` replaces the first layer's
full product by the window's columns; these tests hold it to the plain forward
pass (hypothesis over windows and values) and the whole attack to the
mask-based search it replaces (same random draws, same points), and check the
attack end to end on an ONNX file, successes judged by onnxruntime.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import nnaudit.attacks as A
from nnaudit.attacks.base import as_network, torch_logits
from nnaudit.attacks.criteria import Criterion
from nnaudit.attacks.square import Square, SquareConfig
from nnaudit.attacks.square_dense import REFRESH, WindowQueries, windows_pay
from nnaudit.attacks.threat import Norm, ThreatModel
from nnaudit.networks.runtime import OnnxRuntimeModel
from nnaudit.networks.torch_chain import DenseChain
from onnx_build import random_mlp, save


def _chain(seed: int, sizes: tuple[int, ...]) -> DenseChain:
    g = torch.Generator().manual_seed(seed)
    steps: list = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        steps += [(torch.randn(n_in, n_out, generator=g) / n_in ** 0.5, 0.1 * torch.randn(n_out, generator=g)), None]
    return DenseChain(steps[:-1], (sizes[0],))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 20), rows=st.integers(1, 6))
def test_window_queries_equal_plain_passes(seed, k, rows):
    chain = _chain(seed, (64, 48, 32, 5))
    rng = np.random.default_rng(seed)
    best = torch.as_tensor(rng.uniform(0, 1, (rows, 64)), dtype=torch.float32)
    search = WindowQueries(chain, best.clone())
    for _ in range(REFRESH + 3):  # past one exact refresh of the kept pre-activations
        idx = torch.as_tensor(np.stack([rng.choice(64, k, replace=False) for _ in range(rows)]))
        values = torch.as_tensor(rng.uniform(0, 1, (rows, k)), dtype=torch.float32)
        logits, z1, old = search.query(idx, values)
        expected = chain(search.best.clone().scatter_(1, idx, values))
        torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)
        better = torch.as_tensor(rng.uniform(size=rows) < 0.5)
        search.accept(better, idx, values, old, z1)
        torch.testing.assert_close(search.z1, torch.addmm(chain.steps[0][1], search.best, chain.steps[0][0]),
                                   atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("eps, shape", [(0.05, (400,)), (0.15, (400,)), (0.1, (3, 12, 12))])
def test_windowed_search_finds_the_same_points_as_the_mask_search(eps, shape):
    """Flat rows searched as 20 x 20 images, and colour images (a window across the 3 channels)."""
    n = int(np.prod(shape))
    chain = _chain(3, (n, 180, 64, 10))  # 72,000 / 77,760 first-layer weights: the windowed route
    chain.input_shape = shape
    assert windows_pay(chain)
    x = torch.rand((30,) + shape, generator=torch.Generator().manual_seed(1))
    crit = Criterion(chain(x).argmax(1), None)
    threat = ThreatModel(norm=Norm.LINF, eps=eps)
    attack = Square(SquareConfig(queries=400))
    windowed = attack.run(chain, x, crit, threat, torch.Generator().manual_seed(0))
    plain = attack.run(lambda t: chain(t), x, crit, threat, torch.Generator().manual_seed(0))  # not a chain: masks
    assert torch.equal(windowed, plain)
    assert (windowed - x).abs().max() <= eps + 1e-6
    assert crit.is_adversarial(chain(windowed)).any()


def test_square_on_a_large_first_layer_is_confirmed_by_onnxruntime(tmp_path):
    path = save(random_mlp(np.random.default_rng(4), [784, 96, 32, 10]), tmp_path / "mlp.onnx")
    x = np.random.default_rng(2).uniform(0, 1, (12, 784)).astype(np.float32)
    net = as_network(path)
    y = OnnxRuntimeModel(path).predict(x)
    res = A.run_attack("square", net, x, y, eps=0.1, queries=300, threads=1)
    assert windows_pay(torch_logits(net, torch.device("cpu")))
    assert res.success.any() and not res.mismatch.any()
    assert (np.abs(res.x_adv - x).max(axis=1) <= 0.1 + 1e-6).all()

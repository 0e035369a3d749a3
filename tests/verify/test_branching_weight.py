"""The ReLU split score's weight of positive coefficients depends on the network (issue #27):
0.5 on fully connected nets (tuned on mnist_fc), 0 where ReLUs act on feature maps (oval21's
conv nets: 5x fewer sub-domains).  The choice only steers the search; verdicts stay sound."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import verify_nets
from nnaudit.errors import ConfigError
from nnaudit.networks import load
from nnaudit.networks.lower import lower
from nnaudit.verify.bab.branching import CONV_POSITIVE_WEIGHT, POSITIVE_WEIGHT, Brancher, positive_weight
from nnaudit.verify.bab.config import BabConfig


def test_the_weight_follows_the_architecture_unless_configured(tmp_path) -> None:
    conv, dense = lower(load(verify_nets.cnn(tmp_path, 0))), lower(load(verify_nets.mlp(tmp_path, 0, (4, 8, 8, 3))))
    assert positive_weight(conv, BabConfig()) == CONV_POSITIVE_WEIGHT == 0.0
    assert positive_weight(dense, BabConfig()) == POSITIVE_WEIGHT == 0.5
    assert positive_weight(conv, BabConfig(positive_weight=0.25)) == 0.25
    assert positive_weight(dense, BabConfig(positive_weight=1.0)) == 1.0
    with pytest.raises(ConfigError, match="positive_weight"):
        BabConfig(positive_weight=1.5)


def _pick(in_shape: tuple[int, ...], config: BabConfig) -> int:
    """The neuron picked among 8 unstable ReLUs of height 0.5: neuron 0 with coefficient +1,
    neuron 1 with -0.3, the others 0."""
    node = SimpleNamespace(kind="relu", in_shape=in_shape)
    brancher = Brancher(SimpleNamespace(nodes=(node,)), torch.zeros(1, 2), torch.zeros(1), config, True)
    coeff = torch.zeros(1, 1, 8, dtype=torch.float64)
    coeff[0, 0, 0], coeff[0, 0, 1] = 1.0, -0.3
    sb = SimpleNamespace(node_coeffs=[coeff])
    b = SimpleNamespace(pre_lo=[-torch.ones(1, 8, dtype=torch.float64)], pre_hi=[torch.ones(1, 8, dtype=torch.float64)])
    k, neuron = brancher._pick_relu(sb, b, np.array([0]), np.array([0]), [np.zeros((1, 8), np.int8)])
    assert k[0] == 0
    return int(neuron[0])


def test_the_weight_decides_between_a_positive_and_a_negative_coefficient() -> None:
    assert _pick((1, 8), BabConfig()) == 0                           # dense: 0.5 * 1 * 0.5 > 0.3 * 0.5
    assert _pick((1, 2, 2, 2), BabConfig()) == 1                     # feature map: the positive one counts 0
    assert _pick((1, 2, 2, 2), BabConfig(positive_weight=0.5)) == 0  # configured


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), eps=st.sampled_from([0.02, 0.08, 0.2]))
def test_conv_net_verdicts_do_not_depend_on_the_weight(seed: int, eps: float, tmp_path) -> None:
    """Both weights on a small conv net: the same verdict where both decide, "holds" never
    contradicted by 4,000 sampled points, "violated" confirmed by onnxruntime on the file."""
    from nnaudit.verify.engine import VerifyConfig, counterexample_ok, verify_property
    from nnaudit.verify.results import Verdict

    path, x, label, prop = verify_nets.cnn_case(tmp_path, seed, eps)
    verdicts = []
    for weight in (None, 0.5):
        config = VerifyConfig(timeout_s=6, bab=BabConfig(positive_weight=weight, workers=1))
        res = verify_property(load(path), prop, config=config)
        verdicts.append(res.verdict)
        if res.verdict is Verdict.VIOLATED:
            assert counterexample_ok(path, prop, res.counterexample.x)
    if all(v in (Verdict.HOLDS, Verdict.VIOLATED) for v in verdicts):
        assert verdicts[0] is verdicts[1]
    assert not (Verdict.HOLDS in verdicts and verify_nets.sampled_violation(path, x, eps, label, seed))

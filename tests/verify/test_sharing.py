"""ReLU and input splitting on several processes that share their sub-domains
(``verify/bab/sharing.py``): the same tree as one process -- every sub-domain bounded exactly once,
by one of the members -- the same verdicts, and the deadline kept."""

from __future__ import annotations

import time

import numpy as np
import pytest

import verify_nets
from nnaudit.networks import load
from nnaudit.networks.runtime import OnnxRuntimeModel
from nnaudit.verify.bab import BabConfig, run_bab
from nnaudit.verify.results import Verdict
from nnaudit.networks.lower import lower
from nnaudit.verify.spec import linear_property

# no Z3 and no falsification rounds: the tree of sub-domains depends on the property alone
TREE = BabConfig(input_split_dims=0, z3_max_unstable_relu=-1, z3_max_depth_relu=10**6, batch_relu=2,
                 refalsify_share=0.0, share_after=0.0)
# the same with input splitting (gradient scores, a parent's reused: they travel with the sub-domains)
INPUT_TREE = BabConfig(z3_max_unstable=-1, z3_max_depth=10**6, phase_max_unstable=0, batch=2, gradient_every=2,
                       refalsify_share=0.0, share_after=0.0)


def _case(tmp_path, seed: int, below: float):
    """A random 2-16-16-16-2 network and "y0 - y1 <= t" on [-0.5, 0.5]^2, with ``t`` ``below`` the
    grid's minimum of y0 - y1 (positive: it holds by that much)."""
    path = verify_nets.mlp(tmp_path, seed, (2, 16, 16, 16, 2))
    net = load(path)
    g = np.stack(np.meshgrid(np.linspace(-0.5, 0.5, 101), np.linspace(-0.5, 0.5, 101)), -1).reshape(-1, 2)
    t = float((net.evaluate(g) @ np.array([1.0, -1.0])).min() - below)
    prop = linear_property(np.full(2, -0.5), np.full(2, 0.5), [(np.array([[1.0, -1.0]]), np.array([-t]))])
    return path, net, prop.cases[0]


def _run(path, net, case, config: BabConfig, seconds: float = 60.0):
    box, region = case
    return run_bab(lower(net), net, OnnxRuntimeModel(path), box, region, config, time.monotonic() + seconds)


@pytest.mark.parametrize("tree", [TREE, INPUT_TREE], ids=["relu-split", "input-split"])
@pytest.mark.parametrize("seed", [0, 3])
def test_the_members_bound_the_same_tree_as_one_process(tmp_path, seed: int, tree: BabConfig) -> None:
    from dataclasses import replace

    path, net, case = _case(tmp_path, seed, 0.02)
    alone = _run(path, net, case, replace(tree, workers=1))
    shared = _run(path, net, case, replace(tree, workers=2))
    assert alone.status is shared.status is Verdict.HOLDS
    assert alone.shared == [] and len(shared.shared) == 2 and min(shared.shared) > 0
    # one sub-domain lost would leave a hole in the proof; one bounded twice shows a copy was made
    assert shared.subdomains == alone.subdomains


def test_a_violation_found_by_a_member_ends_the_search(tmp_path) -> None:
    from dataclasses import replace

    path, net, case = _case(tmp_path, 0, -0.3)  # violated well inside the box
    out = _run(path, net, case, replace(TREE, workers=2, z3_max_unstable_relu=1, refalsify_share=0.1))
    assert out.status is Verdict.VIOLATED and out.counterexample is not None
    box, region = case
    y = net.evaluate(out.counterexample.x[None]).ravel()
    assert np.all(box.lower <= out.counterexample.x) and np.all(out.counterexample.x <= box.upper)
    assert y[0] - y[1] <= -region.disjuncts[0][1][0] + 1e-6


def test_the_shared_search_keeps_the_deadline(tmp_path) -> None:
    from dataclasses import replace

    path, net, case = _case(tmp_path, 4, 0.0005)  # holds by a hair: far more than 2 s of search
    started = time.monotonic()
    out = _run(path, net, case, replace(TREE, workers=2), seconds=2.0)
    assert out.status is Verdict.TIMEOUT
    assert time.monotonic() - started < 4.0

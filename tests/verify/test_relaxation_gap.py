"""The relaxation-gap benchmark's LP and MILP encodings (``bench/relaxation_gap.py``), against a
brute-force grid on tiny networks: the MILP is exact (its bounds meet the grid's extremes), the
LP of the triangle relaxation contains it, and alpha-CROWN's bounds contain the LP's (they bound
the same relaxation, so a CROWN bound inside the LP's would be unsound)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import verify_nets
from nnaudit.networks import load
from nnaudit.networks.lower import lower

_SPEC = importlib.util.spec_from_file_location(
    "relaxation_gap", Path(__file__).resolve().parents[2] / "bench" / "relaxation_gap.py")
relaxation_gap = sys.modules["relaxation_gap"] = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(relaxation_gap)


def _pre_activations(low, x: np.ndarray, k: int) -> np.ndarray:
    """Node ``k``'s pre-activations at the points ``x`` (float64)."""
    sources = [x]
    for node in low.nodes[:k]:
        sources.append(node.apply(node.pre.evaluate(sources)))
    return low.nodes[k].pre.evaluate(sources)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), k=st.sampled_from([1, 2]))
def test_milp_is_exact_and_the_relaxations_contain_it(tmp_path, seed: int, k: int) -> None:
    low = lower(load(verify_nets.mlp(tmp_path, seed, (2, 8, 8, 8, 2))))
    rng = np.random.default_rng(seed)
    x_lo = rng.uniform(-1, 0.5, 2)
    x_hi = x_lo + rng.uniform(0.2, 1.0, 2)
    root = relaxation_gap.alpha_root(low, x_lo, x_hi)
    pre_lo = [t[0].numpy() for t in root.pre_lo]
    pre_hi = [t[0].numpy() for t in root.pre_hi]
    lp = relaxation_gap.encode(low, k, x_lo, x_hi, pre_lo, pre_hi, exact=False)
    exact = relaxation_gap.encode(low, k, x_lo, x_hi, pre_lo, pre_hi, exact=True)
    axes = [np.linspace(x_lo[i], x_hi[i], 201) for i in range(2)]
    grid = _pre_activations(low, np.stack(np.meshgrid(*axes), -1).reshape(-1, 2), k)
    # a piecewise-linear function's extremes lie on region vertices, which the grid may miss by a step:
    step = float(np.max(np.abs(np.diff(grid.reshape(201, 201, -1), axis=1)))) + 1e-9
    for i in range(low.nodes[k].pre.size):
        lp_lo, lp_hi, _ = relaxation_gap.solve(lp, *lp.objective(low, k, i), 10.0)
        mi_lo, mi_hi, _ = relaxation_gap.solve(exact, *exact.objective(low, k, i), 10.0)
        g_lo, g_hi = grid[:, i].min(), grid[:, i].max()
        assert pre_lo[k][i] <= lp_lo + 1e-6 and lp_hi <= pre_hi[k][i] + 1e-6, "alpha-CROWN inside the LP"
        assert lp_lo <= mi_lo + 1e-6 and mi_hi <= lp_hi + 1e-6, "the LP relaxation inside the MILP"
        assert mi_lo <= g_lo + 1e-6 and g_hi <= mi_hi + 1e-6, "the MILP misses grid points"
        assert g_lo - step <= mi_lo and mi_hi <= g_hi + step, "the MILP is looser than exact"


"""Bounding only each sub-domain's open rows (verify/rowpack.py): an open row gets the bound,
the input coefficients and the warm start that bounding every row gives it (rows are optimised
independently), a closed row comes back refuted (+inf) with nothing to warm-start from, and the
batch splits into two calls only where that saves work."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnaudit.networks import load
from nnaudit.verify.bounds import compute_bounds, spec_lower
from nnaudit.networks.lower import lower
from nnaudit.verify.rowpack import CALL_COST, _groups, spec_lower_open

import verify_nets

_S = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _splits(low, rng, anchor: np.ndarray) -> list[torch.Tensor]:
    """Two random ReLU phases per node that ``anchor`` satisfies (no sub-domain is empty)."""
    out = []
    for node, pre in zip(low.nodes, low.pre_activations(anchor)):
        s = np.zeros((len(anchor), node.pre.size), np.int8)
        for i in range(len(anchor)):
            pick = rng.choice(node.pre.size, size=2, replace=False)
            s[i, pick] = np.where(pre[i, pick] >= 0, 1, -1)
        out.append(torch.as_tensor(s))
    return out


def _problem(tmp_path, seed: int, n_dom: int, all_open: int | None = None):  # noqa: ANN001, ANN202
    """A small net, ``n_dom`` random boxes with ReLU splits, 5 property rows, which rows are open
    (every sub-domain has one; sub-domain ``all_open`` has them all) and the boxes' bounds:
    ``(low, splits, c, d, open_rows, bounds)``."""
    rng = np.random.default_rng(seed)
    low = lower(load(verify_nets.mlp(tmp_path, seed % 7, (3, 8, 8, 4))))
    r = 5
    lo = rng.uniform(-1, 1, (n_dom, 3))
    hi = lo + rng.uniform(0.01, 1.0, (n_dom, 3))
    splits = _splits(low, rng, (lo + hi) / 2)
    c, d = torch.as_tensor(rng.normal(size=(r, 4))), torch.as_tensor(rng.normal(size=r))
    open_rows = rng.random((n_dom, r)) < 0.4
    open_rows[np.arange(n_dom), rng.integers(0, r, n_dom)] = True
    if all_open is not None:
        open_rows[all_open] = True  # the batch then splits into groups
    with torch.no_grad():
        b = compute_bounds(low, torch.as_tensor(lo), torch.as_tensor(hi), splits=splits)
    return low, splits, c, d, open_rows, b

@_S
@given(seed=st.integers(0, 10_000), steps=st.sampled_from([0, 4]), warm=st.booleans(), split=st.booleans())
def test_open_rows_get_what_bounding_every_row_gives_them(seed: int, steps: int, warm: bool, split: bool,
                                                         tmp_path, monkeypatch) -> None:
    from nnaudit.verify import alpha, rowpack

    monkeypatch.setattr(rowpack, "CALL_COST", 0 if split else 10 ** 6)  # two groups, or one
    # every sub-domain optimised to the last step: which ones leave early depends on the rows
    # bounded (see the test below for what holds with them leaving)
    monkeypatch.setattr(alpha, "DROP_SHARE", 2.0)
    low, splits, c, d, open_rows, b = _problem(tmp_path, seed, 9, all_open=0)
    kw = dict(alpha_steps=steps, record=True, splits=splits)
    if warm and steps:  # a warm start of every row, as a parent's state gives it
        with torch.enable_grad():
            kw["init"] = spec_lower(low, b, c, d, **kw).state
    with torch.enable_grad():
        every = spec_lower(low, b, c, d, **kw)
        some = spec_lower_open(low, b, c, d, open_rows, **kw)
    assert len(rowpack._groups(open_rows.sum(axis=1))) == (2 if split else 1)
    m = torch.as_tensor(open_rows)
    assert torch.allclose(some.lower[m], every.lower[m], atol=1e-9)
    assert torch.all(torch.isinf(some.lower[~m]) & (some.lower[~m] > 0))
    assert torch.allclose(some.a_in[m], every.a_in[m], atol=1e-9)
    assert torch.allclose(some.lin_lower[m], every.lin_lower[m], atol=1e-9)
    for mine, theirs in zip(some.node_coeffs, every.node_coeffs):
        assert (mine is None) == (theirs is None)
        if mine is not None:
            assert torch.allclose(mine[m], theirs[m], atol=1e-9)
    if steps:
        for g, group in every.state.items():
            for k, v in group.items():
                assert torch.allclose(some.state[g][k][m], v[m], atol=1e-5)
                assert torch.isnan(some.state[g][k][~m]).all()


def test_the_batch_splits_where_a_second_call_pays() -> None:
    counts = np.array([1] * 30 + [9] * 18)
    groups = _groups(counts)
    assert len(groups) == 2 and sorted(np.concatenate(groups).tolist()) == list(range(48))
    assert set(counts[groups[0]].tolist()) == {1} and set(counts[groups[1]].tolist()) == {9}
    assert len(_groups(np.array([9] * 47 + [8]))) == 1  # one row less for one sub-domain: not worth a call
    few = np.array([1] * (CALL_COST // 8) + [9])
    assert len(_groups(few)) == 1  # the saving (8 rows per sub-domain) does not pay for a second call


@_S
@given(seed=st.integers(0, 10_000), split=st.booleans())
def test_open_rows_are_proved_as_bounding_every_row_proves_them(seed: int, split: bool, tmp_path, monkeypatch) -> None:
    """With proved sub-domains leaving the optimisation (the default), a sub-domain leaves once its
    bounded rows are proved, so bounding only the open rows may stop a proved row's bound earlier:
    the same rows are proved, and the rows left unproved have the same bounds."""
    from nnaudit.verify import rowpack

    monkeypatch.setattr(rowpack, "CALL_COST", 0 if split else 10 ** 6)
    low, splits, c, d, open_rows, b = _problem(tmp_path, seed, 24)
    with torch.enable_grad():
        every = spec_lower(low, b, c, d, alpha_steps=8, splits=splits).lower
        some = spec_lower_open(low, b, c, d, open_rows, alpha_steps=8, splits=splits).lower
    m = torch.as_tensor(open_rows)
    proved = every[m] > 0
    assert torch.equal(some[m] > 0, proved)
    assert torch.allclose(some[m][~proved], every[m][~proved], atol=1e-9)

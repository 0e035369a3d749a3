"""The relu-split route's search over a region's hull (the complete verifier's search, with
:data:`~nnaudit.verify.regions.relu_bab.ALPHA_STEPS` iterations per batch and its probe evaluating
each distinct candidate once): every SAFE holds for every member of the family (exhaustive
enumeration), every counterexample is a member that onnxruntime confirms, and the de-duplicated
probe confirms what evaluating every candidate would."""

from __future__ import annotations

import time

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnaudit.verify.falsify import confirm
from nnaudit.verify.regions.relu_bab import ALPHA_STEPS, ReluSplit
from test_region_hard import brute_members as members
from test_region_relu_split import _drawn_family, margins


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["conv", "mlp"]), seed=st.integers(0, 3), data=st.data(),
       step=st.sampled_from([0.05, 0.15, 0.3]), steps=st.integers(1, 2))
def test_the_hull_search_agrees_with_enumeration(tmp_path_factory, kind: str, seed: int,  # noqa: ANN001
                                                 data, step: float, steps: int) -> None:
    net, ort, rng, ctx, pixels, manip, fam = _drawn_family(tmp_path_factory, kind, seed, data, step, steps)
    hull = ReluSplit(ctx, fam, time.perf_counter() + 20)
    assert hull.search.cfg.relu_alpha_steps == ALPHA_STEPS
    res = hull.run()
    assert res is not None
    xs = members(ctx.x0, pixels, manip)
    if res.safe:
        assert margins(ctx, xs).min() > 0, "SAFE but a member changes the class"
    if res.counterexample is not None:
        cex = res.counterexample
        assert np.abs(xs.astype(np.float32) - cex.x).max(axis=1).min() == 0.0, "not a member of the family"
        assert ort.predict(cex.x.astype(np.float32).reshape((1,) + tuple(net.input_shape)))[0] == cex.class_after
        assert cex.class_after != ctx.label


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["conv", "mlp"]), seed=st.integers(0, 3), data=st.data(),
       step=st.sampled_from([0.15, 0.3, 0.5]), steps=st.integers(1, 2), copies=st.integers(1, 6))
def test_the_deduplicated_probe_finds_what_every_candidate_finds(tmp_path_factory, kind: str, seed: int,  # noqa: ANN001
                                                                 data, step: float, steps: int, copies: int) -> None:
    """On a batch of sub-domains sharing the hull (as every batch of the relu split does), the
    probe confirms a counterexample exactly when evaluating all candidates, duplicates included,
    and confirming the first 16 hits does."""
    from nnaudit.verify.bab.queue import Chunk
    from nnaudit.verify.disjunct_rows import worst_rows

    net, ort, rng, ctx, pixels, manip, fam = _drawn_family(tmp_path_factory, kind, seed, data, step, steps)
    search = ReluSplit(ctx, fam, time.perf_counter() + 20).search
    box = search.box
    chunk = Chunk(np.repeat(box.lower[None], copies, 0), np.repeat(box.upper[None], copies, 0),
                  np.ones((copies, search.n_disj), bool), np.arange(copies), search._no_splits(copies))
    splits = None if chunk.splits is None else [torch.as_tensor(s) for s in chunk.splits]
    _, sb, lbs = search._bound(chunk, splits)
    rows = worst_rows(lbs, chunk.open, search.owner.numpy())
    a_in, idx = sb.a_in.detach().numpy(), np.arange(copies)
    a = a_in[idx, rows[idx]]
    every = np.concatenate([np.where(a > 0, chunk.lo, chunk.hi), (chunk.lo + chunk.hi) / 2])  # the old probe's
    hits = every[search.region.margin(search.low.evaluate(every)) <= 1e-6]
    ref = None if len(hits) == 0 else confirm(search.ort, box, search.region, hits[:16], tuple(search.network.input_shape))
    hit = search._probe(chunk, idx, a_in, rows)
    assert hit == (ref is not None)
    if hit:
        np.testing.assert_array_equal(np.asarray(search.out.counterexample.x).ravel(), np.asarray(ref.x).ravel())

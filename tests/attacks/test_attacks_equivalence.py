"""The fast paths give the textbook answers.

PGD's early stop, batch compaction, one-clamp projection and skipped last
forward pass must not change what it returns: it is compared with a plain
PGD loop written from the paper.  CW must keep the smallest adversarial point
of every iterate, including the one its last Adam step moves to.  The L-inf
box and the threat-model fast path must stay exact in float64.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import nnaudit.attacks as A
from nnaudit.attacks import cuda_graphs, geometry
from nnaudit.attacks.base import torch_logits
from nnaudit.attacks.threat import ThreatModel, enforce, inside


def _textbook_pgd(net, x: np.ndarray, y: np.ndarray, eps: float, steps: int, alpha: float,
                  early_stop: bool) -> np.ndarray:
    """Madry et al.'s loop from the clean input, on the whole batch every step, keeping
    per sample the first (early stop) or lowest-margin adversarial iterate, else the last;
    inputs the network already gets wrong are returned as they are."""
    model = torch_logits(net, torch.device("cpu"))
    x0, labels = torch.as_tensor(x), torch.as_tensor(y)
    adv, out = x0.clone(), x0.clone()
    best = torch.full((len(x),), float("inf"))
    done = torch.zeros(len(x), dtype=torch.bool)
    for i in range(steps + 1):
        adv.requires_grad_(True)
        logits = model(adv)
        with torch.no_grad():
            others = logits.scatter(1, labels[:, None], float("-inf")).amax(1)
            margin = logits.gather(1, labels[:, None])[:, 0] - others
            broken = logits.argmax(1) != labels
            take = ~done & (margin < best) & (broken | (i == steps))
            out[take], best[take] = adv[take], margin[take]
            done |= broken & (early_stop or i == 0)  # inputs misclassified from the start are left as they are
        if i == steps:
            return out.numpy()
        loss = torch.nn.functional.cross_entropy(logits, labels, reduction="sum")
        (grad,) = torch.autograd.grad(loss, adv)
        with torch.no_grad():
            delta = (adv + alpha * grad.sign() - x0).clamp(-eps, eps)
            adv = (x0 + delta).clamp(0.0, 1.0)


@pytest.mark.parametrize("early_stop, masked", [(True, False), (True, True), (False, None)])
@pytest.mark.parametrize("eps, steps", [(0.05, 10), (0.1, 25)])
def test_pgd_matches_the_textbook_loop(digits_small, early_stop, masked, eps, steps):
    net, x, y = digits_small
    alpha = 2.5 * eps / steps
    res = A.pgd(net, x, y, eps=eps, steps=steps, step_size=alpha, restarts=1, early_stop=early_stop, masked=masked,
                threads=1)
    ref = _textbook_pgd(net, x, y, eps, steps, alpha, early_stop)
    # the textbook projection rounds x0 + delta in float32; nnaudit clamps to the exact box: ulp-level differences
    np.testing.assert_allclose(res.x_adv, ref, atol=1e-6)
    assert res.model_success.sum() > 0 and not res.model_success.all()


@pytest.mark.parametrize("norm, eps", [("linf", 0.08), ("l2", 0.35)])
@pytest.mark.parametrize("budget", [None, 1.0])
@pytest.mark.parametrize("graph", [False, True])
def test_masked_early_stop_is_the_compacting_one(digits_small, norm, eps, budget, graph):
    """The GPU form of PGD's early stop (done rows frozen in the batch, compacted every
    few steps, or never with ``graph``: the whole padded batch in every restart, the
    loop a CUDA graph replays, here run eagerly) returns what the CPU form (done rows
    dropped at once) returns, restarts, random starts and the gradient budget included
    (restarts in turn: the masked form does not overlap them)."""
    net, x, y = digits_small
    assert cuda_graphs.padded_size(len(x)) > len(x), "a batch that the whole-batch form pads"
    kw = dict(eps=eps, norm=norm, steps=20, restarts=3, budget=budget, overlap=False, seed=5, threads=1,
              batch_size=len(x))
    masked = A.pgd(net, x, y, masked=True, graph=graph, **kw)
    dropped = A.pgd(net, x, y, masked=False, **kw)
    np.testing.assert_allclose(masked.x_adv, dropped.x_adv, atol=1e-6)
    np.testing.assert_array_equal(masked.success, dropped.success)
    assert 0 < masked.success.sum() < len(x)


def test_pgd_skips_the_landing_pass_of_a_restart_nothing_is_compared_with(digits_small, monkeypatch):
    """A restart's final iterates get a forward pass only to be compared with another restart's:
    under a budget that pays for one restart the only extra pass is the base class's check of
    the result; with two restarts each landing has its pass.  The results are the masked form's,
    which always takes that pass."""
    from nnaudit.networks.torch_chain import DenseChain

    net, x, y = digits_small
    calls = []
    call = DenseChain.__call__
    monkeypatch.setattr(DenseChain, "__call__", lambda self, t: (calls.append(len(t)), call(self, t))[1])
    kw = dict(eps=0.05, steps=10, restarts=2, seed=2, threads=1, batch_size=len(x))
    one = A.pgd(net, x, y, budget=1.0, **kw)
    assert len(calls) == 1  # the base class's check of what the attack returns
    calls.clear()
    two = A.pgd(net, x, y, **kw)
    assert len(calls) == 3  # both restarts' landings, then the check
    masked = A.pgd(net, x, y, budget=1.0, masked=True, graph=False, overlap=False, **kw)
    np.testing.assert_array_equal(one.x_adv, masked.x_adv)
    assert two.success.sum() >= one.success.sum()


def test_pgd_batch_size_does_not_change_the_result(digits_small):
    net, x, y = digits_small
    a = A.pgd(net, x, y, eps=0.1, steps=10, seed=1, batch_size=5, threads=1)
    b = A.pgd(net, x, y, eps=0.1, steps=10, seed=1, batch_size=64, threads=1)
    np.testing.assert_array_equal(a.success, b.success)
    # the second restart's random start depends on which rows a batch sends to it; the clean start does not
    first = a.success & b.success
    assert first.sum() > 0


def test_pgd_returns_already_misclassified_inputs_unchanged(digits_small):
    net, x, y = digits_small
    wrong = (y + 1) % 10  # every sample "misclassified" from the start
    res = A.pgd(net, x, wrong, eps=0.1, steps=5, threads=1)
    predicted_wrong = res.logits_clean.argmax(1) != wrong
    np.testing.assert_array_equal(res.x_adv[predicted_wrong], x[predicted_wrong])


def test_cw_keeps_the_best_point_of_every_step(digits_small):
    """Runs of 5, 6, ..., steps follow the same Adam trajectory, so a longer run must keep
    every success of a shorter one, no larger (a point found at any step is never lost)."""
    net, x, y = digits_small
    runs = [A.cw(net, x, y, eps=np.inf, norm="l2", binary_search_steps=1, initial_const=1.0, lr=0.05,
                 steps=s, abort_early=False, threads=1) for s in (5, 6, 12, 30)]
    for short, long in zip(runs, runs[1:]):
        assert (long.success >= short.success).all()
        both = short.success
        assert (long.norms["l2"][both] <= short.norms["l2"][both] + 1e-6).all()
    assert runs[-1].success.sum() > runs[0].success.sum()


def test_cuda_graph_batches_are_padded_a_little():
    """A power of two up to 64 rows, then a multiple of 64: at most 63 rows of waste, and a data
    set's last batch shares the full batches' graph when it rounds to the same size."""
    sizes = {n: cuda_graphs.padded_size(n) for n in (1, 2, 3, 24, 64, 65, 120, 128, 129, 450, 512)}
    assert sizes == {1: 1, 2: 2, 3: 4, 24: 32, 64: 64, 65: 128, 120: 128, 128: 128, 129: 192, 450: 512, 512: 512}
    assert cuda_graphs.padding(128, torch.device("cpu")) is None
    assert cuda_graphs.padding(3, torch.device("cpu")).tolist() == [0, 1, 2, 0]


@pytest.mark.parametrize("opts", [
    dict(binary_search_steps=1, initial_const=10.0, steps=100, lr=0.05),  # aborts after 41 steps
    dict(binary_search_steps=3, steps=40, lr=0.01, kappa=0.5, abort_early=False),
    dict(binary_search_steps=2, steps=30, lr=0.05, initial_const=1.0, targeted=True),
])
def test_cw_whole_batch_round_is_the_eager_one(digits_small, opts):
    """CW's round as a CUDA graph replays it (Adam written out, the early abort a flag that
    freezes the round, the batch padded; here run eagerly) ends where the
    eager round with torch's Adam ends: same successes, points equal up to float rounding."""
    net, x, y = digits_small
    assert cuda_graphs.padded_size(len(x)) > len(x), "a batch that the whole-batch form pads"
    opts = dict(opts)
    target = (y + 1) % 10 if opts.pop("targeted", False) else None
    runs = [A.cw(net, x, y, eps=np.inf, norm="l2", target=target, graph=graph, threads=1, **opts) for graph in (False, True)]
    np.testing.assert_array_equal(runs[0].success, runs[1].success)
    np.testing.assert_allclose(runs[0].x_adv, runs[1].x_adv, atol=1e-5)
    assert 0 < runs[0].success.sum()


def test_cw_whole_batch_round_aborts_where_the_eager_one_breaks(digits_small, monkeypatch):
    """The early abort is reached (the eager loop breaks before its last step) and the whole-batch
    round's flag stops Adam at the same step."""
    from nnaudit.attacks import carlini_wagner

    net, x, y = digits_small
    taken, kept = [], []
    adam, keep = carlini_wagner._adam, carlini_wagner.CW._keep
    monkeypatch.setattr(carlini_wagner, "_adam", lambda *a: (taken.append(bool(a[-1])), adam(*a))[1])
    monkeypatch.setattr(carlini_wagner.CW, "_keep", lambda *a: (kept.append(1), keep(*a))[1])
    kw = dict(eps=np.inf, norm="l2", binary_search_steps=1, initial_const=10.0, steps=100, lr=0.05, threads=1)
    whole = A.cw(net, x, y, graph=True, **kw)
    eager = A.cw(net, x, y, graph=False, **kw)
    assert 0 < sum(taken) < 100  # some steps taken, then the abort froze the rest
    assert len(kept) - 1 == sum(taken)  # the eager round checks every step it takes, and the last point
    np.testing.assert_array_equal(whole.success, eager.success)
    np.testing.assert_allclose(whole.x_adv, eager.x_adv, atol=1e-5)


def test_cw_checks_the_point_of_its_last_adam_step(linear2):
    """With one step, the only new point is the one the single Adam update moves to."""
    path, w, b = linear2
    rng = np.random.default_rng(3)
    x = rng.uniform(0.45, 0.55, (64, w.shape[1])).astype(np.float32)  # close to the boundary through the centre
    y = (x @ w.T.astype(np.float64) + b).argmax(1)
    res = A.cw(path, x, y, eps=np.inf, norm="l2", binary_search_steps=1, initial_const=10.0, lr=0.1, steps=1,
               threads=1)
    assert res.success.any()


@pytest.mark.parametrize("eps, low, high", [(0.05, 0.0, 1.0), (0.1, -0.3, 0.7), (1e-3, 0.1, 0.9)])
def test_linf_box_is_exact_in_float64(eps, low, high):
    gen = np.random.default_rng(0)
    x = gen.uniform(low, high, (50, 7)).astype(np.float32)
    x[:5] = np.float32(low) if np.float32(low) >= low else np.nextafter(np.float32(low), np.float32(1))
    threat = ThreatModel(eps=eps, low=low, high=high)
    lo, hi = (t.numpy() for t in geometry.box(torch.as_tensor(x), threat))
    x64 = x.astype(np.float64)
    want_lo, want_hi = np.maximum(x64 - eps, low), np.minimum(x64 + eps, high)
    assert (lo.astype(np.float64) >= want_lo).all() and (hi.astype(np.float64) <= want_hi).all()
    # and the nearest such float32 numbers: one step outwards leaves the box
    assert (np.nextafter(lo, np.float32(-np.inf)).astype(np.float64) < want_lo).all()
    assert (np.nextafter(hi, np.float32(np.inf)).astype(np.float64) > want_hi).all()
    assert inside(x, lo, threat).all() and inside(x, hi, threat).all()


def test_enforce_returns_points_already_inside_unchanged():
    gen = np.random.default_rng(1)
    x = gen.uniform(0, 1, (20, 6)).astype(np.float32)
    threat = ThreatModel(eps=0.1)
    adv = np.clip(x + gen.uniform(-0.1, 0.1, x.shape), 0, 1).astype(np.float32)
    adv = np.clip(adv, np.nextafter((x - 0.1).astype(np.float32), np.float32(1)), None)
    ok = inside(x, adv, threat)
    assert ok.all()
    np.testing.assert_array_equal(enforce(x, adv, threat), adv)
    outside = adv.copy()
    outside[0, 0] = x[0, 0] + np.float32(0.2)
    fixed = enforce(x, outside, threat)
    assert inside(x, fixed, threat).all() and fixed[0, 0] != outside[0, 0]


def _counted_pgd(net, x, y, passes=None, **options):
    """``A.pgd`` that also returns the gradients it computed (rows of inputs that required grad);
    ``passes`` (a list), when given, gets the rows of each forward pass with gradients."""
    from nnaudit.attacks.base import torch_logits

    inner, used = torch_logits(net, torch.device("cpu")), [] if passes is None else passes

    def counting(t):
        if t.requires_grad:
            used.append(len(t))
        return inner(t)

    key = "attack-logits:cpu"
    net._torch_cache[key] = counting
    try:
        res = A.pgd(net, x, y, threads=1, **options)
    finally:
        net._torch_cache[key] = inner
    return res, sum(used)


@pytest.mark.parametrize("eps", [0.03, 0.1, 0.3])
def test_pgd_budget_caps_the_gradients_and_changes_nothing_it_can_pay_for(digits_small, eps):
    net, x, y = digits_small
    steps = 10
    free, used_free = _counted_pgd(net, x, y, eps=eps, steps=steps, restarts=2)
    capped, used = _counted_pgd(net, x, y, eps=eps, steps=steps, restarts=2, budget=1.0, overlap=False)
    assert used <= steps * len(x)
    if used_free <= steps * len(x):  # the second restart fits the budget: the very same attack
        np.testing.assert_array_equal(capped.x_adv, free.x_adv)
    else:  # it does not: only the first restart runs, exactly as with restarts=1
        single, _ = _counted_pgd(net, x, y, eps=eps, steps=steps, restarts=1)
        np.testing.assert_array_equal(capped.x_adv, single.x_adv)
        assert capped.success.sum() <= free.success.sum()


@pytest.fixture(scope="module")
def digits_more():
    """The first 160 digits of the test split and the zoo's digits-ffn network."""
    from nnaudit.networks import datasets, zoo

    x, y = datasets.digits("test")
    return zoo.load("digits-ffn"), x[:160], y[:160]


@pytest.mark.parametrize("norm, eps, restarts, schedule, budget, more", [
    ("linf", 0.1, 2, "constant", 1.0, {}),
    ("linf", 0.07, 3, "step", 2.0, {}),
    ("l2", 0.6, 2, "step", 1.0, {}),
    ("linf", 0.1, 2, "constant", 2.0, {"early_stop": False}),
    ("linf", 0.2, 2, "constant", 1.0, {"targeted": True}),
])
def test_overlapping_the_last_restart_is_cheaper_within_the_budget_and_never_weaker(digits_more, norm, eps, restarts,
                                                                                     schedule, budget, more):
    """Under a budget, the last restart starts beside the one before once the budget pays for
    both: fewer forward-backward passes, never more gradients than the budget, and every sample
    the restarts-in-turn form breaks (on the torch model) is broken too (same seed: the same
    start per sample, and the last restart runs for a superset of samples)."""
    net, x, y = digits_more
    steps = 10
    more = dict(more)
    if more.pop("targeted", False):
        more["target"] = (y + 3) % 10
    kw = dict(eps=eps, norm=norm, steps=steps, restarts=restarts, schedule=schedule, budget=budget, seed=3,
              batch_size=len(x), **more)
    turn_passes, side_passes = [], []
    in_turn, used_in_turn = _counted_pgd(net, x, y, passes=turn_passes, overlap=False, **kw)
    side, used_side = _counted_pgd(net, x, y, passes=side_passes, overlap=True, **kw)
    assert used_in_turn <= budget * steps * len(x) and used_side <= budget * steps * len(x)
    assert len(side_passes) < len(turn_passes), "the last restart never started early"
    assert (side.model_success >= in_turn.model_success).all()
    assert side.success.sum() >= in_turn.success.sum()
    assert np.all(side.norms[norm][side.success] <= eps * (1 + 1e-6))


def test_a_budget_for_every_restart_runs_them_side_by_side_from_the_start(digits_more):
    net, x, y = digits_more
    passes = []
    _, used = _counted_pgd(net, x, y, passes=passes, eps=0.05, steps=8, restarts=2, budget=2.0, seed=1,
                           batch_size=len(x))
    assert passes[0] == 2 * len(x) and len(passes) <= 8 and used <= 2 * 8 * len(x)


def test_cross_entropy_seed_is_its_autograd_gradient():
    from nnaudit.attacks.criteria import Criterion

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(37, 10, generator=gen) * 5
    labels = torch.randint(0, 10, (37,), generator=gen)
    for crit in (Criterion(labels), Criterion(labels, (labels + 3) % 10)):
        z = logits.clone().requires_grad_(True)
        (want,) = torch.autograd.grad(torch.nn.functional.cross_entropy(z, crit.goal(), reduction="sum"), z)
        torch.testing.assert_close(crit.ce_gradient(logits), want, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("case", ["inside", "outside", "nan", "l2", "unbounded"])
def test_enforce_with_norms_is_enforce_then_its_norms(case):
    from nnaudit.attacks.threat import enforce_with_norms, perturbation_norms

    gen = np.random.default_rng(2)
    x = gen.uniform(0, 1, (30, 8)).astype(np.float32)
    threat = ThreatModel(norm="l2" if case == "l2" else "linf", eps=float("inf") if case == "unbounded" else 0.1)
    adv = np.clip(x + gen.uniform(-0.09, 0.09, x.shape), 0, 1).astype(np.float32)
    if case in ("outside", "l2", "unbounded"):
        adv[3] = np.clip(x[3] + 0.5, 0, 1.2)
    if case == "nan":
        adv[4, 2] = np.nan
    out, norms = enforce_with_norms(x, adv, threat)
    want = enforce(x, adv, threat)
    np.testing.assert_array_equal(out, want)
    for key, value in perturbation_norms(x, want).items():
        np.testing.assert_array_equal(norms[key], value)
    assert inside(x, out, threat).all()
    assert (out is adv) == (case == "inside")

"""``nnaudit.testing.perturbations``: every draw lies inside the threat model
(norm ball and value range, checked in float64 on the returned array),
arguments are validated first, and failures shrink towards the input."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import nnaudit.testing
from nnaudit.errors import ConfigError
from nnaudit.testing import perturbations

SHAPES = st.sampled_from([(1,), (5,), (2, 3), (1, 4, 4)])


@st.composite
def threat_cases(draw: st.DrawFn) -> tuple[np.ndarray, float, str, tuple[float, float]]:
    lo, hi = draw(st.sampled_from([(0.0, 1.0), (-1.0, 1.0), (-3.0, 5.0)]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    x = draw(hnp.arrays(dtype, draws_shape := draw(SHAPES), elements=st.floats(lo, hi, width=32)))
    norm = draw(st.sampled_from(["linf", "l2", "l0"]))
    if norm == "l0":
        eps = float(draw(st.integers(0, int(np.prod(draws_shape)))))
    else:
        eps = draw(st.floats(0.0, 2.0))
    return x, eps, norm, (lo, hi)


@settings(max_examples=60, deadline=None)
@given(st.data(), threat_cases())
def test_draws_stay_inside_the_threat_model(data: st.DataObject, case: tuple) -> None:
    x, eps, norm, bounds = case
    x_adv = data.draw(perturbations(x, eps=eps, norm=norm, bounds=bounds))
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    delta = x_adv.astype(np.float64) - x.astype(np.float64)
    assert np.all(x_adv >= bounds[0]) and np.all(x_adv <= bounds[1])
    if norm == "linf":
        assert np.abs(delta).max() <= eps
    elif norm == "l2":
        assert np.linalg.norm(delta) <= eps
    else:
        assert np.count_nonzero(delta) <= eps


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_the_whole_ball_is_reachable_and_failures_shrink_to_x(norm: str) -> None:
    x = np.full(6, 0.5, dtype=np.float32)
    far = find(perturbations(x, eps=0.2, norm=norm), lambda a: float(np.linalg.norm(a - x)) > 0.15)
    assert float(np.linalg.norm(far.astype(np.float64) - x)) > 0.15
    same = find(perturbations(x, eps=0.2, norm=norm), lambda a: True)
    np.testing.assert_array_equal(same, x)  # the simplest draw is x itself


def test_l0_changes_any_value_anywhere_in_range() -> None:
    x = np.zeros(10)
    # a rare event for random draws (one run in a CI clone missed it in the default 1,000 tries):
    # derandomised, with room, so the test is about the strategy's reach, not about luck
    hit = find(perturbations(x, eps=2, norm="l0"), lambda a: a[7] == 1.0 and np.count_nonzero(a) == 2,
               settings=settings(max_examples=5000, derandomize=True, database=None))
    assert hit[7] == 1.0 and np.count_nonzero(hit) == 2


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"eps": -0.1}, "eps: expected a finite number >= 0"),
    ({"eps": float("nan")}, "eps: expected a finite number >= 0"),
    ({"eps": True}, "eps: expected a finite number >= 0"),
    ({"eps": 1.5, "norm": "l0"}, "expected a whole number"),
    ({"eps": 0.1, "norm": "l1"}, "norm: expected one of linf, l2, l0, got 'l1'"),
    ({"eps": 0.1, "bounds": (1.0, 0.0)}, "bounds: expected finite low < high"),
    ({"eps": 0.1, "bounds": (0.0, 0.4)}, "x: expected finite values inside bounds"),
])
def test_arguments_are_validated_before_drawing(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        perturbations(np.full(3, 0.5), **kwargs)
    with pytest.raises(TypeError):
        perturbations(np.full(3, 0.5), 0.1)  # type: ignore[misc]  # eps is keyword-only


def test_docstring_examples() -> None:
    failures, tried = doctest.testmod(nnaudit.testing)
    assert tried >= 4 and failures == 0

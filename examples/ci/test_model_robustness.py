"""Hand-written robustness tests that run beside nnaudit.toml's checks under plain `pytest`.

- the `nnaudit` fixture (from nnaudit's pytest plugin) runs attacks, region
  checks and verification and asserts with informative messages;
- `nnaudit.testing.perturbations` is a Hypothesis strategy that draws inputs
  inside a threat model, for property-based tests.

Run:  pytest examples/ci --nnaudit-report report.html
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

from nnaudit.networks import datasets, zoo
from nnaudit.testing import perturbations
from nnaudit.verify import robustness_property

DIGITS_X, DIGITS_Y = datasets.digits("test")
DIGITS_FFN = zoo.load("digits-ffn")
SAMPLE = 2  # a test digit (a 4) that digits-ffn classifies correctly; nnaudit verify proves both
            # properties below for it (every L-inf change <= EPS, every single-pixel change)
EPS = 0.01


def test_digits_ffn_survives_pgd(nnaudit):
    """Attacks give an upper bound on robust accuracy; the requirement is a floor."""
    ev = nnaudit.attack("digits-ffn", "digits", eps=0.02, attacks=["pgd"], limit=30)
    assert ev.clean_accuracy >= 0.9
    nnaudit.assert_robust(ev, min_robust_accuracy=0.8)


@pytest.mark.nnaudit(timeout=30)
def test_moons_point_is_proved_robust(nnaudit):
    """Complete verification of a VNN-LIB property (path relative to this file)."""
    result = nnaudit.verify("moons-ffn", "properties/moons_sample3.vnnlib")
    nnaudit.assert_holds(result)


def test_digit_is_proved_robust(nnaudit):
    """The property the Hypothesis test below samples from, proved for every input."""
    x = DIGITS_X[SAMPLE]
    prop = robustness_property(np.clip(x - EPS, 0, 1), np.clip(x + EPS, 0, 1), int(DIGITS_Y[SAMPLE]), 10)
    nnaudit.assert_holds(nnaudit.verify(DIGITS_FFN, prop))


@settings(max_examples=40, deadline=None)
@given(perturbations(DIGITS_X[SAMPLE], eps=EPS, norm="linf"))
def test_digit_keeps_its_class_under_linf_noise(x_adv):
    """Property-based: any L-inf perturbation of at most EPS keeps the class."""
    assert np.abs(x_adv.astype(np.float64) - DIGITS_X[SAMPLE]).max() <= EPS
    assert DIGITS_FFN.predict(x_adv[None])[0] == DIGITS_Y[SAMPLE]


@settings(max_examples=20, deadline=None)
@given(perturbations(DIGITS_X[SAMPLE], eps=1, norm="l0"))
def test_digit_keeps_its_class_when_one_pixel_changes(x_adv):
    """Property-based, L0: changing any single pixel to any value in [0, 1]."""
    assert int(np.count_nonzero(x_adv != DIGITS_X[SAMPLE])) <= 1
    assert DIGITS_FFN.predict(x_adv[None])[0] == DIGITS_Y[SAMPLE]

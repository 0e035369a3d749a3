"""VNN-LIB parser: the VNN-COMP files, hand-written cases, errors with
file:line:column, and a hypothesis fuzz (only SpecError may escape)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnaudit.errors import SpecError
from nnaudit.verify.vnnlib import parse, parse_string

DATA = Path(__file__).resolve().parents[1] / "data" / "vnncomp"
HEAD = "(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"


def test_acasxu_prop1_box_and_region() -> None:
    p = parse(DATA / "acasxu" / "vnnlib" / "prop_1.vnnlib")
    (box, region), = p.cases
    assert np.allclose(box.lower, [0.6, -0.5, -0.5, 0.45, -0.5])
    assert np.allclose(box.upper, [0.679857769, 0.5, 0.5, 0.5, -0.45])
    (c, d), = region.disjuncts
    assert np.allclose(c, [[-1, 0, 0, 0, 0]]) and np.allclose(d, [3.991125645861615])
    assert region.contains(np.array([[4.0, 0, 0, 0, 0]]))[0] and not region.contains(np.array([[3.9, 0, 0, 0, 0]]))[0]


def test_all_bundled_files_parse() -> None:
    for f in sorted(DATA.glob("*/vnnlib/*.vnnlib")):
        p = parse(f)
        assert p.cases and all(b.size in (5, 784) for b, _ in p.cases)
    p6 = parse(DATA / "acasxu" / "vnnlib" / "prop_6.vnnlib")
    assert len(p6.cases) == 2  # two input boxes under a top-level or
    mn = parse(DATA / "mnist_fc" / "vnnlib" / "prop_0_0.03.vnnlib")
    assert len(mn.cases[0][1].disjuncts) == 9


def test_linear_terms_and_dnf() -> None:
    text = HEAD + """
(assert (or (and (>= X_0 0) (<= X_0 1) (>= X_1 0) (<= X_1 1))
            (and (>= X_0 2) (<= X_0 3) (>= X_1 -1) (<= X_1 (- 0.5)))))
(assert (or (<= (+ Y_0 (* 2 Y_1)) 1.5) (>= (- Y_0 Y_1) 0)))
"""
    p = parse_string(text)
    assert len(p.cases) == 2
    (box0, reg0), (box1, reg1) = p.cases
    assert np.allclose(box1.upper, [3, -0.5])
    y = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    # unsafe: y0 + 2 y1 <= 1.5  or  y0 - y1 >= 0
    assert list(reg0.contains(y)) == [True, True, False]


@pytest.mark.parametrize("text,where,what", [
    (HEAD + "(assert (<= X_0 1)", "5:1", "unclosed"),
    (HEAD + "(assert (<= X_0 1)))", "5:20", "unbalanced"),
    (HEAD + "(assert (<= X_7 1))", "5:13", "X_7"),
    (HEAD + "(assert (< X_0 1))", "5:10", "strict"),
    (HEAD + "(assert (<= (+ X_0 Y_0) 1))", "5:9", "mixing"),
    (HEAD + "(assert (<= (* X_0 X_1) 1))", "5:13", "product"),
    (HEAD + "(declare-const Z Real)", "5:16", "X_i or Y_i"),
    (HEAD + "(assert (<= X_0 abc))", "5:17", "'abc'"),
])
def test_errors_name_line_and_column(text: str, where: str, what: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_string(text, source="p.vnnlib")
    assert f"p.vnnlib:{where}:" in str(err.value) and what in str(err.value)


def test_unbounded_input_is_an_error() -> None:
    with pytest.raises(SpecError, match="X_1 has no"):
        parse_string(HEAD + "(assert (>= X_0 0))\n(assert (<= X_0 1))\n(assert (<= X_1 1))\n(assert (<= Y_0 0))")


_ATOMS = ["(", ")", "(", ")", "X_0", "X_1", "Y_0", "Y_1", "1.5", "-2", "1e999", "and", "or", "<=", ">=", "=", "<",
          "+", "-", "*", "assert", "declare-const", "Real", ";", "\n", " ", "X_9", "0.", ".5", "nan"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_ATOMS), max_size=40))
def test_fuzz_token_soup_only_raises_spec_error(tokens: list[str]) -> None:
    try:
        parse_string(HEAD + " ".join(tokens))
    except SpecError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 400), st.integers(0, 3), st.text(max_size=4))
def test_fuzz_mutated_real_file(pos: int, cut: int, insert: str) -> None:
    text = (DATA / "acasxu" / "vnnlib" / "prop_7.vnnlib").read_text()
    pos = pos % len(text)
    try:
        parse_string(text[:pos] + insert + text[pos + cut:])
    except SpecError:
        pass

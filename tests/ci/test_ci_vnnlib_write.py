"""Writing VNN-LIB (verify/vnnlib_write.py) and ``nnaudit property robustness``: what is written
parses back to the same boxes and output constraints, and the verifier decides it on a real model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from nnaudit.cli import cli
from nnaudit.errors import SpecError
from nnaudit.networks import zoo
from nnaudit.verify.spec import Box, Property, Region, robustness_property
from nnaudit.verify.vnnlib import parse, parse_string
from nnaudit.verify.vnnlib_write import local_robustness_property, to_vnnlib, write_vnnlib

FLOATS = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False, width=64)


@st.composite
def properties(draw: st.DrawFn) -> Property:
    """1-3 cases over the same sizes, distinct boxes, 1-3 disjuncts of 1-3 rows each."""
    n_in, n_out = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    cases = []
    for k in range(draw(st.integers(1, 3))):
        lo = np.array(draw(st.lists(FLOATS, min_size=n_in, max_size=n_in)))
        width = np.array(draw(st.lists(st.floats(0, 10), min_size=n_in, max_size=n_in)))
        lo[0] = float(k) * 1e7 + 0.5  # distinct boxes: the parser merges equal ones
        disjuncts = []
        for _ in range(draw(st.integers(1, 3))):
            rows = draw(st.integers(1, 3))
            c = np.array(draw(st.lists(FLOATS, min_size=rows * n_out, max_size=rows * n_out))).reshape(rows, n_out)
            d = np.array(draw(st.lists(FLOATS, min_size=rows, max_size=rows)))
            disjuncts.append((c, d))
        cases.append((Box(lo, lo + width), Region(tuple(disjuncts))))
    return Property(tuple(cases), "drawn")


@settings(max_examples=60, deadline=None)
@given(properties())
def test_write_then_parse_gives_the_same_property(prop: Property) -> None:
    back = parse_string(to_vnnlib(prop))
    assert len(back.cases) == len(prop.cases)
    for (box, region), (box2, region2) in zip(prop.cases, back.cases):
        assert np.array_equal(box.lower, box2.lower) and np.array_equal(box.upper, box2.upper)
        assert len(region.disjuncts) == len(region2.disjuncts)
        for (c, d), (c2, d2) in zip(region.disjuncts, region2.disjuncts):
            assert np.array_equal(c, c2) and np.array_equal(d, d2)


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 10).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1))),
       st.floats(0, 0.5), st.integers(0, 2**31))
def test_robustness_property_round_trips(classes_label: tuple[int, int], eps: float, seed: int) -> None:
    classes, label = classes_label
    x = np.random.default_rng(seed).random(6)
    prop = local_robustness_property(x, eps, label, classes)
    (box, region), = parse_string(to_vnnlib(prop)).cases
    assert np.array_equal(box.lower, np.clip(x - eps, 0, 1)) and np.array_equal(box.upper, np.clip(x + eps, 0, 1))
    y = np.eye(classes)[label][None] * 5.0  # clearly class `label`: outside the unsafe region
    assert not region.contains(y)[0]
    assert region.contains(np.ones((1, classes)))[0]  # a tie with another class is unsafe


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(SpecError, match="target 1"):
        local_robustness_property(np.zeros(4), 0.1, 1, 3, target=1)
    with pytest.raises(SpecError, match="eps"):
        local_robustness_property(np.zeros(4), float("nan"), 0, 3)
    with pytest.raises(SpecError, match="one per channel"):
        local_robustness_property(np.zeros(12), 0.1, 0, 3, mean=(0.1, 0.2), std=(1.0,), channels=3)


def test_normalised_box_and_targeted_region(tmp_path: Path) -> None:
    x = np.linspace(0.0, 1.0, 12).reshape(3, 2, 2)
    prop = local_robustness_property(x, 0.1, 0, 4, target=2, mean=(0.5, 0.4, 0.3), std=(0.2,), channels=3)
    (box, region), = parse(write_vnnlib(prop, tmp_path / "sub" / "p.vnnlib")).cases
    mean = np.repeat([0.5, 0.4, 0.3], 4)
    assert np.allclose(box.lower, (np.clip(x.reshape(-1) - 0.1, 0, 1) - mean) / 0.2)
    (c, d), = region.disjuncts
    assert c.tolist() == [[1.0, 0.0, -1.0, 0.0]] and d.tolist() == [0.0]


def property_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["property", "robustness", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_property_command_writes_what_the_verifier_decides(tmp_path: Path) -> None:
    out = tmp_path / "moons3.vnnlib"
    code, text = property_cli("--data", "moons", "--index", "3", "--eps", "0.01", "--model", "moons-ffn",
                              "-o", str(out))
    assert code == 0, text
    assert "sample 3" in text and "2 inputs, 2 outputs" in text
    result = CliRunner().invoke(cli, ["verify", str(zoo.path("moons-ffn")), str(out), "--timeout", "60"])
    assert result.exit_code == 0 and "holds" in result.output, result.output
    big = tmp_path / "big.vnnlib"
    code, text = property_cli("--data", "moons", "--index", "3", "--eps", "0.5", "-o", str(big))
    assert code == 0, text
    result = CliRunner().invoke(cli, ["verify", str(zoo.path("moons-ffn")), str(big), "--timeout", "60"])
    assert result.exit_code == 1 and "violated" in result.output, result.output


@pytest.mark.parametrize(("args", "expected"), [
    (["--index", "100000"], "--index 100000 is outside"),
    (["--model", "digits-ffn"], "takes 64 inputs"),
    (["--clip", "0.5", "0.6"], "outside the clip range"),
    (["--std", "0"], "--std"),
    (["--target", "0"], "target 0"),
])
def test_property_command_bad_input_exits_2(tmp_path: Path, args: list[str], expected: str) -> None:
    code, text = property_cli("--data", "moons", "--index", "3", "--eps", "0.01", "-o", str(tmp_path / "p.vnnlib"),
                              *args)
    assert code == 2 and expected in text, text
    assert not (tmp_path / "p.vnnlib").exists()


def test_robustness_property_of_spec_also_writes() -> None:
    prop = robustness_property(np.zeros(3), np.ones(3), 1, 3)
    assert len(parse_string(to_vnnlib(prop)).cases[0][1].disjuncts) == 2

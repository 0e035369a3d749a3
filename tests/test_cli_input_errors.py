"""Issue #23: bad input is one line and exit 2 before work starts; a bug is one line and exit 4."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from nnaudit.cli import cli
from nnaudit.networks import zoo


def _invoke(*args: str):  # noqa: ANN201
    return CliRunner().invoke(cli, list(args))


def test_unexpected_exception_is_one_line_and_exit_4(monkeypatch) -> None:
    import nnaudit.networks

    def boom(*_args, **_kwargs):
        raise RuntimeError("boom in the loader")

    monkeypatch.setattr(nnaudit.networks, "load", boom)
    res = _invoke("inspect", str(zoo.path("digits-ffn")))
    assert res.exit_code == 4, res.output
    assert "internal error: RuntimeError: boom in the loader (please report this with the command line)" in res.output
    assert "Traceback" not in res.output


def test_nnaudit_error_still_exit_2(tmp_path) -> None:
    res = _invoke("inspect", str(tmp_path / "missing.onnx"))
    assert res.exit_code == 2 and "Traceback" not in res.output


VERIFY = ["verify", "MODEL", "PROP"]
REGIONS = ["regions", "MODEL", "--data", "digits"]
ATTACK = ["attack", "MODEL", "--data", "digits"]


@pytest.mark.parametrize(("base", "option", "value"), [
    (VERIFY, "--timeout", "-1"), (VERIFY, "--timeout", "nan"), (VERIFY, "--timeout", "0"),
    (VERIFY, "--timeout", "inf"), (VERIFY, "--workers", "0"), (VERIFY, "--workers", "-2"),
    (REGIONS, "--timeout-per-region", "-1"), (REGIONS, "--timeout-per-region", "nan"),
    (REGIONS, "--limit", "-5"), (REGIONS, "--limit", "0"),
    (ATTACK, "--limit", "-5"), (ATTACK, "--threads", "0"),
    (["check"], "--timeout", "nan"), (["check"], "--timeout", "-1"),
])
def test_bad_numeric_option_is_usage_error(tmp_path, base, option, value) -> None:
    model = str(zoo.path("digits-ffn"))
    prop = tmp_path / "p.vnnlib"
    prop.write_text("(declare-const X_0 Real)\n")
    args = [model if a == "MODEL" else str(prop) if a == "PROP" else a for a in base]
    res = _invoke(*args, option, value)
    assert res.exit_code == 2, res.output
    assert option in res.output and "Traceback" not in res.output


EMPTY_BOX = """(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(assert (>= X_0 0.5))
(assert (<= X_0 0.25))
(assert (>= X_1 0.0))
(assert (<= X_1 1.0))
(assert (>= Y_0 Y_1))
"""


def test_empty_input_box_is_refused(tmp_path) -> None:
    prop = tmp_path / "empty.vnnlib"
    prop.write_text(EMPTY_BOX)
    res = _invoke("verify", str(zoo.path("moons-ffn")), str(prop), "--workers", "1", "--timeout", "10")
    assert res.exit_code == 2, res.output
    line = res.output.strip()
    assert "empty.vnnlib" in line and "X_0" in line and "0.5" in line and "0.25" in line
    assert "\n" not in line and "Traceback" not in line


def test_one_empty_disjunct_among_others_is_kept() -> None:
    from nnaudit.verify.vnnlib import parse_string

    text = EMPTY_BOX.replace("(assert (>= X_0 0.5))\n(assert (<= X_0 0.25))\n",
                             "(assert (or (and (>= X_0 0.5) (<= X_0 0.25)) (and (>= X_0 0.0) (<= X_0 0.25))))\n")
    assert len(parse_string(text).cases) == 1


def _broken_model(path, *, opset: int = 13, dup_attribute: bool = False, string_input: bool = False):  # noqa: ANN202
    """A 2 -> 2 Gemm + Relu model that onnxruntime refuses to build a session for."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.STRING if string_input else TensorProto.FLOAT, [1, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
    w = numpy_helper.from_array(np.eye(2, dtype=np.float32), "w")
    gemm = helper.make_node("Gemm", ["x", "w"], ["h"], alpha=1.0)
    if dup_attribute:
        gemm.attribute.extend([helper.make_attribute("alpha", 2.0)])
    graph = helper.make_graph([gemm, helper.make_node("Relu", ["h"], ["y"])], "g", [x], [y], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), str(path))
    return path


@pytest.mark.parametrize("broken", [{"opset": 999}, {"dup_attribute": True}, {"string_input": True}])
@pytest.mark.parametrize("cmd", ["inspect", "verify"])
def test_onnxruntime_refusal_is_model_load_error(tmp_path, broken, cmd) -> None:
    model = _broken_model(tmp_path / "broken.onnx", **broken)
    prop = tmp_path / "p.vnnlib"
    prop.write_text(EMPTY_BOX.replace("(assert (>= X_0 0.5))", "(assert (>= X_0 0.0))"))
    args = [cmd, str(model)] + ([str(prop), "--workers", "1", "--timeout", "10"] if cmd == "verify" else [])
    res = _invoke(*args)
    assert res.exit_code == 2, res.output
    assert "broken.onnx" in res.output and res.output.startswith("error: ")
    assert "Traceback" not in res.output and "internal error" not in res.output


@pytest.mark.parametrize(("base", "option"), [
    (VERIFY, "--result-file"), (VERIFY, "-o"), (REGIONS, "--json"), (ATTACK, "--json"),
    (["adapt", "--task", "moons"], "--out"), (["adapt", "--task", "moons", "--out", "OUT"], "--json"),
])
def test_output_into_missing_folder_is_refused_before_work(tmp_path, base, option) -> None:
    prop = tmp_path / "p.vnnlib"
    prop.write_text(EMPTY_BOX)
    subs = {"MODEL": str(zoo.path("digits-ffn")), "PROP": str(prop), "OUT": str(tmp_path / "a.onnx")}
    target = tmp_path / "no-such-folder" / "out.json"
    res = _invoke(*[subs.get(a, a) for a in base], option, str(target))
    assert res.exit_code == 2, res.output
    assert str(target) in res.output and "does not exist" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "a.onnx").exists()


def test_output_that_is_a_directory_is_refused(tmp_path) -> None:
    res = _invoke("attack", str(zoo.path("digits-ffn")), "--data", "digits", "--json", str(tmp_path))
    assert res.exit_code == 2 and "--json" in res.output, res.output

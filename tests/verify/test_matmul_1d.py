"""MatMul with 1-D operands (VNN-COMP's ``test`` family: ``MatMul_0: shape mismatch ... axes don't
match array`` on load): the IR computes what onnxruntime does, and ``verify`` decides properties on
such nets in agreement with a dense sample of the box."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import helper

import conv_nets
from nnaudit.cli import cli
from nnaudit.networks import load
from nnaudit.verify.engine import counterexample_ok
from nnaudit.verify.vnnlib import parse
from onnx_build import make_model, save


def _nets(rng: np.random.Generator) -> dict[str, tuple]:
    mm = lambda a, b, o: helper.make_node("MatMul", [a, b], [o])  # noqa: E731
    return {
        "vector_times_matrix": ([mm("x", "W", "h"), helper.make_node("Relu", ["h"], ["r"]), mm("r", "v", "y")],
                                [2], {"W": rng.normal(size=(2, 4)), "v": rng.normal(size=(4,))}),
        "matrix_times_vector": ([mm("W", "x", "h"), helper.make_node("Relu", ["h"], ["r"]), mm("v", "r", "y")],
                                [2], {"W": rng.normal(size=(4, 2)), "v": rng.normal(size=(4,))}),
        "row_times_vector": ([mm("x", "W", "h"), helper.make_node("Relu", ["h"], ["r"]), mm("r", "v", "y")],
                             [1, 2], {"W": rng.normal(size=(2, 4)), "v": rng.normal(size=(4,))}),
    }


@pytest.mark.parametrize("kind", ["vector_times_matrix", "matrix_times_vector", "row_times_vector"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_d_matmul_nets_load_and_verify(kind: str, seed: int, tmp_path: Path) -> None:
    rng = np.random.default_rng(seed)
    nodes, shape, inits = _nets(rng)[kind]
    path = save(make_model(nodes, ("x", shape), ("y", None), {k: v.astype(np.float32) for k, v in inits.items()}),
                tmp_path / f"{kind}.onnx")
    net = load(path)
    xs = rng.uniform(-1, 1, (400, 2)).astype(np.float32)
    sess = ort.InferenceSession(str(path))
    ref = np.array([sess.run(None, {"x": x.reshape(shape)})[0] for x in xs]).reshape(400)
    assert np.allclose(net.evaluate(xs.reshape((400,) + net.input_shape)).reshape(400), ref, atol=1e-5)
    # a threshold between the sampled maximum and the bound: either side of it is possible
    threshold = float(np.quantile(ref, 0.9 if seed == 0 else 1.0)) + (0.0 if seed == 0 else 0.05)
    prop = conv_nets.box_vnnlib(tmp_path / "p.vnnlib", -np.ones(2), np.ones(2), f"(>= Y_0 {threshold!r})")
    out = tmp_path / "res.json"
    r = CliRunner().invoke(cli, ["verify", str(path), str(prop), "--timeout", "30", "--workers", "1", "-o", str(out)])
    assert r.exit_code in (0, 1), r.output
    if r.exit_code == 1:
        x = np.asarray(json.loads(out.read_text())["instances"][0]["counterexample"]["x"], dtype=np.float64)
        assert counterexample_ok(path, parse(prop), x)
    else:  # holds: no sample reaches the threshold
        assert ref.max() < threshold
    if seed == 0:
        assert r.exit_code == 1  # a tenth of the samples violate it

"""``nnaudit inspect``: table and JSON output, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from click.testing import CliRunner
from onnx_build import random_mlp, save

from nnaudit.cli import cli
from nnaudit.networks import load

ACAS = Path(__file__).resolve().parents[1] / "data/vnncomp/acasxu/onnx/ACASXU_run2a_1_1_batch_2000.onnx"


def test_inspect_table() -> None:
    res = CliRunner().invoke(cli, ["inspect", str(ACAS), "--low", "-0.5", "--high", "0.5"])
    assert res.exit_code == 0, res.output
    assert "Linear" in res.output and "(1, 1, 5)" in res.output
    assert "onnxruntime cross-check: OK" in res.output
    assert "13,305" in res.output  # 5*50+50 + 5*(50*50+50) + 50*5+5


def test_inspect_json() -> None:
    res = CliRunner().invoke(cli, ["inspect", str(ACAS), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["input"]["shape"] == [1, 1, 5] and info["output"]["shape"] == [5]
    assert info["num_params"] == 13305 and info["check"]["ok"] is True
    assert [la["type"] for la in info["layers"]].count("Relu") == 6


def test_inspect_usage_error_exit_2(tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["inspect"])
    assert res.exit_code == 2


def test_help_lists_commands_and_exit_codes() -> None:
    res = CliRunner().invoke(cli, ["--help"])
    assert res.exit_code == 0
    for name in ("inspect", "verify", "regions", "attack", "adapt", "report", "check", "demo"):
        assert name in res.output
    assert "Exit codes" in res.output


def test_to_torch_is_differentiable_and_matches(tmp_path: Path) -> None:
    net = load(save(random_mlp(np.random.default_rng(3), [5, 7, 4]), tmp_path / "m.onnx"))
    module = net.to_torch()
    x = torch.rand(3, 5, requires_grad=True)
    y = module(x)
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    np.testing.assert_allclose(y.detach().numpy(), net.evaluate(x.detach().numpy()), rtol=1e-5, atol=1e-6)
    assert not list(module.parameters())  # weights are buffers: never trained by accident


def test_evaluate_rejects_wrong_shapes(tmp_path: Path) -> None:
    import pytest

    net = load(save(random_mlp(np.random.default_rng(3), [5, 7, 4]), tmp_path / "m.onnx"))
    with pytest.raises(ValueError, match=r"expected input shaped \(B, \*\(5,\)\)"):
        net.evaluate(np.zeros((2, 6)))
    with pytest.raises(ValueError, match="add a leading batch axis"):
        net.evaluate(np.zeros(5))

"""Export through onnxruntime for the conv preset, and the ``nnaudit adapt`` CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from nnaudit.cli import cli


def test_conv_export_round_trip(tmp_path: Path) -> None:
    from nnaudit.adaptation.config import DannConfig
    from nnaudit.adaptation.shifts import digits_m_task
    from nnaudit.adaptation.export import export_onnx
    from nnaudit.adaptation.trainer import train_dann
    from nnaudit.networks import load
    from nnaudit.networks.runtime import OnnxRuntimeModel

    task = digits_m_task(seed=0)
    cfg = DannConfig(epochs=1, batch_size=64, conv_channels=(8, 16), head_hidden=16, a_distance_every=0, device="cpu")
    run = train_dann(task, cfg)
    x = task.target_eval.x[:50]
    res = export_onnx(run, tmp_path / "d.onnx", samples=x)
    assert res.max_abs_error < 1e-4
    net = load(res.path)
    assert net.input_shape == (3, 8, 8) and net.output_shape == (10,)
    ort = OnnxRuntimeModel(res.path).run(x)
    assert np.allclose(ort, run.logits(x), atol=1e-4)
    assert np.allclose(net.evaluate(x.astype(np.float64)).reshape(50, -1), ort, atol=1e-4)


def test_export_rejects_unknown_objects(tmp_path: Path) -> None:
    from nnaudit.adaptation.export import export_onnx
    from nnaudit.errors import NnauditError

    with pytest.raises(NnauditError, match="expected a DannRun or an nn.Module"):
        export_onnx("model", tmp_path / "x.onnx")


def test_cli_adapt_moons(tmp_path: Path) -> None:
    out, js = tmp_path / "a.onnx", tmp_path / "run.json"
    res = CliRunner().invoke(cli, ["adapt", "--task", "moons", "--epochs", "3", "--device", "cpu",
                                   "--out", str(out), "--json", str(js)])
    assert res.exit_code == 0, res.output
    assert "DANN" in res.output and "target accuracy" in res.output
    from nnaudit.networks import load
    from nnaudit.reports.schema import read_result

    doc = read_result(js, kind="adapt")
    assert doc["complete"] is True and doc["task"] == "moons" and doc["device"] == "cpu"
    assert [e["epoch"] for e in doc["epochs"]] == [1, 2, 3]
    for model in ("source_only", "dann"):
        assert set(doc["final"][model]) == {"source_accuracy", "target_accuracy", "a_distance", "a_distance_logits",
                                            "selected_epoch"}
        assert doc["final"][model]["selected_epoch"] in (2, 3)  # the moons preset selects in the second half
    pca = doc["features"]["pca"]
    assert len(pca["before"]["source"]) == 300 and len(pca["after"]["target"][0]) == 2
    db = doc["decision_boundary"]
    assert len(db["dann"]) == len(db["grid_y"]) and len(db["dann"][0]) == len(db["grid_x"])
    assert len(db["source"]["x"]) == 150 and len(db["target"]["x"]) == 150
    assert doc["export"]["max_abs_error"] < 1e-4 and doc["settings"]["epochs"] == 3
    assert doc["seeds"] == {"seed": 0}
    assert load(out).input_shape == (2,)
    assert (tmp_path / "a.onnx.ckpt").is_file()
    # --resume on a finished run only re-exports: the epochs come from the checkpoint
    res2 = CliRunner().invoke(cli, ["adapt", "--task", "moons", "--epochs", "3", "--device", "cpu",
                                    "--out", str(out), "--json", str(js), "--resume"])
    assert res2.exit_code == 0, res2.output
    again = json.loads(js.read_text())
    assert again["resumed_from_epoch"] == 3 and again["time_per_epoch_s"] is None
    assert [e["epoch"] for e in again["epochs"]] == [1, 2, 3] and again["final"] == doc["final"]
    assert "all epochs from the checkpoint" in res2.output


def test_cli_custom_npz(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)).astype(np.float32)
    np.savez(tmp_path / "s.npz", x=x, y=(x[:, 0] > 0).astype(np.int64))
    np.savez(tmp_path / "t.npz", x=x + 1.0)
    res = CliRunner().invoke(cli, ["adapt", "--source", str(tmp_path / "s.npz"), "--target", str(tmp_path / "t.npz"),
                                   "--epochs", "2", "--out", str(tmp_path / "c.onnx"), "--json", str(tmp_path / "c.json")])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "c.json").read_text())
    assert doc["task"] == "custom" and doc["final"]["dann"]["target_accuracy"] is None
    assert "decision_boundary" not in doc
    assert "n/a (no target labels)" in res.output


@pytest.mark.parametrize("args, message", [
    (["--task", "moons", "--source", "s.npz"], "either --task or --source/--target"),
    (["--source", "s.npz"], "give --task"),
    (["--task", "moons", "--device", "tpu"], "expected one of auto, cpu, cuda or cuda:N, got 'tpu'"),
])
def test_cli_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    res = CliRunner().invoke(cli, ["adapt", *args, "--out", str(tmp_path / "o.onnx")])
    assert res.exit_code == 2 and message in res.output


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the machine without a GPU")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cli_missing_gpu_is_a_usage_error(tmp_path: Path, device: str) -> None:
    res = CliRunner().invoke(cli, ["adapt", "--task", "moons", "--epochs", "1", "--device", device,
                                   "--out", str(tmp_path / "o.onnx")])
    assert res.exit_code == 2 and "CUDA is not available" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "o.onnx").exists()


def test_cli_bad_data_is_a_clear_error(tmp_path: Path) -> None:
    np.savez(tmp_path / "s.npz", x=np.zeros((4, 3)), y=np.array([0, 1, 0, 1]))
    np.savez(tmp_path / "t.npz", x=np.zeros((4, 5)))
    res = CliRunner().invoke(cli, ["adapt", "--source", str(tmp_path / "s.npz"), "--target", str(tmp_path / "t.npz"),
                                   "--out", str(tmp_path / "o.onnx")])
    assert res.exit_code == 2
    assert "error:" in res.output and "t.npz: array 'x' has samples of shape (5,)" in res.output
    assert not (tmp_path / "o.onnx").exists()


def test_cli_on_target_writes_the_gap(tmp_path: Path) -> None:
    js = tmp_path / "g.json"
    res = CliRunner().invoke(cli, ["adapt", "--task", "moons-hard", "--epochs", "3", "--device", "cpu", "--on-target",
                                   "--out", str(tmp_path / "g.onnx"), "--json", str(js)])
    assert res.exit_code == 0, res.output
    doc = json.loads(js.read_text())
    gap = doc["gap"]
    assert doc["task"] == "moons-hard" and 0.0 <= gap["train_on_target"] <= 1.0
    assert gap["dann"] == doc["final"]["dann"]["target_accuracy"]
    assert gap["source_only"] == doc["final"]["source_only"]["target_accuracy"]
    assert "on-target" in res.output and ("of the gap closed" in res.output or "no gap" in res.output)
    assert len(doc["decision_boundary"]["target"]["correct"]["dann"]) == 150


def test_batch_norm_export_round_trip(tmp_path: Path) -> None:
    """The digit presets' BatchNorm (per-domain statistics in training) exports to
    ONNX BatchNormalization that onnxruntime and nnaudit's loader agree on."""
    from nnaudit.adaptation.config import for_task
    from nnaudit.adaptation.export import export_onnx
    from nnaudit.adaptation.tasks import bundled_task
    from nnaudit.adaptation.trainer import train_dann
    from nnaudit.networks import load
    from nnaudit.networks.runtime import OnnxRuntimeModel

    task = bundled_task("mnist-digits")
    cfg = for_task("mnist-digits", epochs=1, conv_channels=(4, 8), head_hidden=16, a_distance_every=0, device="cpu")
    assert cfg.batch_norm and cfg.domain_bn
    run = train_dann(task, cfg)
    x = task.target_eval.x[:40]
    res = export_onnx(run, tmp_path / "bn.onnx", samples=x)
    ort = OnnxRuntimeModel(res.path).run(x)
    assert np.allclose(ort, run.logits(x), atol=1e-4)
    net = load(res.path)
    assert net.input_shape == (1, 8, 8)
    assert np.allclose(net.evaluate(x.astype(np.float64)).reshape(40, -1), ort, atol=1e-4)

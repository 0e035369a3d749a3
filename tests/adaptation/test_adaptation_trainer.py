"""The DANN trainer: adaptation on the moons, reproducibility, checkpoints, A-distance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nnaudit.adaptation.config import DannConfig, for_task
from nnaudit.adaptation.data import moons_task
from nnaudit.adaptation.metrics import proxy_a_distance
from nnaudit.adaptation.trainer import train_dann
from nnaudit.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def moons_run():
    """The moons preset, seed 0: 300 short epochs of 150 + 150 points (a few seconds)."""
    return train_dann(moons_task(seed=0, n_test=400), for_task("moons", epochs=300, a_distance_every=0, device="cpu"))


def test_dann_beats_source_only_on_rotated_moons(moons_run) -> None:
    final = moons_run.final
    assert final["source_only"]["source_accuracy"] > 0.95
    assert final["dann"]["source_accuracy"] > 0.95
    # the rotation breaks the source-only classifier; DANN recovers most of the target
    assert final["source_only"]["target_accuracy"] < 0.85
    assert final["dann"]["target_accuracy"] > 0.95  # 99.7 % on seed 0 with 1,000 scored points (bench/dann.py)
    assert final["dann"]["target_accuracy"] > final["source_only"]["target_accuracy"] + 0.1


def test_epoch_records(moons_run) -> None:
    assert len(moons_run.epochs) == 300
    first, last = moons_run.epochs[0], moons_run.epochs[-1]
    assert first["epoch"] == 1 and last["epoch"] == 300
    for key in ("source_accuracy", "target_accuracy", "domain_accuracy", "label_loss", "domain_loss", "lambda", "lr"):
        assert np.isfinite(last["dann"][key])
    assert set(last["source_only"]) == {"source_accuracy", "target_accuracy", "label_loss"}
    # the domain classifier ends near chance: the features are hard to tell apart
    assert 0.3 < last["dann"]["domain_accuracy"] < 0.8
    assert moons_run.device == "cpu"


def test_export_of_run_round_trips(moons_run, tmp_path: Path) -> None:
    from nnaudit.adaptation.export import export_onnx
    from nnaudit.networks import load
    from nnaudit.networks.runtime import OnnxRuntimeModel

    task = moons_task(seed=0, n_test=400)
    res = export_onnx(moons_run, tmp_path / "m.onnx")
    assert res.max_abs_error < 1e-4 and res.samples == 64
    ort_pred = OnnxRuntimeModel(res.path).predict(task.target_eval.x)
    assert np.mean(ort_pred == task.target_eval.y) == pytest.approx(moons_run.final["dann"]["target_accuracy"], abs=1e-9)
    net = load(res.path)
    assert net.input_shape == (2,) and net.output_shape == (2,)
    assert np.array_equal(net.predict(task.target_eval.x.astype(np.float64)), ort_pred)


def _short(**kw) -> DannConfig:
    return DannConfig(**{"epochs": 4, "batch_size": 32, "a_distance_every": 2, "device": "cpu", **kw})


def test_cpu_runs_are_reproducible() -> None:
    a = train_dann(moons_task(seed=1, n_test=100), _short(seed=5))
    b = train_dann(moons_task(seed=1, n_test=100), _short(seed=5))
    strip = lambda recs: [{k: v for k, v in r.items() if k != "time_s"} for r in recs]  # noqa: E731
    assert strip(a.epochs) == strip(b.epochs)
    for pa, pb in zip(a.dann.parameters(), b.dann.parameters()):
        assert torch.equal(pa, pb)
    c = train_dann(moons_task(seed=1, n_test=100), _short(seed=6))
    assert strip(c.epochs) != strip(a.epochs)


def test_baseline_starts_from_the_same_weights() -> None:
    run = train_dann(moons_task(seed=1, n_test=100), _short(epochs=1, lr0=1e-12))
    for pa, pb in zip(run.dann.features.parameters(), run.source_only.features.parameters()):
        assert torch.allclose(pa, pb, atol=1e-6)


def test_interrupted_run_resumes_to_the_same_result(tmp_path: Path) -> None:
    task = moons_task(seed=2, n_test=100)
    ckpt = tmp_path / "run.ckpt"

    seen: list[int] = []

    def stop_after_two(record: dict, history: list) -> None:
        seen.append(len(history))
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_dann(task, _short(), checkpoint=ckpt, on_epoch=stop_after_two)
    assert ckpt.is_file()
    resumed = train_dann(task, _short(), checkpoint=ckpt, resume=True, on_epoch=lambda r, h: seen.append(len(h)))
    assert seen == [1, 2, 3, 4]  # the history handed on after resuming includes the restored epochs
    fresh = train_dann(task, _short())
    assert resumed.resumed_from == 2 and len(resumed.epochs) == 4
    for pa, pb in zip(resumed.dann.parameters(), fresh.dann.parameters()):
        assert torch.allclose(pa, pb, atol=1e-6)
    assert resumed.final == fresh.final


def test_resume_rejects_other_settings_or_data(tmp_path: Path) -> None:
    task = moons_task(seed=2, n_test=100)
    ckpt = tmp_path / "run.ckpt"
    train_dann(task, _short(epochs=1), checkpoint=ckpt)
    with pytest.raises(ConfigError, match=r"run\.ckpt: cannot resume, the settings differ \(lr0"):
        train_dann(task, _short(epochs=1, lr0=0.5), checkpoint=ckpt, resume=True)
    with pytest.raises(DataError, match="different data"):
        train_dann(moons_task(seed=3, n_test=100), _short(epochs=1), checkpoint=ckpt, resume=True)
    (tmp_path / "junk.ckpt").write_text("junk")
    with pytest.raises(DataError, match=r"junk\.ckpt: not a readable DANN checkpoint"):
        train_dann(task, _short(epochs=1), checkpoint=tmp_path / "junk.ckpt", resume=True)


def test_user_modules_and_missing_cuda() -> None:
    from torch import nn

    parts = (nn.Sequential(nn.Linear(2, 8), nn.ReLU()), nn.Linear(8, 2), nn.Linear(8, 2))
    run = train_dann(moons_task(seed=0, n_test=50), _short(epochs=1), parts=parts)
    assert run.dann.features is parts[0]
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="cuda"):
            train_dann(moons_task(seed=0, n_test=50), _short(device="cuda"))


def test_proxy_a_distance_extremes() -> None:
    rng = np.random.default_rng(0)
    same = proxy_a_distance(rng.normal(size=(400, 5)), rng.normal(size=(400, 5)))
    apart = proxy_a_distance(rng.normal(size=(400, 5)), rng.normal(size=(400, 5)) + 4.0)
    assert abs(same.value) < 0.4 and apart.value > 1.9
    assert same.value == pytest.approx(2 * (1 - 2 * same.error))
    assert same.n_train + same.n_test == 800


def test_report_shows_the_gap_and_marks_target_points(moons_run, tmp_path: Path) -> None:
    """The adapt body and report of a real run: the gap table (with a measured
    train-on-target bound) and target points marked right/wrong as the exported
    ONNX model, run by onnxruntime, classifies them."""
    from nnaudit.adaptation.export import export_onnx
    from nnaudit.adaptation.gap import train_on_target
    from nnaudit.adaptation.record import adapt_body
    from nnaudit.networks.runtime import OnnxRuntimeModel
    from nnaudit.reports import schema
    from nnaudit.reports.render import write_report
    from nnaudit.reports.view_adapt import gap_row, target_marks

    task = moons_task(seed=0, n_test=400)
    export = export_onnx(moons_run, tmp_path / "m.onnx")
    on_target = train_on_target(task, for_task("moons", epochs=60, device="cpu"))
    body = adapt_body(moons_run, task, export, on_target)
    gap = body["gap"]
    assert gap["dann"] == moons_run.final["dann"]["target_accuracy"] and gap["train_on_target"] == on_target
    assert on_target > gap["source_only"] + 0.1            # the rotation costs source-only a lot
    assert gap["closed"] == pytest.approx((gap["dann"] - gap["source_only"]) / (on_target - gap["source_only"]), abs=1e-6)
    assert gap["closed"] > 0.5
    row = gap_row(gap)
    assert row["closed"] == f"{100 * gap['closed']:.0f}%" and row["train_on_target"] == f"{100 * on_target:.1f}%"
    boundary = body["decision_boundary"]
    ort_right = OnnxRuntimeModel(export.path).predict(task.target.x) == task.target.y
    assert boundary["target"]["correct"]["dann"] == ort_right.tolist()
    right, wrong = target_marks(boundary, "dann")
    assert len(right) == ort_right.sum() and len(wrong) == (~ort_right).sum() and len(wrong) < len(right)
    so_right, so_wrong = target_marks(boundary, "source_only")
    assert len(so_wrong) > len(wrong)                       # source-only gets more of the rotated moons wrong
    doc = schema.new_result("adapt", settings={}, seeds={"seed": 0})
    doc.update(body)
    schema.finish(doc)
    html = write_report([schema.write_json(doc, tmp_path / "a.json")], tmp_path / "r.html").read_text()
    assert "train-on-target" in html and "gap closed" in html and row["closed"] in html
    assert "of the gap closed" in html and "target points green" in html


def test_selection_keeps_a_second_half_epoch_and_resumes(tmp_path: Path) -> None:
    task = moons_task(seed=2, n_test=100)
    cfg = _short(epochs=6, select="bound")
    run = train_dann(task, cfg)
    assert run.final["dann"]["selected_epoch"] in (4, 5, 6) and run.final["source_only"]["selected_epoch"] in (4, 5, 6)
    ckpt = tmp_path / "s.ckpt"

    def stop_after_five(record: dict, history: list) -> None:
        if record["epoch"] == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_dann(task, cfg, checkpoint=ckpt, on_epoch=stop_after_five)
    resumed = train_dann(task, cfg, checkpoint=ckpt, resume=True)
    assert resumed.final == run.final
    assert "selected_epoch" not in train_dann(task, _short(epochs=2)).final["dann"]
    with pytest.raises(ConfigError, match="DannConfig.select: expected one of last, bound"):
        _short(select="best")


def test_domain_bn_keeps_the_source_out_of_the_running_statistics() -> None:
    import copy

    from nnaudit.adaptation.models import DANN, conv_parts

    torch.manual_seed(0)
    dann = DANN(*conv_parts((3, 8, 8), 10, (4, 8), 16, batch_norm=True)).train()
    twin = copy.deepcopy(dann)
    xs, xt = torch.rand(6, 3, 8, 8), torch.rand(6, 3, 8, 8) + 2.0
    cls, dom = dann.forward_domains(xs, xt)
    assert cls.shape == (6, 10) and dom.shape == (12, 2)
    twin.features(xt)                          # the target batch alone
    bns = [m for m in dann.features.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    twins = [m for m in twin.features.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 2 and all(m.momentum == 0.1 for m in bns)
    for a, b in zip(bns, twins):
        assert torch.allclose(a.running_mean, b.running_mean) and torch.allclose(a.running_var, b.running_var)
    # the source half was normalised with its own batch statistics: its class logits are those of the source batch alone
    alone = copy.deepcopy(dann)
    assert torch.allclose(cls, alone.label_head(alone.features(xs)), atol=1e-5)


def test_entropy_selection_keeps_the_best_scored_epoch_without_target_labels() -> None:
    """``select=entropy`` keeps the second-half epoch with the lowest source error + target entropy,
    restores its weights, and chooses the same epoch when the target has no labels at all."""
    from dataclasses import replace

    from nnaudit.adaptation.data import Split
    from nnaudit.adaptation.selection import entropy_score

    task = moons_task(seed=2, n_test=100)
    cfg = _short(epochs=8, select="entropy", a_distance_every=0)
    run = train_dann(task, cfg)
    second_half = [r for r in run.epochs if r["epoch"] > 4]
    best = min(second_half, key=entropy_score)
    assert run.final["dann"]["selected_epoch"] == best["epoch"]
    assert run.final["dann"]["target_accuracy"] == pytest.approx(best["dann"]["target_accuracy"], abs=1e-6)
    assert all(0.0 <= r["dann"]["target_entropy"] <= 1.0 for r in second_half)
    blind = train_dann(replace(task, target=Split(task.target.x), target_test=Split(task.target_eval.x)), cfg)
    assert blind.final["dann"]["selected_epoch"] == best["epoch"]
    assert blind.final["dann"]["target_accuracy"] is None


def test_prediction_entropy_is_normalised() -> None:
    from nnaudit.adaptation.metrics import prediction_entropy

    assert prediction_entropy(np.zeros((5, 10))) == pytest.approx(1.0)
    assert prediction_entropy(np.array([[50.0, 0.0, 0.0], [0.0, 0.0, 50.0]])) == pytest.approx(0.0, abs=1e-12)
    assert 0.0 < prediction_entropy(np.array([[1.0, 0.0], [0.0, 2.0]])) < 1.0

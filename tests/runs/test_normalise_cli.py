"""``--mean`` / ``--std`` on ``regions``, ``attack`` and ``verify`` (and ``mean``/``std`` in checks):
the model normalises its input itself, so a net that expects normalised pixels gives, on pixels,
the verdicts and margins of an un-normalised copy whose first layer absorbed the normalisation
offline (``onnx_build.fold_normalisation``); bad input is one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from nnaudit.cli import cli
from nnaudit.networks import zoo
from onnx_build import fold_normalisation, save

CIFAR = Path(__file__).resolve().parents[1] / "data" / "cifar10"
MODEL, DATA = CIFAR / "cifar_base_kw.onnx", CIFAR / "cifar10_test_3.npz"
NORM = ["--mean", "0.485,0.456,0.406", "--std", "0.225"]


@pytest.fixture(scope="module")
def folded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cifar_base_kw with the normalisation folded into its first (padded) Conv: it takes pixels."""
    model = fold_normalisation(onnx.load(str(MODEL)), (0.485, 0.456, 0.406), (0.225,) * 3)
    return save(model, tmp_path_factory.mktemp("folded") / "cifar_base_kw_pixels.onnx")


def invoke(*args: object) -> object:
    return CliRunner().invoke(cli, [str(a) for a in args])


def run_json(tmp_path: Path, name: str, *args: object) -> dict:
    out = tmp_path / f"{name}.json"
    res = invoke(*args, "--json", out)
    assert res.exit_code in (0, 1, 3), res.output
    return json.loads(out.read_text())


def _regions(doc: dict) -> list[tuple]:
    """Per region: verdict, route and, for an unsafe one, the class and onnxruntime confidence before."""
    return [(r["verdict"], r["route"], r["counterexample"] and r["counterexample"]["class_before"],
             r["counterexample"] and round(r["counterexample"]["conf_before"], 4))
            for im in doc["images"] for r in im["regions"]]


@pytest.mark.parametrize("setting", [["--start", "1", "--limit", "1", "--step", "0.004"], ["--limit", "1", "--step", "0.1"]],
                         ids=["safe", "unsafe"])
def test_regions_with_mean_std_equal_the_folded_copy(tmp_path: Path, folded: Path, setting: list[str]) -> None:
    args = ["--data", DATA, "--whole", "--steps", "1", "--timeout-per-region", "30", *setting]
    ours = run_json(tmp_path, "ours", "regions", MODEL, *args, *NORM)
    theirs = run_json(tmp_path, "theirs", "regions", folded, *args)
    assert _regions(ours) == _regions(theirs)
    assert {v for v, *_ in _regions(ours)} == ({"safe"} if setting[-1] == "0.004" else {"unsafe"})
    assert ours["settings"]["mean"] == [0.485, 0.456, 0.406] and ours["settings"]["std"] == [0.225]
    assert "mean" not in theirs["settings"] and ours["model"]["file"] == "cifar_base_kw.onnx"
    pixels = np.load(DATA)["x"]
    for im in ours["images"]:  # images and counterexamples stay in pixel space
        np.testing.assert_allclose(im["x"], pixels[im["index"]].reshape(-1), atol=1e-7)
        for r in im["regions"]:
            if r["counterexample"]:
                cex = np.asarray(r["counterexample"]["x"])
                assert cex.min() >= 0 and cex.max() <= 1 and np.abs(cex - pixels[im["index"]].reshape(-1)).max() <= 0.1 + 1e-6


def test_attack_with_mean_std_equals_the_folded_copy(tmp_path: Path, folded: Path) -> None:
    args = ["--data", DATA, "--attacks", "fgsm,pgd", "--eps", "0.002,0.02,0.05", "--set", "pgd.steps=10",
            "--threads", "1"]
    ours = run_json(tmp_path, "ours", "attack", MODEL, *args, *NORM)
    theirs = run_json(tmp_path, "theirs", "attack", folded, *args)
    assert ours["clean_accuracy"] == theirs["clean_accuracy"] == 1.0
    for a, b in zip(ours["results"], theirs["results"], strict=True):
        for key in ("robust_accuracy", "success_rate", "broken", "mismatches"):
            assert a[key] == b[key], key
    assert [r["robust_accuracy"]["worst"] for r in ours["results"]] == [1.0, pytest.approx(1 / 3), 0.0]
    for a, b in zip(ours["examples"], theirs["examples"], strict=True):  # margins: the clean confidences
        assert (a["label"], a["pred_clean"], a["attack"]) == (b["label"], b["pred_clean"], b["attack"])
        assert a["conf_clean"] == pytest.approx(b["conf_clean"], abs=1e-5)
        assert 0 <= min(a["x_adv"]) and max(a["x_adv"]) <= 1
    assert ours["settings"]["mean"] == [0.485, 0.456, 0.406]
    plain = run_json(tmp_path, "plain", "attack", MODEL, *args)  # without the normalisation: misread
    assert plain["clean_accuracy"] < 1.0


def _vnnlib(path: Path, low: np.ndarray, high: np.ndarray, label: int, classes: int) -> Path:
    """A local-robustness property: the box [low, high] and "some other class scores at least as high"."""
    lines = [f"(declare-const X_{i} Real)" for i in range(low.size)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(classes)]
    for i, (lo, hi) in enumerate(zip(low, high)):
        lines += [f"(assert (>= X_{i} {lo:.9f}))", f"(assert (<= X_{i} {hi:.9f}))"]
    lines.append("(assert (or " + " ".join(f"(and (>= Y_{j} Y_{label}))" for j in range(classes) if j != label) + "))")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("eps, verdict, code", [(0.01, "holds", 0), (0.5, "violated", 1)])
def test_verify_with_mean_std_equals_the_folded_copy(tmp_path: Path, eps: float, verdict: str, code: int) -> None:
    """On a small conv net: pixel-space boxes, the same verdict as the folded copy; a counterexample
    onnxruntime confirms on that independently folded file."""
    from nnaudit.networks.datasets import digits
    from nnaudit.verify.engine import counterexample_ok
    from nnaudit.verify.vnnlib import parse

    x, y = digits("test")
    base = zoo.path("digits-cnn")
    folded = save(fold_normalisation(onnx.load(str(base)), (0.3,), (0.4,)), tmp_path / "digits_cnn_pixels.onnx")
    prop = _vnnlib(tmp_path / "p.vnnlib", np.clip(x[0] - eps, 0, 1), np.clip(x[0] + eps, 0, 1), int(y[0]), 10)
    args = ["--timeout", "30", "--workers", "1"]
    ours = invoke("verify", base, prop, *args, "--mean", "0.3", "--std", "0.4", "-o", tmp_path / "v.json")
    theirs = invoke("verify", folded, prop, *args)
    assert ours.exit_code == theirs.exit_code == code, ours.output + theirs.output
    assert ours.output.split()[0] == theirs.output.split()[0] == verdict
    doc = json.loads((tmp_path / "v.json").read_text())
    assert doc["settings"]["mean"] == [0.3] and doc["settings"]["std"] == [0.4]
    cex = doc["instances"][0]["counterexample"]
    if verdict == "violated":
        assert counterexample_ok(str(folded), parse(prop), np.asarray(cex["x"]))


def test_verify_refuses_a_box_of_the_normalised_input(tmp_path: Path) -> None:
    """oval21's boxes are in the normalised space: with --mean/--std, a bound below 0 says so."""
    x = np.load(DATA)["x"][0].reshape(-1)
    chan = np.repeat(np.array([0.485, 0.456, 0.406]), 32 * 32)
    z = (x - chan) / 0.225
    prop = _vnnlib(tmp_path / "oval.vnnlib", z - 0.01, z + 0.01, 3, 10)
    res = invoke("verify", MODEL, prop, *NORM, "--result-file", tmp_path / "out.txt")
    assert res.exit_code == 2 and "< 0" in res.output and "without the normalisation" in res.output
    assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output
    assert (tmp_path / "out.txt").read_text() == "error\n"


def _bad_npz(tmp_path: Path, x: np.ndarray) -> Path:
    path = tmp_path / "bad.npz"
    np.savez(path, x=x.astype(np.float32), y=np.zeros(len(x), dtype=np.int64))
    return path


BAD = [
    (NORM[:1] + ["0.485,0.456"] + NORM[2:], "the normalisation's mean has 2 values but the model's input (3, 32, 32) has 3 channels"),
    (["--mean", "0.4", "--std", "0.2,0.2"], "std has 2 values but the model's input (3, 32, 32) has 3 channels"),
    (NORM[:3] + ["0.2,0.2"], "mean has 3 values and its std 2"),
    (NORM[:3] + ["0"], "--std: expected numbers > 0"),
    (NORM[:3] + ["-0.2"], "--std: expected numbers > 0"),
    (NORM[:3] + ["nan"], "--std: expected finite numbers"),
    (["--mean", "inf", "--std", "0.2"], "--mean: expected finite numbers"),
    (["--mean", "0.4,abc", "--std", "0.2"], "--mean: expected comma-separated numbers"),
]


@pytest.mark.parametrize("command", ["regions", "attack", "verify"])
@pytest.mark.parametrize("options, message", BAD, ids=["channels", "std-channels", "mean-vs-std", "std-zero",
                                                        "std-negative", "std-nan", "mean-inf", "mean-text"])
def test_bad_normalisation_is_one_line_and_exit_2(tmp_path: Path, command: str, options: list[str],
                                                  message: str) -> None:
    target = [tmp_path / "p.vnnlib"] if command == "verify" else ["--data", DATA]
    if command == "verify":
        _vnnlib(target[0], np.zeros(3072), np.full(3072, 0.01), 3, 10)
    res = invoke(command, MODEL, *target, *options)
    assert res.exit_code == 2, res.output
    assert message in res.output and res.output.startswith("error: ") and len(res.output.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["regions", "attack"])
def test_images_of_the_wrong_shape_are_refused(tmp_path: Path, command: str) -> None:
    bad = _bad_npz(tmp_path, np.zeros((2, 3, 16, 16)))
    res = invoke(command, MODEL, "--data", bad, *NORM)
    assert res.exit_code == 2 and str(bad) in res.output and "(3, 32, 32)" in res.output, res.output


@pytest.mark.parametrize("command, range_hint", [("regions", "--clip"), ("attack", "--low/--high")])
def test_normalised_data_is_refused_as_outside_the_clip_range(tmp_path: Path, command: str, range_hint: str) -> None:
    """Giving already-normalised images with --mean/--std: refused before any work, with the reason."""
    x = np.load(DATA)["x"]
    bad = _bad_npz(tmp_path, (x - 0.45) / 0.225)
    res = invoke(command, MODEL, "--data", bad, *NORM)
    assert res.exit_code == 2 and "outside" in res.output and range_hint in res.output, res.output
    assert "give pixels, not normalised values" in res.output and len(res.output.strip().splitlines()) == 1


def test_checks_file_takes_mean_and_std(tmp_path: Path, folded: Path) -> None:
    """``mean``/``std`` keys: recorded in the nested document's settings; the same robust accuracy
    as the folded copy; bad values are named with the file and key."""
    from nnaudit.checks.runner import run_checks
    from nnaudit.config import load_checks

    body = ('[[check]]\nname = "{name}"\nkind = "attack"\nmodel = "{model}"\ndata = "{data}"\neps = [0.02]\n'
            'attacks = ["fgsm"]\nmin_robust_accuracy = 0.3\n{extra}\n')
    (tmp_path / "nnaudit.toml").write_text(
        "allow_outside_paths = true  # the model and data live outside tmp_path\n" +
        body.format(name="normalised", model=MODEL, data=DATA, extra="mean = [0.485, 0.456, 0.406]\nstd = 0.225")
        + body.format(name="folded", model=folded, data=DATA, extra=""))
    outcomes = run_checks(load_checks(tmp_path / "nnaudit.toml").checks)
    docs = {o.name: o.result for o in outcomes}
    assert [o.status.value for o in outcomes] == ["passed", "passed"], [o.judgement.message for o in outcomes]
    assert docs["normalised"]["settings"]["mean"] == [0.485, 0.456, 0.406] and "mean" not in docs["folded"]["settings"]
    assert [r["robust_accuracy"] for r in docs["normalised"]["results"]] == \
        [r["robust_accuracy"] for r in docs["folded"]["results"]] == [{"worst": pytest.approx(1 / 3), "fgsm": pytest.approx(1 / 3)}]
    (tmp_path / "bad.toml").write_text("allow_outside_paths = true\n" + body.format(name="bad", model=MODEL, data=DATA, extra='mean = "a"\nstd = 0'))
    res = invoke("check", "--config", tmp_path / "bad.toml")
    assert res.exit_code == 2 and "key 'mean'" in res.output and "key 'std'" in res.output and "> 0" in res.output
    (tmp_path / "two.toml").write_text("allow_outside_paths = true\n" + body.format(name="two", model=MODEL, data=DATA, extra="mean = [0.4, 0.5]"))
    res = invoke("check", "--config", tmp_path / "two.toml")
    assert res.exit_code == 2 and "mean has 2 values" in res.output, res.output

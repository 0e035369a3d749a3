"""``--device`` of region safety: the batched hull bounds, the lattice attack and the ReLU-splitting
search on a GPU when one is present.

Without a GPU: the GPU's code path (every image's work inside ``with torch.device(...)``) taken with
the CPU as the device gives the CPU's verdicts, with every tensor read back through ``.cpu()`` (the
``host_reads_marked`` guard); a GPU asked for and missing is exit 2 before any work, from the CLI
and from a checks file; ``auto`` falls back to the CPU and leaves the recorded settings as they were.
The CUDA test (same verdicts as the CPU, counterexamples confirmed) runs in ``bench/gpu_checks.sh``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from nnaudit.cli import cli
from nnaudit.networks import zoo
from nnaudit.verify.regions import api
from nnaudit.verify.regions.api import RegionConfig, check_image
from nnaudit.verify.regions.result import RegionVerdict
from nnaudit.verify.regions.spec import Manipulation
from test_region_relu_split import cifar
from test_verify_device import run_check
from zoo_cache import digits, zoo_net

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
DECIDED = (RegionVerdict.SAFE, RegionVerdict.UNSAFE)


def _cases() -> list[tuple[str, object, object, np.ndarray, object, Manipulation, str, float]]:
    """(name, network, onnxruntime, image, regions, manipulation, method, seconds per region): digits
    nets where every route runs (bounds, attack, enumeration, relu split, Z3, DLV), and two CIFAR-10
    cells the hull bound leaves to the relu split (test_region_relu_split)."""
    x, _ = digits()
    out = []
    for name in ("digits-ffn", "digits-cnn"):
        net, ort = zoo_net(name)
        out.append((name, net, ort, x[3], "2x2", Manipulation(step=0.3, steps=2), "both", 8.0))
    net, ort, images = cifar()
    masks = np.zeros((2, 32, 32), dtype=bool)
    masks[0, 8:16, 24:32] = masks[1, 16:24, 0:8] = True
    out.append(("cifar", net, ort, images[0], masks, Manipulation(step=0.05, steps=2), "exact", 60.0))
    return out


def _verdicts(case: tuple, config: RegionConfig) -> list[tuple[int, str, RegionVerdict]]:
    _, net, ort, x, regions, manip, method, _ = case
    image = check_image(net, x, None, regions, manip, method=method, config=config, ort=ort)
    for r in image.regions:
        if r.verdict is RegionVerdict.UNSAFE:  # confirmed by onnxruntime on the original file
            assert r.counterexample.class_after != image.predicted
    return [(r.id, r.method, r.verdict) for r in image.regions]


@pytest.mark.parametrize("which", range(3))
def test_the_device_context_path_gives_the_cpu_verdicts(which: int, monkeypatch: pytest.MonkeyPatch,
                                                        host_reads_marked: None) -> None:
    """Bounds, lattice attack, enumeration, relu split, Z3 and DLV inside the device context with the
    CPU as the device, every tensor read back through ``.cpu()``: the CPU path's verdicts."""
    case = _cases()[which]
    config = RegionConfig(timeout_per_region=case[-1])
    plain = _verdicts(case, config)
    entered = []

    def on_device(device: str) -> torch.device:
        entered.append(device)
        return torch.device("cpu")

    monkeypatch.setattr(api, "on_device", on_device)
    in_context = _verdicts(case, config)
    assert entered == ["cpu"]
    assert [v[:2] for v in in_context] == [v[:2] for v in plain]
    for (_, _, a), (_, _, b) in zip(plain, in_context):
        if a in DECIDED and b in DECIDED:
            assert a == b
    assert any(v in DECIDED for *_, v in in_context)


def _regions(tmp_path: Path, *extra: str) -> tuple[int, str, Path]:
    out = tmp_path / "regions.json"
    res = CliRunner().invoke(cli, ["regions", str(zoo.path("digits-ffn")), "--data", "digits", "--limit", "2",
                                   "--grid", "2x2", "--step", "0.1", "--steps", "1", "--json", str(out), *extra])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    return res.exit_code, res.output, out


@no_cuda
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cli_device_cuda_without_gpu_exits_2_before_any_work(tmp_path: Path, device: str) -> None:
    code, out, doc = _regions(tmp_path, "--device", device)
    assert code == 2, out
    assert f"device: '{device}' requested but CUDA is not available" in out and "Traceback" not in out
    assert not doc.exists()


def test_cli_misspelled_device_exits_2(tmp_path: Path) -> None:
    code, out, _ = _regions(tmp_path, "--device", "gpu")
    assert code == 2 and "expected cpu, cuda, cuda:N or auto, got 'gpu'" in out, out


def test_cli_device_auto_names_the_device_and_keeps_cpu_settings(tmp_path: Path) -> None:
    code, out, path = _regions(tmp_path, "--device", "auto")
    assert code in (0, 1, 3), out
    doc = json.loads(path.read_text())
    assert [len(im["regions"]) for im in doc["images"]] == [0, 4]    # image 0 is misclassified
    gpu = torch.cuda.is_available()
    assert doc["environment"]["device"] == ("cuda" if gpu else "cpu")
    assert ("device" in doc["settings"]) == gpu    # the CPU's settings are those of files written before
    again = CliRunner().invoke(cli, ["regions", str(zoo.path("digits-ffn")), "--data", "digits", "--limit", "2",
                                     "--grid", "2x2", "--step", "0.1", "--steps", "1", "--json", str(path),
                                     "--resume"])
    assert again.exit_code == code, again.output   # resumes: same model and settings


CHECK = """
[[check]]
name = "digits-regions"
kind = "regions"
model = "digits-ffn"
data = "digits"
limit = 2
grid = [2, 2]
step = 0.1
steps = 1
timeout = 10
max_unsafe_regions = 4
device = "{device}"
"""


@no_cuda
def test_check_file_regions_device_cuda_without_gpu_names_the_key(tmp_path: Path) -> None:
    code, out, _ = run_check(tmp_path, "cuda", CHECK)
    assert code == 2, out
    assert "nnaudit.toml" in out and "'device'" in out and "CUDA is not available" in out


def test_check_file_regions_device_auto_runs_and_is_recorded(tmp_path: Path) -> None:
    code, out, doc_path = run_check(tmp_path, "auto", CHECK)
    assert code in (0, 3), out
    (entry,) = json.loads(doc_path.read_text())["checks"]
    assert entry["result"]["environment"]["device"] == ("cuda" if torch.cuda.is_available() else "cpu")


@cuda
@pytest.mark.parametrize("which", range(3))
def test_cuda_regions_same_verdicts_as_the_cpu(which: int) -> None:
    case = _cases()[which]
    on_cpu = _verdicts(case, RegionConfig(timeout_per_region=case[-1]))
    on_gpu = _verdicts(case, RegionConfig(timeout_per_region=case[-1], device="cuda"))
    assert [v[:2] for v in on_gpu] == [v[:2] for v in on_cpu]
    for (_, _, a), (_, _, b) in zip(on_cpu, on_gpu):
        if a in DECIDED and b in DECIDED:
            assert a == b

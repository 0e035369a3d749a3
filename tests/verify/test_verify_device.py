"""``--device`` of the verifier: the bound computations on a GPU when one is present.

The CPU tests run everywhere: the device is checked before any work (a GPU asked for and
missing is a usage error, never a CUDA traceback), ``auto`` falls back to the CPU, and the
torch route's modules turn tensors into NumPy arrays through ``.cpu()`` (CI has no GPU to
catch a bare ``.numpy()`` on a CUDA tensor).  The CUDA tests run where torch sees a GPU
(``bench/gpu_checks.sh``): the same verdicts as on the CPU, counterexamples confirmed by
onnxruntime, "holds" never contradicted by sampling.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from nnaudit.cli import cli
from nnaudit.errors import ConfigError
from nnaudit.networks.devices import resolve_device
from nnaudit.verify.bab import BabConfig
from nnaudit.verify.dense_bab import Route
from nnaudit.verify.engine import VerifyConfig, verify_property
from nnaudit.verify.results import Verdict
from nnaudit.verify.vnnlib_write import write_vnnlib

from verify_nets import cnn_case, mlp, residual, sampled_violation

ROOT = Path(__file__).resolve().parents[2]
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")


def test_resolve_device_names() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    for bad in ("tpu", "gpu0", "", "meta"):
        with pytest.raises(ConfigError, match="expected cpu, cuda, cuda:N or auto"):
            resolve_device(bad)


@no_cuda
def test_missing_gpu_is_a_config_error_before_any_work(tmp_path: Path) -> None:
    path, _, _, prop = cnn_case(tmp_path, 0, 0.05)
    for name in ("cuda", "cuda:0"):
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device(name)
        with pytest.raises(ConfigError, match="CUDA is not available"):
            verify_property(path, prop, config=VerifyConfig(timeout_s=5, device=name))


@no_cuda
def test_cli_device_cuda_without_gpu_exits_2(tmp_path: Path) -> None:
    path, _, _, prop = cnn_case(tmp_path, 1, 0.05)
    spec = write_vnnlib(prop, tmp_path / "p.vnnlib")
    out = CliRunner().invoke(cli, ["verify", str(path), str(spec), "--device", "cuda", "--timeout", "10"])
    assert out.exit_code == 2, out.output
    assert "cuda" in out.output and "CUDA is not available" in out.output
    assert "Traceback" not in out.output


def test_cli_device_auto_runs_and_names_the_device(tmp_path: Path) -> None:
    """``auto``: the GPU where torch sees one, else the CPU; the JSON names the device that ran."""
    path, x, label, prop = cnn_case(tmp_path, 2, 0.02)
    spec = write_vnnlib(prop, tmp_path / "p.vnnlib")
    doc_path = tmp_path / "run.json"
    out = CliRunner().invoke(cli, ["verify", str(path), str(spec), "--device", "auto", "--timeout", "120",
                                    "--workers", "1", "--no-progress", "-o", str(doc_path)])
    assert out.exit_code in (0, 1), out.output
    doc = json.loads(doc_path.read_text())
    assert doc["environment"]["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    if out.exit_code == 0:  # holds: no sampled point of the box is misclassified
        assert not sampled_violation(path, x, 0.02, label, 2)


@pytest.mark.parametrize("seed, eps", [(9, 0.2), (10, 0.15)])
def test_the_device_context_path_runs_on_the_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int,
                                                 eps: float) -> None:
    """The GPU's code path (the run inside ``with torch.device(...)``, one process) taken with the CPU
    as the device: same verdict as the plain CPU path, and the search really ran in one process."""
    from nnaudit.verify import engine

    path, x, label, prop = cnn_case(tmp_path, seed, eps)
    cfg = VerifyConfig(timeout_s=120, route=Route.TORCH, bab=BabConfig(workers=2))
    plain = verify_property(path, prop, config=cfg)
    seen = []
    real = engine._search_cases

    def spy(low: object, net: object, ort: object, spec: object, bab: BabConfig, *rest: object) -> object:
        seen.append((bab.workers, torch.get_default_device()))
        return real(low, net, ort, spec, bab, *rest)

    monkeypatch.setattr(engine, "_device", lambda config: torch.device("cpu"))
    monkeypatch.setattr(engine, "_search_cases", spy)
    in_context = verify_property(path, prop, config=cfg)
    assert in_context.verdict == plain.verdict and plain.verdict in (Verdict.HOLDS, Verdict.VIOLATED)
    assert seen in ([], [(1, torch.device("cpu"))])  # [] when falsification decided first
    if plain.verdict is Verdict.HOLDS:
        assert seen and not sampled_violation(path, x, eps, label, seed)


def test_gpu_out_of_memory_ends_as_unknown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CUDA out-of-memory error in the search (its memory is not the --max-memory budget) is an
    unknown verdict that says so, not a traceback."""
    from nnaudit.verify import engine

    def exhausted(*args: object, **kwargs: object) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB\nmore detail")

    monkeypatch.setattr(engine, "_search_cases", exhausted)
    path, _, _, prop = cnn_case(tmp_path, 5, 0.2)
    res = verify_property(path, prop, config=VerifyConfig(timeout_s=10, route=Route.TORCH, bab=BabConfig(workers=1)))
    assert res.verdict is Verdict.UNKNOWN
    assert res.message == "GPU memory: CUDA out of memory. Tried to allocate 20.00 GiB"


def _bare_numpy_calls(path: Path) -> list[int]:
    """Lines of ``path`` calling ``.numpy()`` on something that is not ``X.cpu()``."""
    bad = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "numpy":
            recv = node.func.value
            on_cpu = (isinstance(recv, ast.Call) and isinstance(recv.func, ast.Attribute)
                      and recv.func.attr == "cpu")
            if not on_cpu:
                bad.append(node.lineno)
    return bad


def test_torch_route_reads_tensors_back_through_cpu() -> None:
    """The modules the torch route and region safety run on a GPU never call ``.numpy()`` on a tensor that may
    live there (it fails on CUDA tensors); ``.cpu()`` first costs nothing on the CPU."""
    files = [f for sub in ("", "bab", "regions") for f in sorted((ROOT / "verify" / sub).glob("*.py"))]
    assert len(files) > 35
    found = {str(f.relative_to(ROOT)): lines for f in files if (lines := _bare_numpy_calls(f))}
    assert found == {}


def _dense_net(tmp: Path, kind: str) -> Path:
    """A small fully connected net: ``relu``, ``sigmoid`` or ``residual`` (an Add of two ReLU paths)."""
    if kind == "relu":
        return mlp(tmp, 3, (5, 16, 16, 3))
    return mlp(tmp, 4, (5, 12, 3), "Sigmoid") if kind == "sigmoid" else residual(tmp, 5)


@pytest.mark.parametrize("kind", ["conv", "conv-structured", "relu", "sigmoid", "residual"])
def test_torch_route_reads_through_cpu_at_run_time(tmp_path: Path, kind: str, host_reads_marked: None) -> None:
    """Whole runs of the torch route (falsification, bounds, branching, Z3 leaves) with the guard on."""
    from nnaudit.networks import load
    from nnaudit.verify.spec import robustness_property

    cfg = dict(route=Route.TORCH, bab=BabConfig(workers=1))
    if kind == "conv-structured":
        cfg["structured_bytes"] = 0
    if kind.startswith("conv"):  # proved after a few splits, falsified (60 s: ample on a busy machine),
        # and a search cut off by its deadline (5 s)
        cases = [cnn_case(tmp_path, seed, eps)[::3] + (limit,) for seed, eps, limit in ((9, 0.2, 60), (10, 0.15, 60),
                                                                                         (5, 0.2, 5))]
    else:
        path = _dense_net(tmp_path, kind)
        net = load(path)
        x = np.random.default_rng(3).uniform(0, 1, net.input_size)
        label = int(net.predict(x.reshape((1,) + net.input_shape))[0])
        cases = [(path, robustness_property(x - eps, x + eps, label, net.output_size), 60) for eps in (0.01, 0.05, 0.3)]
    verdicts = [verify_property(path, prop, config=VerifyConfig(timeout_s=limit, **cfg)).verdict
                for path, prop, limit in cases]
    assert set(verdicts) & {Verdict.HOLDS, Verdict.VIOLATED}


# -- on a GPU ---------------------------------------------------------------------------------

def _both(path: Path, prop: object, **cfg: object) -> tuple[object, object]:
    base = dict(timeout_s=60, route=Route.TORCH, bab=BabConfig(workers=1))
    base.update(cfg)
    on_cpu = verify_property(path, prop, config=VerifyConfig(**base))
    on_gpu = verify_property(path, prop, config=VerifyConfig(**base, device="cuda"))
    return on_cpu, on_gpu


def _agree(on_cpu: object, on_gpu: object) -> None:
    decided = (Verdict.HOLDS, Verdict.VIOLATED)
    if on_cpu.verdict in decided and on_gpu.verdict in decided:
        assert on_cpu.verdict == on_gpu.verdict
    if on_gpu.verdict is Verdict.VIOLATED:
        assert on_gpu.counterexample is not None  # confirmed by onnxruntime inside the verifier


@cuda
@pytest.mark.parametrize("seed", range(6))
def test_cuda_conv_net_same_verdicts(tmp_path: Path, seed: int) -> None:
    eps = (0.01, 0.03, 0.08)[seed % 3]
    path, x, label, prop = cnn_case(tmp_path, seed, eps)
    on_cpu, on_gpu = _both(path, prop)
    _agree(on_cpu, on_gpu)
    if on_gpu.verdict is Verdict.HOLDS:
        assert not sampled_violation(path, x, eps, label, seed)


@cuda
@pytest.mark.parametrize("seed", range(3))
def test_cuda_structured_convolutions(tmp_path: Path, seed: int) -> None:
    """Every convolution kept as a convolution (no dense lowering): conv/transposed conv on the GPU."""
    path, x, label, prop = cnn_case(tmp_path, seed + 10, 0.03)
    on_cpu, on_gpu = _both(path, prop, structured_bytes=0)
    _agree(on_cpu, on_gpu)
    if on_gpu.verdict is Verdict.HOLDS:
        assert not sampled_violation(path, x, 0.03, label, seed)


@cuda
@pytest.mark.parametrize("make", ["relu", "sigmoid", "residual"])
def test_cuda_dense_kinds(tmp_path: Path, make: str) -> None:
    from nnaudit.networks import load
    from nnaudit.verify.spec import robustness_property

    path = _dense_net(tmp_path, make)
    net = load(path)
    rng = np.random.default_rng(7)
    for eps in (0.02, 0.2):
        x = rng.uniform(0, 1, net.input_size)
        label = int(net.predict(x.reshape((1,) + net.input_shape))[0])
        prop = robustness_property(x - eps, x + eps, label, net.output_size)
        on_cpu, on_gpu = _both(path, prop)
        _agree(on_cpu, on_gpu)
        if on_gpu.verdict is Verdict.HOLDS:
            assert not sampled_violation(path, x, eps, label, 11)


CHECK = """
[[check]]
name = "moons-holds"
kind = "verify"
model = "moons-ffn"
property = "moons_sample0.vnnlib"
timeout = 60
expect = "holds"
device = "{device}"
"""


def run_check(folder: Path, device: str, toml: str = CHECK) -> tuple[int, str, Path]:
    """``nnaudit check`` on ``toml`` (its ``{device}`` filled in) in ``folder``: exit code, output, JSON path."""
    examples = ROOT / "examples" / "ci" / "properties"
    (folder / "moons_sample0.vnnlib").write_text((examples / "moons_sample0.vnnlib").read_text())
    (folder / "nnaudit.toml").write_text(toml.format(device=device))
    out = folder / "out.json"
    res = CliRunner().invoke(cli, ["check", "--config", str(folder / "nnaudit.toml"), "--json", str(out)])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    return res.exit_code, res.output, out


@no_cuda
def test_check_file_device_cuda_without_gpu_names_the_key(tmp_path: Path) -> None:
    code, out, _ = run_check(tmp_path, "cuda")
    assert code == 2, out
    assert "nnaudit.toml" in out and "'device'" in out and "CUDA is not available" in out


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_check_file_device_runs_and_is_recorded(tmp_path: Path, device: str) -> None:
    code, out, doc_path = run_check(tmp_path, device)
    assert code == 0, out
    (entry,) = json.loads(doc_path.read_text())["checks"]
    expected = "cuda" if device == "auto" and torch.cuda.is_available() else "cpu"
    assert entry["result"]["environment"]["device"] == expected

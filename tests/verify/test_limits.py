"""Memory budget and deadlines of ``nnaudit verify`` (issues #27 and #23), on real ONNX files run
as the console script in a subprocess (the process's own wall time and exit are what is measured).

Wall-clock assertions are generous (the suite must stay green on a busy machine); the measured
overshoot figures live in ``bench/deadlines.py``."""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import conv_nets
from nnaudit.verify.limits import GIB, Limits, OutOfMemoryBudget, OutOfTime, default_max_memory, rss_bytes

#: virtual memory the subprocess may map: torch and onnxruntime reserve some 2 GiB of address
#: space at start; a run that kept the wide conv net dense took 24 GiB resident (issue #27)
AS_LIMIT = 4 * GIB


def _verify(args: list[str], timeout: float) -> tuple[subprocess.CompletedProcess, float]:
    """``nnaudit verify ARGS`` as a console-script process under :data:`AS_LIMIT`; (result, wall seconds)."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))

    start = time.monotonic()
    res = subprocess.run([sys.executable, "-c", "from nnaudit.cli import main; main()", "verify", *args],
                         capture_output=True, text=True, timeout=timeout, preexec_fn=limit)
    return res, time.monotonic() - start


def _net_and_property(tmp_path: Path, pool: str, eps: float) -> tuple[Path, Path]:
    net = conv_nets.mnist_conv(tmp_path, 0, pool)
    x = np.random.default_rng(1).random((1, 1, 28, 28)).astype(np.float32)
    label = int(ort.InferenceSession(str(net)).run(None, {"x": x})[0].argmax())
    return net, conv_nets.robustness_vnnlib(tmp_path / f"{pool}_{eps}.vnnlib", x, eps, label)


def _clean(res: subprocess.CompletedProcess) -> None:
    """An answer, never a traceback nor a kill."""
    assert res.returncode in (0, 1, 3), (res.returncode, res.stdout, res.stderr[-2000:])
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout
    assert res.stdout.split()[0] in ("holds", "violated", "unknown", "timeout"), res.stdout


@pytest.mark.parametrize("pool", ["MaxPool", "AveragePool"])
def test_the_wide_conv_net_of_issue_27_runs_within_4_gib(tmp_path: Path, pool: str) -> None:
    """One 2x2 conv of 32 maps on 1x28x28 (23,328 ReLUs), a 4x4 pool, one dense layer, eps 0.004:
    it took 24 GiB and the OOM killer; under a 4 GiB address-space limit it must answer."""
    net, prop = _net_and_property(tmp_path, pool, 0.004)
    res, _ = _verify([str(net), str(prop), "--timeout", "20", "--workers", "1"], timeout=300)
    _clean(res)


def test_a_budget_below_what_the_run_holds_ends_unknown_memory_budget(tmp_path: Path) -> None:
    net, prop = _net_and_property(tmp_path, "MaxPool", 0.004)
    res, _ = _verify([str(net), str(prop), "--timeout", "60", "--workers", "1", "--max-memory", "100M"], timeout=300)
    assert res.returncode == 3, (res.stdout, res.stderr[-2000:])
    assert res.stdout.startswith("unknown") and "memory budget" in res.stdout, res.stdout


def test_a_bad_memory_size_is_a_usage_error(tmp_path: Path) -> None:
    net, prop = _net_and_property(tmp_path, "MaxPool", 0.004)
    for bad in ("lots", "1K", "nan"):
        res, _ = _verify([str(net), str(prop), "--max-memory", bad], timeout=120)
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_search_that_cannot_finish_ends_near_its_deadline(tmp_path: Path, workers: str) -> None:
    """eps 0.05 on the wide conv net: branch and bound cannot finish in 8 s.  The process (start-up,
    falsification, search, workers and exit included) must end by the deadline plus a margin no busy
    machine misses (bench/deadlines.py records the real overshoot)."""
    net, prop = _net_and_property(tmp_path, "MaxPool", 0.05)
    res, wall = _verify([str(net), str(prop), "--timeout", "8", "--workers", workers], timeout=300)
    _clean(res)
    assert wall < 8 + 15, (wall, res.stdout)


def test_limits_raise_before_the_budget_or_past_the_deadline() -> None:
    assert 0 < default_max_memory() <= 8 * GIB
    held = rss_bytes()
    assert held > 0
    lim = Limits(deadline=time.monotonic() + 60, max_bytes=held + (100 << 20))
    lim.need(50 << 20, "small")  # fits
    with pytest.raises(OutOfMemoryBudget, match="over the memory budget"):
        lim.need(200 << 20, "a large tensor")
    lim.check_time()
    with pytest.raises(OutOfTime):
        Limits(deadline=time.monotonic() - 1).check_time()
    # rows per tensor: at most an eighth of the budget, at least one row
    assert Limits(max_bytes=8 << 20).rows_fitting(1 << 10, 10_000) == 1024
    assert Limits(max_bytes=8 << 20).rows_fitting(1 << 30, 10) == 1
    assert Limits().rows_fitting(1 << 30, 10) == 10
    with pytest.raises(ValueError):
        Limits(max_bytes=0)

"""A real Dask cluster on 127.0.0.1 for the campaign tests: one scheduler and two single-thread workers.

Every process is started under ``timeout -s KILL`` (a hard limit: nothing
outlives a hung test run) and killed in teardown; the scheduler also stops
itself when idle.  Ports are chosen by the OS (``--port 0``) and read back
from the scheduler file.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ACAS = ROOT / "tests" / "data" / "vnncomp" / "acasxu"
DASK = Path(sys.executable).parent / "dask"
HARD_LIMIT_S = 300          # every cluster process is SIGKILLed after this, whatever happens
#: small ACAS Xu instances (well under a second each), with their expected answers
SMALL = [("1_7", 3, "sat"), ("2_4", 3, "unsat"), ("4_1", 4, "unsat"), ("5_7", 3, "unsat"), ("1_9", 4, "sat"),
         ("3_5", 2, "sat"), ("4_1", 2, "sat"), ("5_7", 4, "unsat")]


@dataclass
class Cluster:
    """A running scheduler and its workers."""

    address: str
    scheduler: subprocess.Popen
    workers: list[subprocess.Popen] = field(default_factory=list)

    def kill_busy_worker(self) -> list[str]:
        """SIGKILL a worker that is running a task now; returns the keys it was processing."""
        from distributed import Client

        with Client(self.address, timeout=30) as client:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                busy = {addr: keys for addr, keys in client.processing().items() if keys}
                if busy:
                    addr, keys = next(iter(busy.items()))
                    os.kill(client.run(os.getpid, workers=[addr])[addr], signal.SIGKILL)
                    return list(keys)
                time.sleep(0.05)
        raise AssertionError("no worker was busy within 60 s")


def _spawn(args: list[str], log: Path) -> subprocess.Popen:
    """``args`` under a hard time limit, in its own process group, output to ``log``."""
    timeout = shutil.which("timeout")
    cmd = [timeout, "-s", "KILL", str(HARD_LIMIT_S), *args] if timeout else args
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """``dask scheduler`` and two ``dask worker --nthreads 1`` on 127.0.0.1, killed at the end of the session."""
    tmp = tmp_path_factory.mktemp("dask")
    info = tmp / "scheduler.json"
    scheduler = _spawn([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                        "--scheduler-file", str(info), "--idle-timeout", "240s"], tmp / "scheduler.log")
    procs = [scheduler]
    try:
        deadline = time.monotonic() + 60
        while not info.exists() and time.monotonic() < deadline and scheduler.poll() is None:
            time.sleep(0.1)
        assert info.exists(), (tmp / "scheduler.log").read_text()
        address = json.loads(info.read_text())["address"]
        workers = [_spawn([str(DASK), "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
                           "--host", "127.0.0.1", "--death-timeout", "30", "--name", f"w{i}"], tmp / f"worker{i}.log")
                   for i in range(2)]
        procs += workers
        _wait_for_workers(address, 2)
        yield Cluster(address, scheduler, workers)
    finally:
        for proc in reversed(procs):
            _stop(proc)


def _wait_for_workers(address: str, n: int) -> None:
    from distributed import Client

    with Client(address, timeout=30) as client:
        client.wait_for_workers(n, timeout=60)


def suite(folder: Path, rows: list[tuple[str, int, str]] = SMALL, timeout: int = 30) -> Path:
    """An instances.csv over copies of the ACAS Xu files in ``folder``; returns its path."""
    (folder / "onnx").mkdir(parents=True, exist_ok=True)
    (folder / "vnnlib").mkdir(exist_ok=True)
    lines = []
    for net, prop, _ in rows:
        onnx, vnnlib = f"onnx/ACASXU_run2a_{net}_batch_2000.onnx", f"vnnlib/prop_{prop}.vnnlib"
        for name in (onnx, vnnlib):
            if not (folder / name).exists():
                shutil.copy(ACAS / name, folder / name)
        lines.append(f"{onnx},{vnnlib},{timeout}")
    (folder / "instances.csv").write_text("\n".join(lines) + "\n")
    return folder / "instances.csv"

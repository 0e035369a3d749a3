"""A VNN-COMP-style suite as a campaign: ``instances.csv`` in, the competition's results CSV out.

``instances.csv`` rows are ``onnx,vnnlib,timeout`` with paths relative to
the CSV (VNN-COMP's benchmark folders).  Each instance is decided by the
complete verifier through :func:`nnaudit.runs.verify.run_verify` (so a
``violated`` carries a counterexample onnxruntime confirmed on the original
file) and stored under the key ``onnx,vnnlib``.  The results CSV has the
columns of VNN-COMP's ``run_single_instance.sh``: benchmark, onnx, vnnlib,
prepare time, result (``unsat`` = holds, ``sat`` = violated, ``timeout``,
``unknown``, ``error``), run time.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnaudit.campaign.jobs import Item, Job, JobKind, ModelRef
from nnaudit.errors import DataError
from nnaudit.reports.store import JobStatus, ResultStore, StoredJob


@dataclass(frozen=True)
class Instance:
    """One row of instances.csv: paths as written (relative to the CSV) and absolute, and its timeout."""

    onnx: str
    vnnlib: str
    timeout: float
    folder: Path

    @property
    def key(self) -> str:
        return f"{self.onnx},{self.vnnlib}"


@dataclass(frozen=True)
class SuiteParams:
    """Settings of a suite run, the same for every instance (they make the store's settings hash)."""

    timeout: float | None = None   # seconds per instance (None: the CSV's)
    seed: int = 0                  # seed of the falsifier
    device: str = "cpu"            # where each worker runs the bounds: cpu, cuda, cuda:N or auto (on the worker)

    def settings(self) -> dict[str, Any]:
        """The store's settings; the device only when not the CPU, so stores written before it resume."""
        out: dict[str, Any] = {"kind": "verify-suite", "timeout": self.timeout if self.timeout is not None else "csv",
                               "seed": self.seed}
        return out if self.device == "cpu" else {**out, "device": self.device}


def read_instances(path: str | Path) -> list[Instance]:
    """The rows of ``path``; DataError naming the file and line for a bad row or a missing file."""
    path = Path(path)
    try:
        lines = list(csv.reader(path.read_text().splitlines()))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read the instances CSV ({exc})") from None
    out = []
    for n, row in enumerate(lines, 1):
        if not row or not "".join(row).strip() or row[0].strip().lower() == "onnx":
            continue
        if len(row) != 3:
            raise DataError(f"{path}:{n}: expected 3 columns onnx,vnnlib,timeout, got {len(row)}: {','.join(row)}")
        onnx, vnnlib, timeout = (c.strip() for c in row)
        try:
            seconds = float(timeout)
        except ValueError:
            seconds = math.nan
        if not math.isfinite(seconds) or seconds <= 0:
            raise DataError(f"{path}:{n}: timeout must be a number of seconds > 0, got {timeout!r}")
        for name in (onnx, vnnlib):
            if not (path.parent / name).is_file():
                raise DataError(f"{path}:{n}: {name}: no such file (paths are relative to {path.parent})")
        out.append(Instance(onnx, vnnlib, seconds, path.parent))
    if not out:
        raise DataError(f"{path}: no instances (expected rows onnx,vnnlib,timeout)")
    return out


def suite_jobs(instances: Sequence[Instance], params: SuiteParams, digest: str, *, chunk: int = 1) -> list[Job]:
    """Jobs of up to ``chunk`` instances of one model each, in CSV order of their first instance."""
    from nnaudit.networks.ir import file_sha256

    by_model: dict[str, list[Instance]] = {}
    for inst in instances:
        by_model.setdefault(inst.onnx, []).append(inst)
    jobs = []
    for onnx, group in by_model.items():
        path = group[0].folder / onnx
        ref = ModelRef(str(path.resolve()), file_sha256(path))
        for i in range(0, len(group), chunk):
            items = tuple(Item(inst.key, (str((inst.folder / inst.vnnlib).resolve()), inst.timeout))
                          for inst in group[i:i + chunk])
            jobs.append(Job(JobKind.VERIFY, ref, digest, items, params))
    return jobs


def run_instance(network: Any, item: Item, job: Job) -> dict[str, Any]:
    """Decide one instance on a worker: the verifier's instance record, with the timeout it had."""
    from dataclasses import replace

    from nnaudit.runs.verify import run_verify
    from nnaudit.verify.dense_bab import Route
    from nnaudit.verify.engine import VerifyConfig

    vnnlib, csv_timeout = item.spec
    params: SuiteParams = job.params
    timeout = params.timeout if params.timeout is not None else csv_timeout
    # small ReLU networks: the dense route first; a GPU the worker lacks is a ConfigError (an error row)
    cfg = VerifyConfig(timeout_s=timeout, route=Route.AUTO, device=params.device)
    cfg = replace(cfg, falsify=replace(cfg.falsify, seed=params.seed), bab=replace(cfg.bab, workers=1))
    start = time.perf_counter()
    (res,), _ = run_verify(network, [vnnlib], cfg)
    return {**res.to_dict(), "timeout_s": timeout, "run_time_s": round(time.perf_counter() - start, 4)}


def vnncomp_word(row: StoredJob | None) -> str:
    """The competition's result word for a stored row (None: not run)."""
    if row is None or row.status is JobStatus.ERROR or row.result is None:
        return "error" if row is not None else "missing"
    from nnaudit.verify.results import Verdict

    return Verdict(row.result["verdict"]).vnncomp


def write_results(path: str | Path, benchmark: str, instances: Sequence[Instance], store: ResultStore,
                  shas: dict[str, str], digest: str) -> dict[str, int]:
    """Write the results CSV (VNN-COMP columns, CSV order) from the store; returns the count per result word."""
    counts: dict[str, int] = {}
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh)
        for inst in instances:
            row = store.get(shas[inst.onnx], digest, inst.key)
            word = vnncomp_word(row)
            counts[word] = counts.get(word, 0) + 1
            run_time = (row.result or {}).get("run_time_s", row.elapsed_s) if row is not None else None
            out.writerow([benchmark, inst.onnx, inst.vnnlib, 0.0, word,
                          "" if run_time is None else f"{float(run_time):.4f}"])
    return counts

"""nnaudit's pytest plugin (registered through the ``pytest11`` entry point).

Only hooks live here, and they import nothing heavy until an nnaudit option,
marker or checks file is actually in use, so a test session that does not use
nnaudit pays nothing for having it installed.

- **Checks files**: ``nnaudit.toml`` (or a ``pyproject.toml`` with
  ``[tool.nnaudit]``) in a collected folder becomes one test item per check,
  named after it; a failure states the requirement, the measured value and
  the worst counterexample; an inconclusive check is skipped with its reason
  (failed with ``unknown_is_failure = true``).
- **Fixture** ``nnaudit``: ``.attack``, ``.regions``, ``.verify`` and
  ``.assert_robust`` (:class:`nnaudit.checks.fixture.Nnaudit`); marker
  ``@pytest.mark.nnaudit(device=..., timeout=..., seed=...)`` sets its defaults.
- **Options** (group ``nnaudit``): ``--nnaudit-report=PATH`` (one HTML report
  of every check and fixture call), ``--nnaudit-json=PATH``,
  ``--nnaudit-device``, ``--nnaudit-timeout``.  Under pytest-xdist the
  workers send their results to the controller, which writes the files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

_RECORDER = pytest.StashKey[Any]()
_CACHE = pytest.StashKey[Any]()  # the session's RunCache: checks of one model load it once
_RESULT_KEY = "nnaudit_entries"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("nnaudit", "nnaudit robustness checks")
    group.addoption("--nnaudit-report", metavar="PATH", default=None,
                    help="write one HTML report of every nnaudit check and fixture call of the session")
    group.addoption("--nnaudit-json", metavar="PATH", default=None,
                    help="write the session's 'check' result document (JSON) here")
    group.addoption("--nnaudit-device", metavar="DEVICE", default=None,
                    help="device for nnaudit checks and fixture calls: cpu, cuda, cuda:N, auto (default: cpu)")
    group.addoption("--nnaudit-timeout", metavar="SECONDS", type=float, default=None,
                    help="timeout per verification property / region for nnaudit checks and fixture calls")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "nnaudit(device=None, timeout=None, seed=None): "
                                       "settings of the nnaudit fixture in this test; set on nnaudit.toml checks")
    config.stash[_RECORDER] = None
    config.pluginmanager.register(_SessionHooks(config), "nnaudit-session")


def _recorder(config: pytest.Config) -> Any:
    """The session's recorder, created (and its module imported) on first use."""
    if config.stash.get(_RECORDER, None) is None:
        from nnaudit.checks.session import SessionRecorder

        config.stash[_RECORDER] = SessionRecorder()
    return config.stash[_RECORDER]


def _is_checks_file(path: Path) -> bool:
    if path.name == "nnaudit.toml":
        return True
    if path.name != "pyproject.toml":
        return False
    try:
        return "[tool.nnaudit" in path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if _is_checks_file(file_path):
        return NnauditChecksFile.from_parent(parent, path=file_path)
    return None


class NnauditChecksFile(pytest.File):
    """A checks file: one item per check; a bad file is a collection error naming file and key."""

    def collect(self) -> Any:
        from nnaudit.config import load_checks
        from nnaudit.errors import ConfigError

        try:
            checks = load_checks(self.path).checks
        except ConfigError as exc:
            raise self.CollectError(f"nnaudit checks file {exc}") from None
        starts = _table_lines(self.path)
        for i, check in enumerate(checks):
            line = starts[i] if i < len(starts) else 0
            yield NnauditCheckItem.from_parent(self, name=check.name, check=check, line=line)


def _table_lines(path: Path) -> list[int]:
    """0-based line numbers of the ``[[check]]`` (or ``[[tool.nnaudit.check]]``) headers."""
    import re

    header = re.compile(r"^\s*\[\[\s*(tool\.nnaudit\.)?check\s*\]\]")
    return [n for n, text in enumerate(path.read_text(encoding="utf-8").splitlines()) if header.match(text)]


class CheckNotMet(Exception):
    """Raised by a check item; carries the outcome message."""


class NnauditCheckItem(pytest.Item):
    """One check of a checks file."""

    def __init__(self, *, check: Any, line: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.check = check
        self.line = line
        self.add_marker(pytest.mark.nnaudit(kind=check.kind))

    def runtest(self) -> None:
        from nnaudit.checks.adapters import RunSettings
        from nnaudit.checks.outcome import Status
        from nnaudit.checks.runner import run_check

        opts = self.config.option
        settings = RunSettings(device=opts.nnaudit_device, timeout=opts.nnaudit_timeout,
                               command=f"pytest {self.nodeid}")
        if self.config.stash.get(_CACHE, None) is None:
            from nnaudit.checks.warm import RunCache

            self.config.stash[_CACHE] = RunCache()
        outcome = run_check(self.check, settings, cache=self.config.stash[_CACHE])
        _recorder(self.config).add_check(outcome.to_dict())
        if outcome.status is Status.INCONCLUSIVE:
            reason = f"nnaudit check {self.name} inconclusive: {outcome.judgement.message}"
            try:  # report the skip at the check's line in the checks file, not in this plugin
                raise pytest.skip.Exception(reason, _use_item_location=True)
            except TypeError:  # pragma: no cover - a pytest without that keyword
                pytest.skip(reason)
        if outcome.status is not Status.PASSED:
            raise CheckNotMet(f"nnaudit {self.check.kind} check {self.name!r} {outcome.status.value} "
                              f"({self.check.source}):\n{outcome.judgement.message}")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, CheckNotMet):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.line, f"nnaudit {self.check.kind} check {self.name}"


@pytest.fixture
def nnaudit(request: pytest.FixtureRequest) -> Any:
    """Run nnaudit attacks, region checks and verification in a test and assert on them:
    ``nnaudit.attack(model, data, eps=...)``, ``.regions(...)``, ``.verify(model, prop)``,
    ``.assert_robust(result, min_robust_accuracy=...)``; see :class:`nnaudit.checks.fixture.Nnaudit`."""
    from nnaudit.checks.fixture import Nnaudit

    opts = request.config.option
    marker = request.node.get_closest_marker("nnaudit")
    kw = dict(marker.kwargs) if marker else {}
    return Nnaudit(_recorder(request.config), request.node.nodeid, request.path.parent,
                   device=kw.get("device") or opts.nnaudit_device or "cpu",
                   timeout=kw.get("timeout") or opts.nnaudit_timeout, seed=int(kw.get("seed", 0)))


class _SessionHooks:
    """Per-session hooks (registered in ``pytest_configure``, so nested pytester
    sessions keep their own state): test outcomes to fixture entries, xdist merge,
    writing the files, the summary line."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.written: list[Path] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        rec = self.config.stash.get(_RECORDER, None)
        if rec is not None and (report.when == "call" or (report.when == "setup" and report.outcome != "passed")):
            rec.test_finished(report.nodeid, report.outcome)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """pytest-xdist controller: merge a finished worker's entries."""
        text = getattr(node, "workeroutput", {}).get(_RESULT_KEY)
        if text:
            _recorder(self.config).merge(text)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        config = self.config
        rec = config.stash.get(_RECORDER, None)
        if hasattr(config, "workerinput"):  # xdist worker: hand the entries to the controller
            if rec is not None:
                config.workeroutput[_RESULT_KEY] = rec.dumps()  # type: ignore[attr-defined]
            return
        opts = config.option
        if not (opts.nnaudit_report or opts.nnaudit_json):
            return
        settings = {"runner": "pytest", "device": opts.nnaudit_device, "timeout": opts.nnaudit_timeout,
                    "args": list(config.invocation_params.args)}
        self.written = _recorder(config).write(json_path=opts.nnaudit_json, report_path=opts.nnaudit_report,
                                               settings=settings, device=opts.nnaudit_device)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.written:
            n = len(_recorder(self.config).entries)
            terminalreporter.write_line(f"nnaudit: {n} check(s) and fixture call(s) recorded; wrote "
                                        + ", ".join(str(p) for p in self.written))

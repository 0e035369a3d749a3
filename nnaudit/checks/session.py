"""What the pytest plugin records during a session, and how it is written out.

Every checks-file item and every fixture call adds one entry (the ``checks``
entry shape of the ``check`` result, reports/SCHEMA.md).  A fixture entry
starts without a status; ``assert_robust`` fills in the requirement, the
measured value and the status, otherwise the test's outcome does.  Under
pytest-xdist each worker ships its finished entries to the controller as
JSON (:meth:`SessionRecorder.dumps` / :meth:`merge`), which writes the one
report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: test outcome -> check status for fixture calls without an assert_robust
_FROM_OUTCOME = {"passed": "passed", "failed": "failed", "skipped": "inconclusive"}


class SessionRecorder:
    """Entries of the session, in the order they happened."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self._pending: dict[str, list[dict[str, Any]]] = {}  # nodeid -> entries awaiting the test outcome
        self._by_result: dict[int, dict[str, Any]] = {}      # id(result object) -> its entry
        self._objects: list[Any] = []                        # keeps ids valid while the session runs

    def add_check(self, entry: dict[str, Any]) -> None:
        """A finished checks-file item (``CheckOutcome.to_dict()``)."""
        self.entries.append(entry)

    def add_call(self, nodeid: str, kind: str, result: Any, doc: dict[str, Any]) -> dict[str, Any]:
        """A fixture call of ``kind`` in test ``nodeid`` that returned ``result``."""
        calls = self._pending.setdefault(nodeid, [])
        entry = {"name": f"{nodeid} [{kind} #{len(calls) + 1}]", "kind": kind, "requirement": None,
                 "measured": None, "status": None, "message": f"{kind} call in {nodeid}", "result": doc}
        calls.append(entry)
        self.entries.append(entry)
        self._by_result[id(result)] = entry
        self._objects.append(result)
        return entry

    def entry_for(self, result: Any) -> dict[str, Any] | None:
        return self._by_result.get(id(result))

    def judged(self, result: Any, judgement: Any) -> None:
        """Record what ``assert_robust`` concluded about a fixture result."""
        entry = self.entry_for(result)
        if entry is not None:
            entry.update(requirement=judgement.requirement, measured=judgement.measured,
                         status=judgement.status.value, message=judgement.message, worst=judgement.worst)

    def test_finished(self, nodeid: str, outcome: str) -> None:
        """Give the test's outcome to its fixture entries that were not judged."""
        for entry in self._pending.pop(nodeid, []):
            if entry["status"] is None:
                entry["status"] = _FROM_OUTCOME.get(outcome, "error")
                entry["message"] = f"{entry['message']}: the test {outcome}"

    def close(self) -> None:
        """Entries of tests that never reported become errors."""
        for nodeid in list(self._pending):
            self.test_finished(nodeid, "error")

    def dumps(self) -> str:
        self.close()
        return json.dumps(self.entries, default=_default)

    def merge(self, text: str) -> None:
        self.entries.extend(json.loads(text))

    def document(self, *, settings: dict[str, Any], device: str | None) -> dict[str, Any]:
        """The ``check`` result document of the session."""
        from nnaudit.reports import schema

        self.close()
        doc = schema.new_result("check", settings=settings, device=device)
        doc["checks"] = json.loads(json.dumps(self.entries, default=_default))
        return schema.finish(doc)

    def write(self, *, json_path: str | None, report_path: str | None, settings: dict[str, Any],
              device: str | None) -> list[Path]:
        """Write the JSON document and/or the HTML report; returns what was written."""
        from nnaudit.reports import schema

        doc = self.document(settings=settings, device=device)
        written = []
        if json_path:
            written.append(schema.write_json(doc, json_path))
        if report_path:
            from nnaudit.checks.output import write_html

            name = Path(json_path).name if json_path else "pytest-session.json"
            written.append(write_html([doc], report_path, title="nnaudit: pytest session", names=[name]))
        return written


def _default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")

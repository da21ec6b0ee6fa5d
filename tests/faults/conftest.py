"""The fault suite's summary table: each scenario test fills ``figures``
(a dict) and, at the end of the session, one Markdown row per scenario
(scenario, result, figures) is printed and written to the file given by
``--faults-summary`` (docs/RELIABILITY.md quotes the long run's table)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

_ROWS: list[tuple[str, str, dict[str, Any]]] = []
_FIGURES: dict[str, dict[str, Any]] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--faults-summary", default=None,
                     help="write the fault scenarios' summary table (Markdown) to this file")


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Figures a scenario reports (times, counts); shown in the summary table."""
    return _FIGURES.setdefault(request.node.nodeid, {})


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        doc = (getattr(item, "function", None).__doc__ or "").strip().splitlines()
        name = doc[0] if doc else item.name
        result = report.outcome
        if report.skipped and isinstance(report.longrepr, tuple):
            result = f"skipped: {report.longrepr[2]}"
        _ROWS.append((name, result, _FIGURES.get(item.nodeid, {})))


def _table() -> str:
    lines = ["| scenario | result | figures |", "|---|---|---|"]
    for name, result, figs in _ROWS:
        shown = ", ".join(f"{k}={v}" for k, v in figs.items())
        cells = (name, result, shown)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if not _ROWS:
        return
    terminalreporter.write_sep("=", "fault scenarios")
    terminalreporter.write(_table())
    path = config.getoption("--faults-summary")
    if path:
        Path(path).write_text(_table(), encoding="utf-8")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "faults: real-process fault scenarios of issue 7 (tests/faults)")

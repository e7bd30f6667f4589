"""The order test modules run in under pytest-xdist: the longest first.

``--dist loadfile`` hands each worker a whole module at a time, in the order given; the
modules that take longest (real clusters, real processes) must start first, or the run ends
with one worker still busy on a long module while the other is idle. pytest-xdist's own
reordering (most tests first, turned off in ``pyproject.toml``) puts the long one-test modules
last. Each module's seconds come from :data:`DURATIONS` (refreshed with
``python -m pytest --store-module-durations``); a module not listed there runs after the listed
ones, in collection order.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from support import REPO

#: Seconds each test module took in a full run (setup, call and teardown of its tests).
DURATIONS = REPO / "tests" / "module_durations.json"


def module_of(nodeid: str) -> str:
    """``tests/jobs/test_run.py`` of ``tests/jobs/test_run.py::test_x[case]``."""
    return nodeid.split("::", 1)[0]


def longest_first(items: list[pytest.Item], durations: dict[str, float]) -> None:
    """Sort ``items`` (in place) by their module's duration, longest first; stable, so the tests
    of a module keep their order."""
    items.sort(key=lambda item: -durations.get(module_of(item.nodeid), 0.0))


def read_durations(path: Path = DURATIONS) -> dict[str, float]:
    try:
        durations = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return durations if isinstance(durations, dict) else {}


class DurationRecorder:
    """Adds up each module's test durations as the reports arrive (on pytest-xdist's controller,
    from every worker) and writes them to :data:`DURATIONS` at the end."""

    def __init__(self, path: Path = DURATIONS) -> None:
        self.path = path
        self.seconds: defaultdict[str, float] = defaultdict(float)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.seconds[module_of(report.nodeid)] += report.duration

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not hasattr(session.config, "workerinput"):  # the controller (or a run without xdist)
            ranked = sorted(self.seconds.items(), key=lambda pair: -pair[1])
            self.path.write_text(json.dumps({m: round(s, 2) for m, s in ranked}, indent=1) + "\n")

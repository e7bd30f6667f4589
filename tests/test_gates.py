"""The gates, run by the test command itself: ruff (lint and format) and mypy (strict).

So ``python -m pytest`` is the one command that checks everything (README, ``.ci/run``); the
import-linter contracts run in ``test_architecture.py``. Each gate runs the tool of this
virtual environment on the whole repository, as ``pyproject.toml`` configures it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO


def _tool(name: str) -> str:
    beside = Path(sys.executable).with_name(name)  # this virtualenv's, even off PATH
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
    return found


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
        ["mypy"],
    ],
    ids=["ruff check", "ruff format", "mypy strict"],
)
def test_gate(command, tmp_path):
    executable = _tool(command[0])
    extra = ["--cache-dir", str(tmp_path / "cache")] if command[0] == "mypy" else []
    result = subprocess.run(
        [executable, *command[1:], *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, (result.stdout[-6000:] + result.stderr[-2000:]).strip()

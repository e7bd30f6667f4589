"""The ``featuremap`` group (``featuremap.cli.main``): every command's help has an example; usage
errors are one line and exit 2 -- from a real process, the exit status of the program itself."""

from __future__ import annotations

import pytest
from support.cli import run_ok
from support.procs import featuremap

COMMANDS = ("run", "submit", "status", "inspect", "explain", "banks", "preview", "demo")


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_an_example(command):
    assert "Example" in run_ok(command, "--help").stdout


def test_usage_errors_are_one_line():
    for args in (("frobnicate",), ("status",), ("submit", "p.yaml")):
        result = featuremap(*args)  # a process: the exit status of the program itself
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert result.stderr.startswith("featuremap: error: ")

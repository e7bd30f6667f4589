"""The ``featuremap`` group (``featuremap.cli.main``): every command's help has an example; usage
errors are one line and exit 2 -- from a real process, the exit status of the program itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


def test_the_console_script_keeps_its_output_and_status_through_its_quick_exit():
    # the installed script ends with os._exit after main(), skipping the interpreter's
    # teardown: what the command printed (stdout piped is block-buffered) and its exit status
    # must come out whole all the same
    script = Path(sys.executable).with_name("featuremap")
    listed = subprocess.run([script, "banks"], capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout == run_ok("banks").stdout
    refused = subprocess.run([script, "status", "no-such.zarr"], capture_output=True, text=True)
    assert refused.returncode == 2
    assert refused.stderr.startswith("featuremap: error: ")
    assert refused.stderr.endswith("\n")


def test_the_console_script_pauses_garbage_collection_only_at_start_up():
    # start-up objects are frozen once the pause ends and collection resumes: a long command
    # still collects its cycles (in its own process: the freeze is for good)
    code = (
        "import gc, time; from featuremap.cli.main import _pause_collector\n"
        "_pause_collector(0.3); paused = gc.isenabled()\n"
        "time.sleep(1.0); print(paused, gc.isenabled(), gc.get_freeze_count() > 1000)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.split() == ["False", "True", "True"], result.stderr

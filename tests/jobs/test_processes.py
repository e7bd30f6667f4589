"""Processes on this host (``featuremap.jobs.processes``), and the owner liveness built on them:
a zombie -- an exited child its parent has not waited for yet, as a ``dask worker`` whose
scheduler died is until the process that started it collects it -- is not alive."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace

from support.procs import wait_for

from featuremap.jobs import state
from featuremap.jobs.processes import process_exited, process_start


def test_a_running_process_has_a_start_and_has_not_exited():
    assert process_start(os.getpid()) is not None
    assert not process_exited(os.getpid())


def test_an_exited_child_not_yet_waited_for_is_a_zombie_and_its_owner_is_dead():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        started = process_start(child.pid)
        owner = replace(state.new_owner(), pid=child.pid, start=started)
        wait_for(lambda: process_exited(child.pid), 30, "the child to exit")
        assert process_start(child.pid) == started  # the pid and its /proc entry still exist
        assert owner.alive() is False
    finally:
        child.wait()
    assert process_start(child.pid) is None
    assert not process_exited(child.pid)

"""``featuremap.jobs.blocks``: the worker side of a job (its block tasks are run by the job tests,
``jobs/test_run.py`` and the cluster tests).

A Dask worker imports this module for every job, so it must stay light: importing it in a fresh
interpreter loads neither ``dask.array`` nor ``pandas`` nor ``xarray``.
"""

from __future__ import annotations

import json
import subprocess
import sys

from support import REPO
from support.procs import ENV

HEAVY = ("dask.array", "pandas", "xarray")

PROBE = f"""
import json, sys
import featuremap.jobs.blocks as blocks
print(json.dumps({{
    "file": blocks.__file__,
    "loaded": [name for name in {HEAVY!r} if name in sys.modules],
}}))
"""


def test_importing_blocks_loads_no_dask_array_pandas_or_xarray():
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=ENV,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["file"] == str(REPO / "featuremap" / "jobs" / "blocks.py")  # this tree's module
    assert report["loaded"] == []

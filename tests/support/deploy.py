"""The deploy/ folder's certificate script, shared by the deployment and SLURM tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

from support import REPO

MAKE_CERTS = REPO / "deploy" / "tls" / "make-certs.sh"


def make_certs(directory: Path) -> Path:
    """Run deploy/tls/make-certs.sh into ``directory`` (a CA, scheduler/worker/client pairs)."""
    subprocess.run(["bash", str(MAKE_CERTS), str(directory)], check=True, capture_output=True)
    return directory


def flag_value(args: list[str], flag: str) -> str:
    """The word after ``flag`` in a command line."""
    return args[args.index(flag) + 1]

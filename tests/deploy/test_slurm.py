"""``featuremap cluster slurm`` end to end, with this machine standing in for a SLURM node.

``sbatch`` and ``scancel`` here are two-line shell scripts put first on PATH: ``sbatch`` runs
the job script dask-jobqueue renders in a new session on this machine, ``scancel`` kills that
session. Everything else is real: the launcher process and its TLS scheduler, the worker the
job script starts (with its ``--resources GPU=1`` and TLS options), a client, and the clean-up
on SIGTERM.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import REPO
from support.deploy import make_certs

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
pytest.importorskip("dask_jobqueue", reason="pip install 'featuremap[slurm]'")

SBATCH = """#!/usr/bin/env bash
# sbatch stand-in: dask-jobqueue deletes the script once sbatch returns, so run a copy.
cp "$1" "{jobs}/job-$$.sh"
setsid bash "{jobs}/job-$$.sh" >"{jobs}/job-$$.log" 2>&1 </dev/null &
echo "$!" >>"{jobs}/submitted"
echo "Submitted batch job $!"
"""
SCANCEL = """#!/usr/bin/env bash
for job in "$@"; do kill -TERM -- "-$job" 2>/dev/null; echo "$job" >>"{jobs}/cancelled"; done
"""


def install_fake_slurm(root: Path) -> Path:
    jobs = root / "jobs"
    jobs.mkdir()
    bin_directory = root / "bin"
    bin_directory.mkdir()
    for name, text in (("sbatch", SBATCH), ("scancel", SCANCEL)):
        (bin_directory / name).write_text(text.format(jobs=jobs))
        (bin_directory / name).chmod(0o755)
    return bin_directory


def submitted_sessions(jobs: Path) -> list[int]:
    submitted = jobs / "submitted"
    return [int(line) for line in submitted.read_text().split()] if submitted.exists() else []


def kill_leftovers(jobs: Path) -> None:
    """Whatever a failed test left running: the job sessions our sbatch started."""
    for session in submitted_sessions(jobs):
        if session_alive(session):
            os.killpg(session, signal.SIGKILL)


def session_alive(session: int) -> bool:
    try:
        os.killpg(session, 0)
    except ProcessLookupError:
        return False
    return True


def test_cluster_slurm_starts_tls_gpu_workers_and_cancels_them(tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "certs")
    bin_directory = install_fake_slurm(tmp_path)
    jobs = tmp_path / "jobs"
    launcher = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from featuremap.cli.main import main; sys.exit(main())",
            "cluster",
            "slurm",
            "--partition",
            "gpu",
            "--gpus",
            "1",
            "--jobs",
            "1",
            "--cores",
            "1",
            "--memory",
            "1GiB",
            "--walltime",
            "00:10:00",
            "--local-directory",
            str(tmp_path),
            "--dashboard-address",
            "127.0.0.1:0",
            "--tls-ca-file",
            str(certs / "ca.pem"),
            "--tls-cert",
            str(certs / "worker.pem"),
            "--tls-key",
            str(certs / "worker-key.pem"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=dict(os.environ, PATH=f"{bin_directory}:{os.environ['PATH']}", PYTHONPATH=str(REPO)),
    )
    try:
        try:
            session = check_running_cluster(launcher, certs, jobs)
        finally:
            launcher.send_signal(signal.SIGTERM)
            output, errors = launcher.communicate(timeout=60)
        assert launcher.returncode == 0, errors
        assert "stopping the cluster" in output
        assert (jobs / "cancelled").read_text().split() == [str(session)]
        deadline = time.monotonic() + 20
        while session_alive(session) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not session_alive(session), "the worker job outlived scancel"
    finally:
        kill_leftovers(jobs)


def check_running_cluster(launcher: subprocess.Popen[str], certs: Path, jobs: Path) -> int:
    """Connect as a client, check the job's worker; returns the job's session id."""
    from distributed import Client
    from distributed.security import Security

    banner = launcher.stdout.readline()
    match = re.search(r"scheduler (tls://\S+),", banner)
    assert match, banner
    assert "--tls-ca-file" in launcher.stdout.readline()  # the connect hint

    security = Security(
        tls_ca_file=str(certs / "ca.pem"),
        tls_client_cert=str(certs / "client.pem"),
        tls_client_key=str(certs / "client-key.pem"),
        require_encryption=True,
    )
    with Client(match.group(1), security=security, timeout=30) as client:
        client.wait_for_workers(1, timeout=60)
        (worker,) = client.scheduler_info(n_workers=-1)["workers"].values()
        assert worker["resources"] == {"GPU": 1}
        assert client.submit(pow, 3, 4, resources={"GPU": 1}).result(timeout=30) == 81
    (session,) = submitted_sessions(jobs)
    script = next(jobs.glob("job-*.sh")).read_text()
    assert "#SBATCH -p gpu" in script
    assert "#SBATCH --gres=gpu:1" in script
    assert session_alive(session)
    return session

"""``featuremap cluster slurm`` (``featuremap.cli.cluster``) in process: printing the job script,
one-line refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.deploy import make_certs


def test_cli_prints_the_job_script(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("dask_jobqueue")
    from featuremap.cli.main import main

    certs = make_certs(tmp_path / "certs")
    status = main(
        [
            "cluster",
            "slurm",
            "--partition",
            "gpu",
            "--gpus",
            "1",
            "--jobs",
            "4",
            "--print-job-script",
            "--tls-ca-file",
            str(certs / "ca.pem"),
            "--tls-cert",
            str(certs / "worker.pem"),
            "--tls-key",
            str(certs / "worker-key.pem"),
        ]
    )
    output = capsys.readouterr().out
    assert status == 0, output
    assert "#SBATCH -p gpu" in output
    assert "#SBATCH --gres=gpu:1" in output
    assert "--resources GPU=1" in output
    assert "--tls-key" in output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["--gpus", "-1", "--print-job-script"],
            "featuremap: error: gpus must be an integer >= 0, got -1",
        ),
        (["--tls-cert", "c.pem", "--print-job-script"], "featuremap: error: tls_ca_file, tls_key"),
        (["--jobs", "1"], "featuremap: error: sbatch not found on PATH"),
    ],
)
def test_cli_refuses_with_one_line(
    arguments: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("dask_jobqueue")
    from featuremap.cli.main import main

    monkeypatch.setenv("PATH", "/nonexistent")  # no sbatch, whatever this machine has
    status = main(["cluster", "slurm", *arguments])
    captured = capsys.readouterr()
    assert status == 2
    assert captured.err.startswith(message)
    assert captured.err.count("\n") == 1
    assert captured.out == ""


def test_local_cluster_refuses_a_taken_port_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    from featuremap.cli.main import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status = main(["cluster", "local", "--port", str(port), "--workers", "1"])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith(f"featuremap: error: cannot start a scheduler on 127.0.0.1:{port}")
    assert err.count("\n") == 1


@pytest.mark.slow
def test_local_cluster_stays_up_for_jobs_and_stops_on_ctrl_c(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``featuremap cluster local`` prints its address, runs jobs given ``--scheduler`` (and
    ``DASK_SCHEDULER_ADDRESS``) on its warm workers, and closes on SIGINT with status 0."""
    import json
    import re
    import signal
    import subprocess
    import sys

    import dask.config
    import numpy as np
    import psutil
    from support.procs import ENV
    from support.stores import write_input

    from featuremap.cli.main import main

    source = write_input(tmp_path / "in.zarr", np.ones((1, 64, 64), np.float32), (1, 32, 32))
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text("layers:\n  - pool: {type: avg, kernel_size: 2, stride: 2}\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "featuremap", "cluster", "local", "--port", "0", "--workers", "1"],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        found = re.search(r"scheduler (tcp://127\.0\.0\.1:\d+),", first)
        assert found, first + (process.stderr.read() if process.poll() is not None else "")
        address = found.group(1)
        workers = psutil.Process(process.pid).children(recursive=True)
        assert workers
        job = ["run", str(pipeline), "--input", source, "--json"]
        assert main([*job, "--output", str(tmp_path / "a.zarr"), "--scheduler", address]) == 0
        with dask.config.set({"scheduler-address": address}):  # as DASK_SCHEDULER_ADDRESS sets
            assert main([*job, "--output", str(tmp_path / "b.zarr")]) == 0
        # both jobs ran on the warm cluster: it lists them
        capsys.readouterr()
        assert main(["jobs", "--scheduler", address, "--all", "--json"]) == 0
        listed = json.loads(capsys.readouterr().out)
        assert sorted(Path(job["store"]).name for job in listed) == ["a.zarr", "b.zarr"]
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "stopping the local cluster" in out
    assert "Traceback" not in err
    _, alive = psutil.wait_procs(workers, timeout=30)  # the resource tracker exits last
    assert alive == []

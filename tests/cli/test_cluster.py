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

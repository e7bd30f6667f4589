"""The SLURM job specification and script (``featuremap.cluster.slurm``): values checked, round trip,
the job script dask-jobqueue renders (GPU resources, TLS). ``featuremap cluster slurm`` run for
real, with a stand-in ``sbatch``, is ``deploy/test_slurm.py``."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
from support.deploy import flag_value, make_certs


def test_job_script_has_gpu_resources_and_tls(tmp_path: Path) -> None:
    pytest.importorskip("dask_jobqueue", reason="pip install 'featuremap[slurm]'")
    from featuremap.cluster.slurm import SlurmSpec, render_job_script

    certs = make_certs(tmp_path / "certs")
    spec = SlurmSpec(
        cores=16,
        memory="64GiB",
        walltime="02:30:00",
        partition="gpu",
        account="imaging",
        gpus=2,
        prologue=("module load cuda/12",),
        tls_ca_file=str(certs / "ca.pem"),
        tls_cert=str(certs / "worker.pem"),
        tls_key=str(certs / "worker-key.pem"),
    )
    script = render_job_script(spec, "tls://10.1.2.3:8786")
    header = [line for line in script.splitlines() if line.startswith("#SBATCH")]
    assert {
        "#SBATCH -p gpu",
        "#SBATCH -A imaging",
        "#SBATCH -t 02:30:00",
        "#SBATCH --cpus-per-task=16",
        "#SBATCH --mem=64G",
        "#SBATCH --gres=gpu:2",
    } <= set(header)
    (command,) = [line for line in script.splitlines() if "dask_worker" in line]
    words = shlex.split(command)
    assert "tls://10.1.2.3:8786" in words
    assert flag_value(words, "--resources") == "GPU=2"
    assert flag_value(words, "--nthreads") == "16"
    assert flag_value(words, "--tls-ca-file") == str(certs / "ca.pem")
    assert flag_value(words, "--tls-cert") == str(certs / "worker.pem")
    assert flag_value(words, "--tls-key") == str(certs / "worker-key.pem")
    assert script.index("module load cuda/12") < script.index(command)


def test_cpu_job_script_has_no_gpu_request() -> None:
    pytest.importorskip("dask_jobqueue")
    from featuremap.cluster.slurm import (
        SCHEDULER_PLACEHOLDER,
        SlurmSpec,
        render_job_script,
    )

    script = render_job_script(SlurmSpec(cores=4, memory="8GiB", processes=2))
    assert "--gres" not in script
    assert "--resources" not in script
    assert "--tls" not in script
    assert SCHEDULER_PLACEHOLDER in script
    assert "--nworkers 2" in script
    assert "--nthreads 2" in script


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cores": 0}, "cores must be an integer >= 1, got 0"),
        ({"gpus": True}, "gpus must be an integer >= 0, got True"),
        ({"memory": "lots"}, "memory='lots' is not a memory size"),
        ({"walltime": "1h"}, "walltime='1h' is not a SLURM time limit"),
        ({"partition": "gpu nodes"}, "partition='gpu nodes' is not a SLURM name"),
        ({"gpus": 1, "processes": 2}, "processes=2 with gpus=1 is not allowed"),
        ({"cores": 6, "processes": 4}, "cores=6 is not divisible by processes=4"),
        ({"tls_ca_file": "ca.pem"}, "tls_cert, tls_key missing"),
        (
            {
                "tls_ca_file": "/nonexistent/ca.pem",
                "tls_cert": "/nonexistent/c.pem",
                "tls_key": "/nonexistent/k.pem",
            },
            "tls_ca_file='/nonexistent/ca.pem' is not a file",
        ),
    ],
)
def test_slurm_spec_refuses_bad_values(options: dict[str, Any], message: str) -> None:
    from featuremap.cluster.slurm import SlurmSpec
    from featuremap.errors import InputError

    with pytest.raises(InputError, match=re.escape(message)):
        SlurmSpec(**options)


def test_slurm_spec_round_trips_and_names_unknown_keys() -> None:
    from featuremap.cluster.slurm import SlurmSpec
    from featuremap.errors import InputError

    spec = SlurmSpec(partition="short", gpus=1, jobs=3, prologue=("module load cuda",))
    assert SlurmSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    with pytest.raises(InputError, match="key 'partion' is unknown"):
        SlurmSpec.from_dict({"partion": "short"})

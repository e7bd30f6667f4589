"""The Compose deployment's own commands, run as local processes over TLS (issue 7).

The scheduler, CPU-worker and GPU-worker ``command:`` lines are read verbatim from
deploy/compose/compose.yaml; only what a container provides is substituted (the ``scheduler``
host becomes 127.0.0.1 on a free port, ``/certs/`` the certificates deploy/tls/make-certs.sh
writes into tmp_path, scratch paths tmp_path). Then featuremap runs and submits a small
pipeline through that cluster with the client certificate, and the result is compared with
torch's conv2d.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from support import REPO
from support.deploy import make_certs
from support.procs import free_port

COMPOSE_FILE = REPO / "deploy" / "compose" / "compose.yaml"
BIN = Path(sys.executable).parent
STARTUP_SECONDS = 60

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def compose_services() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())["services"]


def default_replicas(service: dict[str, Any]) -> int:
    """``${FEATUREMAP_CPU_WORKERS:-2}`` -> 2, as Compose interpolates it with the variable unset."""
    replicas = str(service["deploy"]["replicas"])
    match = re.fullmatch(r"\$\{\w+:-(\d+)\}", replicas)
    return int(match.group(1) if match else replicas)


def localize(
    command: list[str], *, port: int, dashboard_port: int, certs: Path, scratch: Path
) -> list[str]:
    """A container's command as a local process: same words, local hosts and paths."""
    replacements = {
        "tls://scheduler:8786": f"tls://127.0.0.1:{port}",
        "/tmp/dask-worker": str(scratch),
    }
    local = []
    for word in command:
        word = replacements.get(word, word)
        if word.startswith("/certs/"):
            word = str(certs / word.removeprefix("/certs/"))
        local.append(word)
    if local[:2] == ["dask", "scheduler"]:
        local[local.index("--port") + 1] = str(port)
        local[local.index("--dashboard-address") + 1] = f"127.0.0.1:{dashboard_port}"
    local[0] = str(BIN / local[0])
    return local


def client_security(certs: Path) -> Any:
    from distributed.security import Security

    return Security(
        tls_ca_file=str(certs / "ca.pem"),
        tls_client_cert=str(certs / "client.pem"),
        tls_client_key=str(certs / "client-key.pem"),
        require_encryption=True,
    )


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each process group we started, then SIGKILL what is left."""
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for process in processes:
        try:
            process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Scheduler, the default number of CPU workers and one GPU-declaring worker, over TLS."""
    from distributed import Client

    root = tmp_path_factory.mktemp("tls-cluster")
    certs = make_certs(root / "certs")
    ports = {"port": free_port(), "dashboard_port": free_port()}
    port = ports["port"]
    services = compose_services()
    commands = [localize(services["scheduler"]["command"], **ports, certs=certs, scratch=root)]
    cpu_workers = default_replicas(services["cpu-worker"])
    commands.extend(
        localize(
            services["cpu-worker"]["command"], **ports, certs=certs, scratch=root / f"cpu-{index}"
        )
        for index in range(cpu_workers)
    )
    commands.append(
        localize(services["gpu-worker"]["command"], **ports, certs=certs, scratch=root / "gpu")
    )
    logs = root / "logs"
    logs.mkdir()
    environment = dict(os.environ, PYTHONPATH=str(REPO))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for number, command in enumerate(commands):
            with open(logs / f"{number}.log", "wb") as log:
                processes.append(
                    subprocess.Popen(
                        command,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env=environment,
                        cwd=root,
                        start_new_session=True,
                    )
                )
            if number == 0:  # workers retry, but a scheduler that is up first saves seconds
                wait_for_port(port, processes[0], logs / "0.log")
        address = f"tls://127.0.0.1:{port}"
        with Client(address, security=client_security(certs), timeout=STARTUP_SECONDS) as client:
            client.wait_for_workers(cpu_workers + 1, timeout=STARTUP_SECONDS)
            workers = client.scheduler_info(n_workers=-1)["workers"]
        yield {
            "address": address,
            "certs": certs,
            "workers": workers,
            "root": root,
            "cpu_workers": cpu_workers,
            "dashboard_port": ports["dashboard_port"],
        }
    finally:
        stop(processes)


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"scheduler exited with {process.returncode}:\n{log.read_text()}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    pytest.fail(f"scheduler did not listen on {port}:\n{log.read_text()}")


def test_workers_join_over_tls_with_their_resources(tls_cluster: dict[str, Any]) -> None:
    workers = tls_cluster["workers"]
    assert all(address.startswith("tls://") for address in workers)
    resources = sorted(info.get("resources", {}).get("GPU", 0) for info in workers.values())
    assert resources == [0] * tls_cluster["cpu_workers"] + [1]
    assert {info["nthreads"] for info in workers.values()} == {1, 2}


def test_scheduler_healthcheck_command_succeeds(tls_cluster: dict[str, Any]) -> None:
    """Compose's healthcheck (what workers wait for) works without bokeh, as in the image."""
    kind, *command = compose_services()["scheduler"]["healthcheck"]["test"]
    assert kind == "CMD"
    assert command[0] == "python"
    local = [sys.executable] + [
        word.replace("localhost:8787", f"127.0.0.1:{tls_cluster['dashboard_port']}")
        for word in command[1:]
    ]
    assert subprocess.run(local, capture_output=True, timeout=30).returncode == 0


def test_cluster_computes_for_an_authenticated_client(tls_cluster: dict[str, Any]) -> None:
    from distributed import Client

    with Client(tls_cluster["address"], security=client_security(tls_cluster["certs"])) as client:
        assert client.submit(sum, range(10)).result(timeout=30) == 45


def test_cluster_refuses_a_client_from_another_ca(
    tls_cluster: dict[str, Any], tmp_path: Path
) -> None:
    from distributed import Client

    strangers = make_certs(tmp_path / "other-ca")
    with pytest.raises((OSError, TimeoutError)):
        Client(tls_cluster["address"], security=client_security(strangers), timeout=3)
    with pytest.raises((OSError, TimeoutError)):  # and plain TCP is no way in either
        Client(tls_cluster["address"].replace("tls://", "tcp://"), timeout=3)


# --------------------------------------------------------------------------- featuremap over TLS


def write_job(root: Path) -> tuple[Path, np.ndarray, np.ndarray, np.ndarray]:
    """A chunked input store, a weight file and a pipeline using them; returns the arrays."""
    import zarr

    rng = np.random.default_rng(7)
    images = rng.standard_normal((2, 3, 40, 48)).astype(np.float32)
    weight = rng.standard_normal((4, 3, 5, 5)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    group = zarr.open_group(root / "images.zarr", mode="w", zarr_format=3)
    group.create_array("images", data=images, chunks=(1, 3, 16, 16))
    np.savez(root / "layer1.npz", weight=weight, bias=bias)
    pipeline = {
        "name": "deploy-tls",
        "input": {"store": "images.zarr", "array": "images"},
        "output": {"store": "unused.zarr"},
        "layers": [
            {
                "conv": {
                    "bank": {"type": "file", "path": "layer1.npz"},
                    "stride": 2,
                    "padding": 2,
                    "activation": "relu",
                }
            }
        ],
    }
    path = root / "pipeline.yaml"
    path.write_text(yaml.safe_dump(pipeline, sort_keys=False))
    return path, images, weight, bias


def expected_features(images: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    torch = pytest.importorskip("torch")
    reference = torch.nn.functional.conv2d(
        torch.from_numpy(images.astype(np.float64)),
        torch.from_numpy(weight.astype(np.float64)),
        torch.from_numpy(bias.astype(np.float64)),
        stride=2,
        padding=2,
    )
    return torch.relu(reference).numpy()


def featuremap_cli(*arguments: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from featuremap.cli.main import main; sys.exit(main())",
            *arguments,
        ],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=180,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )


def tls_arguments(cluster: dict[str, Any]) -> list[str]:
    certs = cluster["certs"]
    return [
        "--scheduler",
        cluster["address"],
        "--tls-ca-file",
        str(certs / "ca.pem"),
        "--tls-cert",
        str(certs / "client.pem"),
        "--tls-key",
        str(certs / "client-key.pem"),
    ]


def read_features(store: Path) -> np.ndarray:
    import zarr

    return np.asarray(zarr.open_group(store, mode="r")["features"][...])


def test_featuremap_run_and_submit_over_tls(tls_cluster: dict[str, Any], tmp_path: Path) -> None:
    if not (REPO / "featuremap" / "cli" / "main.py").exists():
        pytest.skip("featuremap CLI (featuremap/cli/main.py) not written yet")
    pipeline, images, weight, bias = write_job(tmp_path)
    expected = expected_features(images, weight, bias)

    ran = featuremap_cli(
        "run",
        str(pipeline),
        "--output",
        str(tmp_path / "run.zarr"),
        "--device",
        "cpu",
        "--json",
        *tls_arguments(tls_cluster),
        cwd=tmp_path,
    )
    assert ran.returncode == 0, ran.stderr
    summary = json.loads(ran.stdout)
    assert summary["status"] == "complete"
    assert summary["blocks_computed"] == summary["blocks_total"] > 1
    np.testing.assert_allclose(read_features(tmp_path / "run.zarr"), expected, rtol=1e-5, atol=1e-5)

    submitted = featuremap_cli(
        "submit",
        str(pipeline),
        "--output",
        str(tmp_path / "submit.zarr"),
        "--device",
        "cpu",
        *tls_arguments(tls_cluster),
        cwd=tmp_path,
    )
    assert submitted.returncode == 0, submitted.stderr
    deadline = time.monotonic() + 120
    while True:
        status = featuremap_cli("status", str(tmp_path / "submit.zarr"), "--json", cwd=tmp_path)
        state = json.loads(status.stdout) if status.returncode == 0 else {}
        if state.get("status") == "complete" or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert state.get("status") == "complete", (status.stdout, status.stderr)
    assert state["blocks_done"] == state["blocks_total"] == summary["blocks_total"]
    np.testing.assert_array_equal(
        read_features(tmp_path / "submit.zarr"), read_features(tmp_path / "run.zarr")
    )


def test_featuremap_refuses_tls_scheduler_without_certificates(
    tls_cluster: dict[str, Any], tmp_path: Path
) -> None:
    if not (REPO / "featuremap" / "cli" / "main.py").exists():
        pytest.skip("featuremap CLI (featuremap/cli/main.py) not written yet")
    pipeline, *_ = write_job(tmp_path)
    refused = featuremap_cli(
        "run",
        str(pipeline),
        "--output",
        str(tmp_path / "out.zarr"),
        "--scheduler",
        tls_cluster["address"],
        cwd=tmp_path,
    )
    assert refused.returncode == 2
    assert refused.stderr.startswith("featuremap: error:")
    assert "--tls-ca-file" in refused.stderr
    assert not (tmp_path / "out.zarr").exists()

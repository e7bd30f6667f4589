"""Device selection (featuremap.cluster.devices) with real ``dask scheduler`` / ``dask worker`` processes.

Two clusters: one whose only worker has nothing (no CuPy here, no ``GPU`` resource), and one
with such a worker plus a worker started with ``--resources GPU=1``. Whether CuPy is ever
imported is checked in fresh interpreters, with a ``cupy`` *tripwire* package on the path: it
records that it was imported (from any process) and then fails like a broken install.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from distributed import Client, get_worker
from support import REPO
from support.gpu import cuda_device_available

from featuremap.cluster import devices as _device
from featuremap.cluster.devices import (
    DevicePlan,
    WorkerCapabilities,
    block_device,
    parse_device,
    plan_devices,
    to_device,
    to_host,
    worker_capabilities,
)
from featuremap.errors import InputError, JobError

DASK = Path(sys.executable).with_name("dask")
needs_no_cuda = pytest.mark.skipif(cuda_device_available(), reason="this host has a CUDA device")


class Cluster:
    """A scheduler and named workers as separate ``dask`` processes, and a client to them."""

    def __init__(
        self, folder: Path, workers: dict[str, list[str]], env: dict[str, str] | None = None
    ) -> None:
        self.processes: list[subprocess.Popen] = []
        self.env = {**os.environ, **(env or {})}
        self.scheduler_file = scheduler_file = folder / "scheduler.json"
        self._start(
            [
                DASK,
                "scheduler",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                scheduler_file,
            ],
            folder,
        )
        for name, options in workers.items():
            self._start(
                [
                    DASK,
                    "worker",
                    "--scheduler-file",
                    scheduler_file,
                    "--name",
                    name,
                    "--nthreads",
                    "1",
                    "--no-nanny",
                    "--no-dashboard",
                    *options,
                ],
                folder,
            )
        deadline = time.monotonic() + 60
        while not scheduler_file.exists():
            assert time.monotonic() < deadline, "the dask scheduler did not start"
            time.sleep(0.1)
        self.client = Client(scheduler_file=str(scheduler_file), timeout=60)
        self.client.wait_for_workers(len(workers), timeout=60)
        self.address = {
            info["name"]: address
            for address, info in self.client.scheduler_info()["workers"].items()
        }

    def _start(self, command: list, folder: Path) -> None:
        log = open(folder / f"{len(self.processes)}.log", "wb")  # noqa: SIM115 - closed with the process
        self.processes.append(
            subprocess.Popen(
                [str(c) for c in command], cwd=REPO, env=self.env, stdout=log, stderr=log
            )
        )

    def close(self) -> None:
        self.client.shutdown()  # the scheduler stops its workers, then itself
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def cpu_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("cpu-cluster"), {"plain": []})
    yield cluster
    cluster.close()


@pytest.fixture(scope="module")
def mixed_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(
        tmp_path_factory.mktemp("mixed-cluster"), {"plain": [], "gpu": ["--resources", "GPU=1"]}
    )
    yield cluster
    cluster.close()


# --- the rule, without a cluster ---------------------------------------------------------------


@pytest.mark.parametrize("value", ["cuda", "GPU", "", None, 1])
def test_parse_device_refuses_unknown_devices(value) -> None:
    with pytest.raises(InputError, match=r"device must be one of auto, cpu, gpu, got"):
        parse_device(value)


@pytest.mark.parametrize(
    ("capabilities", "expected"),
    [
        (WorkerCapabilities("a"), {"auto": "cpu", "cpu": "cpu", "gpu": "cpu"}),
        (WorkerCapabilities("a", cuda_devices=2), {"auto": "gpu", "cpu": "cpu", "gpu": "gpu"}),
        (WorkerCapabilities("a", gpu_resource=1.0), {"auto": "gpu", "cpu": "cpu", "gpu": "gpu"}),
    ],
)
def test_device_for_applies_the_rule(capabilities: WorkerCapabilities, expected: dict) -> None:
    assert {requested: capabilities.device_for(requested) for requested in expected} == expected


def test_capabilities_round_trip_through_dict() -> None:
    capabilities = WorkerCapabilities(
        "tcp://h:1", cuda_devices=1, gpu_resource=2.0, cupy_version="13.4.0"
    )
    assert WorkerCapabilities.from_dict(capabilities.to_dict()) == capabilities
    assert capabilities.to_dict()["has_gpu"] is True


def test_host_blocks_pass_through_unchanged() -> None:
    block = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert to_device(block, "cpu") is block
    assert to_host(block) is block
    assert _device.array_device(block) == "cpu"


@needs_no_cuda
def test_gpu_block_without_cuda_is_a_job_error() -> None:
    with pytest.raises(
        JobError, match=r"this process was chosen to run blocks on its GPU but CUDA is unusable"
    ):
        to_device(np.zeros(3, np.float32), "gpu")


# --- real workers ------------------------------------------------------------------------------


@pytest.mark.cluster
@needs_no_cuda
def test_auto_picks_the_device_per_worker(mixed_cluster: Cluster) -> None:
    plan = plan_devices(mixed_cluster.client, "auto")
    gpu, plain = mixed_cluster.address["gpu"], mixed_cluster.address["plain"]
    assert plan.gpu_workers == (gpu,)
    assert plan.to_dict() == {"requested": "auto", "workers": {gpu: "gpu", plain: "cpu"}}
    assert plan.task_restrictions() == {}  # auto: blocks may run anywhere
    by_address = {worker.address: worker for worker in plan.workers}
    assert by_address[gpu].gpu_resource == 1.0
    assert by_address[plain].gpu_resource == 0.0
    assert by_address[plain].cuda_devices == 0
    assert by_address[plain].cuda_error


@pytest.mark.cluster
@needs_no_cuda
def test_block_tasks_decide_on_the_worker_that_runs_them(mixed_cluster: Cluster) -> None:
    client, address = mixed_cluster.client, mixed_cluster.address
    decided = {
        (name, requested): client.submit(
            block_device, requested, workers=[address[name]], pure=False
        ).result()
        for name in ("gpu", "plain")
        for requested in ("auto", "cpu")
    }
    assert decided == {
        ("gpu", "auto"): "gpu",
        ("gpu", "cpu"): "cpu",
        ("plain", "auto"): "cpu",
        ("plain", "cpu"): "cpu",
    }
    with pytest.raises(JobError, match=r"a block of a device='gpu' job ran on .* without a GPU"):
        client.submit(block_device, "gpu", workers=[address["plain"]], pure=False).result()


@pytest.mark.cluster
@needs_no_cuda
def test_declared_gpu_without_cuda_fails_loudly(mixed_cluster: Cluster) -> None:
    """A worker that declares a GPU it cannot use must not quietly compute on its CPU."""
    future = mixed_cluster.client.submit(
        to_device, np.ones(4, np.float32), "gpu", workers=[mixed_cluster.address["gpu"]], pure=False
    )
    with pytest.raises(
        JobError, match=rf"worker {mixed_cluster.address['gpu']} was chosen .*cupy is not installed"
    ):
        future.result()


@pytest.mark.cluster
@needs_no_cuda
def test_gpu_keeps_blocks_on_gpu_workers(mixed_cluster: Cluster) -> None:
    plan = plan_devices(mixed_cluster.client, "gpu")
    assert plan.task_restrictions() == {
        "workers": [mixed_cluster.address["gpu"]],
        "allow_other_workers": False,
    }
    # a lambda travels by value: the workers cannot import this test module
    futures = mixed_cluster.client.map(
        lambda _: get_worker().name, range(6), pure=False, **plan.task_restrictions()
    )
    assert set(mixed_cluster.client.gather(futures)) == {"gpu"}


@pytest.mark.cluster
@needs_no_cuda
def test_gpu_without_any_gpu_worker_is_an_input_error(cpu_cluster: Cluster) -> None:
    with pytest.raises(
        InputError, match=r"device 'gpu' was requested but no worker has a GPU \(1 checked: "
    ):
        plan_devices(cpu_cluster.client, "gpu")


@pytest.mark.cluster
def test_cpu_plan_asks_no_worker(cpu_cluster: Cluster) -> None:
    assert plan_devices(cpu_cluster.client, "cpu") == DevicePlan("cpu")
    assert _device.block_device("cpu") == "cpu"


def test_worker_capabilities_outside_a_worker() -> None:
    report = worker_capabilities()
    assert report["address"] == ""
    assert report["gpu_resource"] == 0.0
    assert report["has_gpu"] == (report["cuda_devices"] > 0)


# --- CuPy is never imported when it must not be ------------------------------------------------

# Zarr and dask.array themselves try ``import cupy`` when they load, and survive an ImportError;
# what featuremap promises is that none of *its* code does, so only imports whose importer (the
# innermost frame outside the import machinery) is featuremap's code are recorded.
TRIPWIRE = """
import os, pathlib, traceback
stack = [frame for frame in traceback.extract_stack()[:-1] if not frame.filename.startswith("<frozen")]
if stack[-1].filename.startswith(os.environ["FEATUREMAP_DIR"]):
    pathlib.Path(os.environ["CUPY_TRIPWIRE"]).write_text("".join(traceback.format_list(stack)))
raise ImportError("cupy tripwire: this test run has no usable cupy")
"""

# Runs in a fresh interpreter: conv2d on NumPy and on Dask (threads, then the real cluster) and a
# pipeline job when the runner exists, with device=argv[5]; prints what ran and which CuPy
# modules ended up loaded.
JOB = """
import importlib.util, json, sys
import numpy as np
import dask.array as da
import featuremap
from distributed import Client

scheduler_file, input_store, weight_file, output_store, device = sys.argv[1:6]
rng = np.random.default_rng(0)
x = rng.standard_normal((2, 32, 32)).astype(np.float32)
w = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
expected = featuremap.conv2d(x, w, padding=1)
lazy = featuremap.conv2d(da.from_array(x, chunks=(2, 16, 16)), w, padding=1)
np.testing.assert_allclose(lazy.compute(scheduler="threads"), expected, rtol=1e-5, atol=1e-5)
ran = ["numpy", "dask"]
with Client(scheduler_file=scheduler_file) as client:
    np.testing.assert_allclose(client.compute(lazy).result(), expected, rtol=1e-5, atol=1e-5)
    if importlib.util.find_spec("featuremap.jobs.run") is not None:
        import zarr
        zarr.create_array(input_store, data=x, chunks=(2, 16, 16))
        np.save(weight_file, w)
        pipeline = {"name": "tiny", "input": {"store": input_store}, "output": {"store": output_store},
                    "layers": [{"conv": {"bank": {"type": "file", "path": weight_file}, "padding": 1}}]}
        featuremap.run(featuremap.load_pipeline(pipeline), client=client, device=device)
        np.testing.assert_allclose(featuremap.open(output_store).data.compute(), expected, rtol=1e-5, atol=1e-5)
        ran.append("pipeline")
loaded = sorted(name for name, module in sys.modules.items() if name.partition(".")[0] in ("cupy", "cupyx") and module)
print(json.dumps({"ran": ran, "cupy_modules": loaded}))
"""


def _run_script(script: str, *arguments, env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *map(str, arguments)],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result


@pytest.fixture
def tripwire(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """Environment that puts a ``cupy`` tripwire first on the path, and the file it leaves
    when featuremap's code imports it."""
    package = tmp_path / "tripwire" / "cupy"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(TRIPWIRE)
    marker = tmp_path / "cupy-imported"
    path = os.pathsep.join(filter(None, [str(package.parent), os.environ.get("PYTHONPATH")]))
    return {
        "PYTHONPATH": path,
        "CUPY_TRIPWIRE": str(marker),
        "FEATUREMAP_DIR": str(REPO / "featuremap"),
    }, marker


def _run_job(
    folder: Path, device: str, env: dict[str, str], cluster: Cluster | None = None
) -> dict:
    """:data:`JOB` in a fresh interpreter, against ``cluster`` or a fresh one-worker cluster
    sharing ``env``."""
    own = cluster is None
    if cluster is None:
        (folder / "cluster").mkdir()
        cluster = Cluster(folder / "cluster", {"plain": []}, env=env)
    try:
        arguments = (
            cluster.scheduler_file,
            folder / "in.zarr",
            folder / "w.npy",
            folder / "out.zarr",
            device,
        )
        report = json.loads(_run_script(JOB, *arguments, env=env).stdout.strip().splitlines()[-1])
    finally:
        if own:
            cluster.close()
    runner = importlib.util.find_spec("featuremap.jobs.run") is not None
    assert report["ran"] == (["numpy", "dask", "pipeline"] if runner else ["numpy", "dask"])
    return report


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.skipif(
    importlib.util.find_spec("cupy") is not None, reason="cupy is installed: not a CPU-only install"
)
def test_cpu_only_install_never_imports_cupy(tmp_path: Path, cpu_cluster: Cluster) -> None:
    """The default device (auto) on an install without CuPy: nothing so much as loads it (in the
    fresh client interpreter; the module's plain worker can load no CuPy either)."""
    assert _run_job(tmp_path, "auto", env={}, cluster=cpu_cluster)["cupy_modules"] == []


@pytest.mark.slow
@pytest.mark.cluster
def test_cpu_runs_never_import_cupy(tripwire, tmp_path: Path) -> None:
    """device='cpu' with a CuPy "installed": neither the client nor the worker imports it."""
    env, marker = tripwire
    assert _run_job(tmp_path, "cpu", env)["cupy_modules"] == []
    assert not marker.exists(), f"a device='cpu' run imported cupy from:\n{marker.read_text()}"


def test_tripwire_catches_an_import(tripwire) -> None:
    """Control for the test above: asking for ``auto`` does look for CuPy, and the tripwire sees it."""
    env, marker = tripwire
    result = _run_script(
        "from featuremap.cluster.devices import block_device; print(block_device('auto'))", env=env
    )
    assert result.stdout.strip() == "cpu"  # the broken 'cupy' makes CUDA unusable: CPU
    assert marker.exists()

"""Where blocks run: CPU or GPU, chosen per worker.

The rule (``device=``, CLI ``--device``):

* ``cpu``: every block runs on NumPy; CuPy is never imported, on the client or on any worker.
* ``auto``: each block runs on the GPU when the worker that runs it has one, else on the CPU.
* ``gpu``: blocks run only on workers that have a GPU; :class:`~featuremap.errors.InputError`
  before anything is written when no worker has one.

A worker *has a GPU* when CuPy imports there and sees a CUDA device, or when the worker was
started with the Dask resource ``GPU`` (``dask worker --resources GPU=1``): the operator's
declaration counts, so that a worker whose CUDA stack is broken fails loudly
(:class:`~featuremap.errors.JobError` naming the worker and CuPy's error) instead of silently
running a GPU job on its CPU.

The client asks every worker once (:func:`plan_devices`, which runs :func:`worker_capabilities`
through ``Client.run``); each block task decides for itself with :func:`block_device`, because
the scheduler, not the client, picks the worker. Blocks cross to the GPU and back with
:func:`to_device` and :func:`to_host`.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from featuremap._typing import Array
from featuremap._validation import parse_choice
from featuremap._vocabulary import DEVICES, Device
from featuremap.engine.device import array_device, to_host
from featuremap.errors import InputError, JobError, describe, option

__all__ = [
    "DevicePlan",
    "WorkerCapabilities",
    "array_device",
    "block_device",
    "local_capabilities",
    "parse_device",
    "plan_devices",
    "to_device",
    "to_host",
    "worker_capabilities",
]

#: The Dask worker resource that declares a GPU (``dask worker --resources GPU=1``).
GPU_RESOURCE = "GPU"


def parse_device(value: Any) -> Device:
    """Validate a ``device`` argument: ``"auto"``, ``"cpu"`` or ``"gpu"``."""
    return parse_choice("device", value, DEVICES)


@dataclass(frozen=True)
class WorkerCapabilities:
    """What one process can compute on.

    Attributes
    ----------
    address : str
        The worker's address (``""`` for the local process).
    cuda_devices : int
        CUDA devices CuPy sees; 0 when CuPy is missing or the driver is unusable.
    gpu_resource : float
        The worker's declared ``GPU`` resource (0 when it declares none).
    cupy_version : str or None
        CuPy's version when it imports.
    cuda_error : str or None
        Why CUDA is unusable (CuPy missing, no driver, no device), else None.
    """

    address: str
    cuda_devices: int = 0
    gpu_resource: float = 0.0
    cupy_version: str | None = None
    cuda_error: str | None = None

    @property
    def has_gpu(self) -> bool:
        return self.cuda_devices > 0 or self.gpu_resource > 0

    def device_for(self, requested: str) -> str:
        """``"gpu"`` or ``"cpu"``: where a block runs on this worker when ``requested`` was asked."""
        return "gpu" if parse_device(requested) != "cpu" and self.has_gpu else "cpu"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "has_gpu": self.has_gpu}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkerCapabilities:
        return cls(
            address=str(data["address"]),
            cuda_devices=int(data.get("cuda_devices", 0)),
            gpu_resource=float(data.get("gpu_resource", 0.0)),
            cupy_version=data.get("cupy_version"),
            cuda_error=data.get("cuda_error"),
        )


@functools.cache
def _probe_cuda() -> tuple[int, str | None, str | None]:
    """``(device count, cupy version, error)`` of this process; imports CuPy only if installed."""
    if importlib.util.find_spec("cupy") is None:
        return 0, None, "cupy is not installed"
    try:
        import cupy

        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as error:  # noqa: BLE001 -- ImportError of a broken install, CUDARuntimeError without a driver
        return 0, None, f"{type(error).__name__}: {error}"
    return count, cupy.__version__, None if count else "CUDA reports no device"


def _declared_gpus(dask_worker: Any) -> float:
    return (
        float(dask_worker.state.total_resources.get(GPU_RESOURCE, 0.0))
        if dask_worker is not None
        else 0.0
    )


def _capabilities(dask_worker: Any) -> WorkerCapabilities:
    count, version, error = _probe_cuda()
    return WorkerCapabilities(
        address=dask_worker.address if dask_worker is not None else "",
        cuda_devices=count,
        gpu_resource=_declared_gpus(dask_worker),
        cupy_version=version,
        cuda_error=error,
    )


def worker_capabilities(dask_worker: Any = None) -> dict[str, Any]:
    """Capabilities of the process it runs in, as a dict (run on every worker by ``Client.run``).

    ``Client.run`` passes the :class:`distributed.Worker` as ``dask_worker``.
    """
    return _capabilities(dask_worker).to_dict()


def _current_worker() -> Any:
    """The :class:`distributed.Worker` running the current task, or None outside one (a worker
    has imported distributed; a small job's threads never import it for this)."""
    distributed = sys.modules.get("distributed")
    if distributed is None:
        return None
    try:
        return distributed.get_worker()
    except ValueError:
        return None


def local_capabilities() -> WorkerCapabilities:
    """Capabilities of this process (the worker running the current task, if any)."""
    return _capabilities(_current_worker())


def block_device(requested: str) -> str:
    """Where the current block task computes: ``"gpu"`` or ``"cpu"``; probes nothing for ``"cpu"``.

    Raises
    ------
    JobError
        ``requested="gpu"`` on a worker without a GPU (the task escaped its worker restriction).
    """
    if parse_device(requested) == "cpu":
        return "cpu"
    capabilities = local_capabilities()
    if requested == "gpu" and not capabilities.has_gpu:
        raise JobError(
            f"a block of a device='gpu' job ran on {capabilities.address or 'a process'} without a GPU "
            f"({capabilities.cuda_error}); keep such jobs on GPU workers (DevicePlan.task_restrictions)"
        )
    return capabilities.device_for(requested)


@dataclass(frozen=True)
class DevicePlan:
    """The device decision for one job: what was asked and what each worker offers."""

    requested: str
    workers: tuple[WorkerCapabilities, ...] = ()

    @property
    def gpu_workers(self) -> tuple[str, ...]:
        return tuple(worker.address for worker in self.workers if worker.has_gpu)

    def device_of(self, address: str) -> str:
        """``"gpu"`` or ``"cpu"``: where blocks run on the worker at ``address``."""
        for worker in self.workers:
            if worker.address == address:
                return worker.device_for(self.requested)
        return "cpu"

    def task_restrictions(self) -> dict[str, Any]:
        """Keyword arguments for ``Client.compute``: ``gpu`` keeps every block on GPU workers."""
        if self.requested != "gpu":
            return {}
        return {"workers": list(self.gpu_workers), "allow_other_workers": False}

    def to_dict(self) -> dict[str, Any]:
        """Provenance: the request and the device chosen per worker."""
        return {
            "requested": self.requested,
            "workers": {worker.address: self.device_of(worker.address) for worker in self.workers},
        }


def plan_devices(client: Any, device: str) -> DevicePlan:
    """Ask every worker of ``client`` what it offers and apply the device rule.

    Parameters
    ----------
    client : distributed.Client
    device : {"auto", "cpu", "gpu"}

    Raises
    ------
    InputError
        ``device="gpu"`` and no worker has a GPU.
    """
    requested = parse_device(device)
    if requested == "cpu":  # never touch CuPy, not even to look
        return DevicePlan(requested)
    reports = client.run(worker_capabilities)
    # named by the address ``run`` reports them under (an inline cluster's one "worker" has none)
    workers = tuple(
        WorkerCapabilities.from_dict({**report, "address": address})
        for address, report in sorted(reports.items())
    )
    plan = DevicePlan(requested, workers)
    if requested == "gpu" and not plan.gpu_workers:
        reasons = sorted({worker.cuda_error or "no GPU" for worker in workers}) or [
            "the cluster has no workers"
        ]
        raise InputError(
            f"device 'gpu' was requested but no worker has a GPU ({len(workers)} checked: {'; '.join(reasons)}); "
            f"install cupy on GPU hosts and start their workers with --resources GPU=1, or use {option('device', repr('auto'))} or cpu"
        )
    return plan


def to_device(block: Array, device: str) -> Array:
    """``block`` as a CuPy array for ``device="gpu"``, a NumPy array for ``"cpu"``.

    Raises
    ------
    JobError
        ``"gpu"`` on a process where CuPy does not work (the worker declared a GPU it cannot use).
    """
    if device == "cpu":
        return to_host(block)
    if device != "gpu":
        raise InputError(f"a block's device must be 'cpu' or 'gpu', got {describe(device)}")
    count, _, error = _probe_cuda()
    if not count:
        worker = _current_worker()
        where = f"worker {worker.address}" if worker is not None else "this process"
        raise JobError(
            f"{where} was chosen to run blocks on its GPU but CUDA is unusable there ({error}); "
            "install cupy matching its CUDA driver, or drop --resources GPU from that worker"
        )
    import cupy

    on_device: Array = cupy.asarray(block)
    return on_device

"""Shared test configuration and fixtures.

* GPU tests (marked ``gpu``) skip with the reason "no CUDA device" when CuPy sees none.
* ``client``: an in-process ``LocalCluster`` (threads, no worker processes) and its client, one per
  test module; ``process_client``: two single-threaded worker *processes*, so tasks, blocks and
  results really cross process borders (pickling), one per test module.
* ``input_store``: writes a NumPy array as a Zarr input into ``tmp_path``.
* Test modules run longest first (:mod:`support.ordering`), as ``tests/module_durations.json``
  (``--store-module-durations``) has them.

Helpers that are not fixtures live in the ``support`` package next to this file.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import settings
from support.gpu import cuda_device_available
from support.ordering import DurationRecorder, longest_first, read_durations
from support.stores import write_input

# Bytecode is cached even where the environment says PYTHONDONTWRITEBYTECODE (this machine image
# does): otherwise every test process rewrites every test module's asserts again, and every
# process the tests start (`featuremap` commands, `dask worker`s) compiles featuremap from source
# again (0.1-0.2 CPU-s each, a few hundred processes in a run).
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

# Property tests (hypothesis) set their own small ``max_examples``; none has a per-example deadline
# (a loaded 2-core machine makes timings meaningless).
settings.register_profile("featuremap", deadline=None)
settings.load_profile("featuremap")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--store-module-durations",
        action="store_true",
        help="write each test module's seconds to tests/module_durations.json (the run order)",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("store_module_durations"):
        config.pluginmanager.register(DurationRecorder(), "module-durations")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    longest_first(items, read_durations())  # see support.ordering
    # torch, where a test module imported it, computes its oracles on one thread: the tests
    # share two cores with Dask's workers (and with each other under pytest-xdist)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    if cuda_device_available():
        return
    skip_gpu = pytest.mark.skip(reason="no CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """A client of an in-process cluster: two single-threaded workers in this process."""
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=False,
            dashboard_address="127.0.0.1:0",  # loopback only, any free port
        ) as cluster,
        distributed.Client(cluster) as active,
    ):
        yield active


@pytest.fixture(scope="module")
def process_client() -> Iterator[Any]:
    """A client of a local cluster of two single-threaded worker processes."""
    pytest.importorskip("distributed")
    # imported here: support.procs copies the environment when imported, and imported at the
    # top it would copy it before the bytecode setting above has run
    from support.procs import local_process_client

    with local_process_client(2) as active:
        yield active


@pytest.fixture
def input_store(tmp_path) -> Callable[..., str]:
    """``input_store(data, chunks=None, name="in.zarr", **zarr_options)``: a Zarr array holding
    ``data`` written into ``tmp_path``; returns its path."""

    def write(
        data: np.ndarray, chunks: Sequence[int] | None = None, name: str = "in.zarr", **options: Any
    ) -> str:
        return write_input(tmp_path / name, data, chunks, **options)

    return write

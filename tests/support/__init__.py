"""Helpers shared by the test folders (on the path through pytest's ``pythonpath = ["tests"]``).

* :mod:`support.cli`: the ``featuremap`` command run in this process (``run_cli``);
* :mod:`support.limited`: many commands in one process under an address-space and a time limit
  (the hostile-input tables);
* :mod:`support.procs`: real processes (the ``featuremap`` command, ``dask scheduler`` / ``worker``);
* :mod:`support.stores`: sample Zarr inputs and output layouts;
* :mod:`support.torch_reference`: float64 / torch oracles of the kernels;
* :mod:`support.gpu`: whether a CUDA device is usable;
* :mod:`support.deploy`: the deploy/ folder's certificate script.

Fixtures built on them (``client``, ``process_client``, ``input_store``) are in ``conftest.py``.
"""

from __future__ import annotations

from pathlib import Path

#: The repository root (``tests/support/__init__.py`` -> ``.``).
REPO = Path(__file__).resolve().parents[2]

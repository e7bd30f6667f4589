"""Which device a block lives on, told without importing CuPy."""

from __future__ import annotations

import numpy as np
from support.procs import fresh_python

from featuremap.engine.device import array_device, is_cupy, to_host


class _FakeCupyArray:
    """Stands in for a CuPy array only by its type's module, as CuPy's arrays are recognised."""

    __module__ = "cupy._core.core"

    def __init__(self, values):
        self.values = values

    def get(self):
        return self.values


def test_numpy_blocks_stay_on_the_host_without_a_copy():
    block = np.arange(6.0).reshape(2, 3)
    assert to_host(block) is block
    assert array_device(block) == "cpu"
    assert not is_cupy(block)


def test_a_device_array_is_told_by_its_module_and_copied_back():
    block = _FakeCupyArray(np.ones(3))
    assert is_cupy(block)
    assert array_device(block) == "gpu"
    np.testing.assert_array_equal(to_host(block), np.ones(3))


def test_telling_devices_never_imports_cupy():
    code = (
        "import sys, numpy as np\n"
        "from featuremap.engine.device import array_device, to_host\n"
        "to_host(np.zeros(1)); array_device(np.zeros(1))\n"
        "print('cupy' in sys.modules)"
    )
    assert fresh_python(code).strip() == "False"

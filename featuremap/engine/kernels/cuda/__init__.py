"""CUDA kernels run through CuPy: the ``.cu`` sources ship as package data and compile on first use.

Importing this package never imports CuPy; :func:`direct_conv2d` does, when it is called.
"""

from __future__ import annotations

from pathlib import Path

from featuremap.engine.kernels.cuda.direct import direct_conv2d, plan_launch, supports

__all__ = ["cuda_sources", "direct_conv2d", "plan_launch", "supports"]


def cuda_sources() -> list[Path]:
    """Every ``.cu`` file of this package (what the build must ship and the tests compile)."""
    return sorted(Path(__file__).parent.glob("*.cu"))

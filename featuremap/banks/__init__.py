"""Filter banks: named, parameterised stacks of 2-D or 3-D filters in ``conv2d`` / ``conv3d`` weight
layout.

>>> import featuremap.banks as banks
>>> bank = banks.get("gabor", size=15, orientations=4, frequencies=[0.1, 0.2])
>>> bank.weight.shape
(16, 1, 15, 15)

``get(name, **params)`` validates every parameter (unknown names and bad values raise a one-line
:class:`featuremap.errors.InputError`) and returns a :class:`Bank`; ``names()`` lists the banks and
``describe(name)`` gives a bank's summary and parameters. Filters are applied by cross-correlation
(``torch.nn.functional.conv2d``, or ``conv3d`` for a bank built with ``ndim=3``):

>>> banks.get("gaussian", ndim=3, sigmas=[[0.5, 2.0, 2.0]]).weight.shape
(10, 1, 5, 17, 17)
"""

from __future__ import annotations

# Importing the family modules registers their banks.
from featuremap.banks import (  # noqa: F401
    basic,
    edges,
    file,
    gabor,
    gaussian,
    ilastik,
    lm,
    mr8,
    schmid,
)
from featuremap.banks._bank import Bank
from featuremap.banks._registry import BankInfo, describe, get, names

__all__ = ["Bank", "BankInfo", "describe", "get", "names"]

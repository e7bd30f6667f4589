"""The Root Filter Set (``rfs``, Varma & Zisserman's ``makeRFSfilters.m``) and ``mr8``.

38 filters in the reference's order: edge (first derivative) filters at (sigma_x, sigma_y) =
(3, 1), (6, 2), (12, 4) -- long axis, across -- x 6 orientations, orientation fastest; bar (second
derivative) filters in the same order; a Gaussian and a LoG at sigma 10. All zero-mean, unit-L1.

``mr8`` is the same bank marked for the maximum-response reduction: ``reduce_groups`` is
``(6, 6, 6, 6, 6, 6, 1, 1)`` -- one response per block of 6 consecutive features (the 6
orientations of one type and scale), the last two passed through -- giving the 8 MR8 responses,
and ``reduce_ops`` follows the reference: ``max_abs`` (``max_k |r_k|``) for the three edge groups,
a signed ``max`` for the three bar groups. On a C-channel input expanded ``per_channel`` both
repeat for each channel. A pipeline's ``reduce`` without ``op`` takes these.

Reference semantics of the reduction (Varma & Zisserman, IJCV 62(1-2):61-81, 2005, section 2.1.3:
outputs "collapsed by recording only the maximum filter response across all orientations"; VGG's
``MR8fast.m`` from the texclass page). The orientations span only pi (``makeRFSfilters.m``: "Not 2pi
as filters have symmetry"), so an edge of the opposite polarity gives negative responses at all 6
edge orientations: the reference takes the maximum of the *absolute* edge responses,
``max_k |r_k|`` (a magnitude, not the signed value at the arg-max). ``MR8fast.m`` keeps the bar
(second-derivative) maximum signed, noting that Varma & Zisserman also take it of the absolute
values; the Gaussian and the LoG pass through signed. A plain signed ``max`` over each group (what
``reduce: {op: max}`` computes) is therefore not MR8 for the edge responses: a bright-to-dark step
gives 0.5 and the mirrored step ~0; with the bank's ``reduce_ops`` both give 0.5.
"""

from __future__ import annotations

import numpy as np

from featuremap.banks._registry import Filters, register
from featuremap.banks._vgg import fspecial_gaussian, fspecial_log, normalise
from featuremap.banks.lm import N_ORIENTATIONS, SIZE, oriented_bank

__all__ = ["MR8_GROUPS"]

SCALES = [1.0, 2.0, 4.0]
ROTATION_INVARIANT_SIGMA = 10.0
#: Group sizes of the max-over-orientations reduction: 6 oriented groups, then 2 single filters.
MR8_GROUPS = (N_ORIENTATIONS,) * (2 * len(SCALES)) + (1, 1)
#: The reduction of each group (``MR8fast.m``): largest absolute edge response, signed bar maximum.
MR8_OPS = ("max_abs",) * len(SCALES) + ("max",) * len(SCALES) + ("max", "max")
#: Filters of the root filter set: 36 oriented, a Gaussian and a LoG.
N_RFS_FILTERS = sum(MR8_GROUPS)


def _root_filter_set(size: int) -> Filters:
    kernels, descriptions = oriented_bank(SCALES, size)
    kernels += [
        normalise(fspecial_gaussian(size, ROTATION_INVARIANT_SIGMA)),
        normalise(fspecial_log(size, ROTATION_INVARIANT_SIGMA)),
    ]
    descriptions += [
        {"name": "gaussian", "sigma": ROTATION_INVARIANT_SIGMA},
        {"name": "log", "sigma": ROTATION_INVARIANT_SIGMA},
    ]
    return Filters(np.stack(kernels)[:, None], descriptions)


@register(
    "rfs",
    "Root Filter Set: 36 oriented edge/bar filters, a Gaussian and a LoG (makeRFSfilters.m)",
    SIZE,
    shape=lambda size: (N_RFS_FILTERS, 1, size, size),
)
def _rfs(size: int) -> Filters:
    return _root_filter_set(size)


@register(
    "mr8",
    "RFS marked for MR8: max over each 6 orientations -> 8 responses (reduce_groups)",
    SIZE,
    shape=lambda size: (N_RFS_FILTERS, 1, size, size),
)
def _mr8(size: int) -> Filters:
    filters = _root_filter_set(size)
    return Filters(
        filters.weight,
        filters.descriptions,
        reduce=N_ORIENTATIONS,
        reduce_groups=MR8_GROUPS,
        reduce_ops=MR8_OPS,
    )

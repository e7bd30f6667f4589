"""Float64 reference of ilastik's pixel features, DESIGN section 8 (the ``features`` layer's oracle).

``reference_features(image, sigmas, features, ndim, kernels)`` computes the features of a 2-D image
or a 3-D volume with :func:`scipy.ndimage.correlate1d` only, in float64, from kernels built here
(not imported from ``featuremap``, so that the package's kernels are checked against them). With
``kernels="fastfilters"`` it equals ``fastfilters2.compute_filters`` channel by channel (2-D;
``tests/banks/test_fastfilters.py``: within about 1e-6 of each feature's largest value; fastfilters2
works in float32), and with ``kernels="scipy"`` the ``scipy.ndimage.gaussian_filter(...,
truncate=4, mode="mirror")`` definitions.

Conventions (all of them checked against fastfilters2 2.0.0.dev0, ilastik/fastfilters2 ``main``,
``cpp/fastfilters2.cpp``, unless marked as SciPy's or DESIGN's):

Kernels, 1-D, as correlation weights ``w[x]``, ``x = -r .. r`` (``sum_x w[x] * f[i + x]``):

* ``fastfilters``: radius ``r = ceil((3 + o/2) * sigma)`` for derivative order ``o`` (each order
  its own: ceil(3 sigma), ceil(3.5 sigma), ceil(4 sigma)); ``g(x) = exp(-x^2 / (2 sigma^2))``;
  ``o = 0``: ``g / sum g``; ``o = 1``: ``x g`` scaled so that ``sum x w = 1`` (positive for
  ``x > 0``: a correlation gives ``+df/dx``, exactly 1 on a unit ramp); ``o = 2``:
  ``(x^2 / sigma^2 - 1) g``, its mean over the ``2r + 1`` samples removed (``sum w = 0``), then
  scaled so that ``sum x^2 w = 2`` (negative centre). fastfilters2 stores its kernels in float32;
  these are the float64 values. The sign of ``o = 1`` cancels in every fastfilters2 output (a
  magnitude, products of two first derivatives): it is the source's (its kernel is positive for
  ``x > 0`` and applied as ``sum_r k[r] (f[i + r] - f[i - r])``), not a measurement.
* ``scipy``: ``scipy.ndimage.gaussian_filter``'s, ``truncate = 4``: radius ``int(4 sigma + 0.5)``
  for every order; the sampled ``g`` normalised to ``sum 1``, times ``1``, ``x / sigma^2`` or
  ``(x^2 - sigma^2) / sigma^4`` (SciPy's convolution kernels mirrored; ``+d/dx`` too).

A derivative of order ``(o_z, o_y, o_x)`` at per-axis sigma is separable: one correlate1d per
axis, the last axis first (as fastfilters2: x, then y, then z), each with its axis's sigma and
order. Border: every pass ``mode="mirror"`` (``d c b | a b c d | c b a``, = torch ``reflect``,
fastfilters2's mirrored copy). The structure tensor's smoothing mirrors the tensor field, not the
input (fastfilters2 does the same). Valid for radii below each axis's length: fastfilters2 and
torch reflect once; SciPy keeps reflecting beyond that.

Features at scale sigma (per axis ``sigma_a``), each ``(channels, *spatial)``:

* ``gaussian``: ``G_sigma * I``;
* ``log``: ``sum_a d2_a G_sigma * I``;
* ``gradient_magnitude``: ``sqrt(sum_a (d_a G_sigma * I)^2)``;
* ``dog``: ``G_sigma * I - G_{0.66 sigma} * I`` (DESIGN's and ilastik's ratio 0.66; each Gaussian
  its own radius; fastfilters2 has no DoG);
* ``structure_tensor_eigenvalues``: ``g_a = d_a G_sigma * I``, ``T_ab = G_{sigma/2} * (g_a g_b)``
  (order 0 kernel at ``sigma / 2`` per axis: fastfilters radius ``ceil(1.5 sigma)``), eigenvalues
  descending, ``ndim`` channels. fastfilters2 ``main`` (what is installed) uses exactly this:
  gradient at ``scale``, smoothing at ``0.5 * scale``, as ilastik's ``innerScale=sigma,
  outerScale=sigma/2``;
* ``hessian_eigenvalues``: eigenvalues of ``[d_a d_b G_sigma * I]`` descending, ``ndim``
  channels (the mixed ``d_a d_b``: order 1 on both axes).

Eigenvalues: :func:`numpy.linalg.eigvalsh` in float64, reversed to descending order.

Channel order: the features in the order given, each over the sigmas in the order given, each
with its channels (``fastfilters2.compute_filters`` is ``gaussian, gradient_magnitude, log,
hessian_eigenvalues, structure_tensor_eigenvalues`` at one sigma: 7 channels). Default
``features``: all six, in :data:`FEATURES` order; default ``sigmas``: :data:`ILASTIK_SIGMAS`,
where 0.3 is used for ``gaussian`` only (given sigmas are used for every feature). Labels:
``gaussian σ=0.3``, ``hessian_eigenvalues σ=1.6 [0]`` (``[i]`` only on features of several
channels), per-axis sigmas as ``σ=0.5×2×2``, numbers with 3 significant digits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import scipy.ndimage as ndi

#: The features, in DESIGN section 8's order (the default order).
FEATURES = (
    "gaussian",
    "log",
    "gradient_magnitude",
    "dog",
    "structure_tensor_eigenvalues",
    "hessian_eigenvalues",
)
#: ilastik's scales; by default 0.3 only for ``gaussian``.
ILASTIK_SIGMAS = (0.3, 0.7, 1.0, 1.6, 3.5, 5.0, 10.0)
#: ``dog`` is ``G(sigma) - G(DOG_RATIO * sigma)``.
DOG_RATIO = 0.66
#: The structure tensor smooths ``g_a g_b`` at ``STRUCTURE_TENSOR_RATIO * sigma``.
STRUCTURE_TENSOR_RATIO = 0.5
#: The kernel families.
KERNELS = ("fastfilters", "scipy")
#: SciPy's kernels: radius ``int(SCIPY_TRUNCATE * sigma + 0.5)``.
SCIPY_TRUNCATE = 4.0
#: The channels of ``fastfilters2.compute_filters(image, sigma)``, in order, as reference features.
FASTFILTERS2_FEATURES = (
    "gaussian",
    "gradient_magnitude",
    "log",
    "hessian_eigenvalues",
    "structure_tensor_eigenvalues",
)

Sigma = float | Sequence[float]


def kernel_radius(sigma: float, order: int, kernels: str) -> int:
    """The 1-D kernel's radius: ``ceil((3 + order / 2) * sigma)`` (fastfilters) or
    ``int(4 * sigma + 0.5)`` (scipy, every order)."""
    if kernels == "fastfilters":
        return math.ceil((3 + 0.5 * order) * sigma)
    if kernels == "scipy":
        return int(SCIPY_TRUNCATE * sigma + 0.5)
    raise ValueError(f"kernels must be one of {KERNELS}, got {kernels!r}")


def kernel_1d(sigma: float, order: int, kernels: str) -> np.ndarray:
    """Correlation weights (float64, ``2r + 1``) of the Gaussian derivative of ``order``."""
    radius = kernel_radius(sigma, order, kernels)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-(x * x) / (2 * sigma * sigma))
    if kernels == "scipy":
        g /= g.sum()
        polynomial = {0: np.ones_like(x), 1: x / sigma**2, 2: (x * x - sigma**2) / sigma**4}
        return polynomial[order] * g
    if order == 0:
        return g / g.sum()
    if order == 1:
        w = x * g
        return w / np.sum(x * w)
    w = (x * x / sigma**2 - 1) * g
    w -= w.mean()
    return w / (np.sum(x * x * w) / 2)


def _per_axis(sigma: Sigma, ndim: int) -> tuple[float, ...]:
    if isinstance(sigma, (int, float)):
        return (float(sigma),) * ndim
    values = tuple(float(s) for s in sigma)
    if len(values) != ndim:
        raise ValueError(f"sigma {sigma!r} must have one value per axis ({ndim})")
    return values


def gaussian_derivative(
    image: np.ndarray, sigma: Sigma, order: Sequence[int], kernels: str
) -> np.ndarray:
    """``d^order G_sigma * image``: one mirrored correlate1d per axis, the last axis first."""
    field = np.asarray(image, dtype=np.float64)
    sigmas = _per_axis(sigma, field.ndim)
    for axis in reversed(range(field.ndim)):
        weights = kernel_1d(sigmas[axis], order[axis], kernels)
        field = ndi.correlate1d(field, weights, axis=axis, mode="mirror")
    return field


def eigenvalues_descending(matrix: list[list[np.ndarray]]) -> np.ndarray:
    """Per-pixel eigenvalues of the symmetric ``n x n`` field ``matrix[a][b]``, ``(n, *spatial)``,
    largest first."""
    stacked = np.stack([np.stack(row, axis=-1) for row in matrix], axis=-2)
    return np.moveaxis(np.linalg.eigvalsh(stacked)[..., ::-1], -1, 0)


def _unit(ndim: int, *axes: int) -> tuple[int, ...]:
    """The derivative order of one derivative along each of ``axes`` (an axis may repeat)."""
    return tuple(axes.count(axis) for axis in range(ndim))


def channels(feature: str, ndim: int) -> int:
    """How many channels ``feature`` has: ``ndim`` for the eigenvalues, else 1."""
    return ndim if feature.endswith("_eigenvalues") else 1


def feature(image: np.ndarray, sigma: Sigma, name: str, kernels: str) -> np.ndarray:
    """One feature at one sigma, ``(channels, *image.shape)`` float64 (definitions above)."""
    ndim = image.ndim
    sigmas = _per_axis(sigma, ndim)

    def derivative(*axes: int) -> np.ndarray:
        return gaussian_derivative(image, sigmas, _unit(ndim, *axes), kernels)

    if name == "gaussian":
        return derivative()[None]
    if name == "log":
        return sum((derivative(a, a) for a in range(ndim)), np.zeros(image.shape))[None]
    if name == "gradient_magnitude":
        squares = sum((derivative(a) ** 2 for a in range(ndim)), np.zeros(image.shape))
        return np.sqrt(squares)[None]
    if name == "dog":
        narrow = gaussian_derivative(image, [DOG_RATIO * s for s in sigmas], (0,) * ndim, kernels)
        return (derivative() - narrow)[None]
    if name == "structure_tensor_eigenvalues":
        gradient = [derivative(a) for a in range(ndim)]
        outer = [STRUCTURE_TENSOR_RATIO * s for s in sigmas]
        smoothing = (0,) * ndim
        tensor = [
            [gaussian_derivative(ga * gb, outer, smoothing, kernels) for gb in gradient]
            for ga in gradient
        ]
        return eigenvalues_descending(tensor)
    if name == "hessian_eigenvalues":
        hessian = [[derivative(a, b) for b in range(ndim)] for a in range(ndim)]
        return eigenvalues_descending(hessian)
    raise ValueError(f"unknown feature {name!r}; features: {', '.join(FEATURES)}")


def _number(value: Sigma) -> str:
    if isinstance(value, (int, float)):
        return f"{float(value):.3g}"
    return "×".join(_number(v) for v in value)


def label(name: str, sigma: Sigma, channel: int | None = None) -> str:
    """``hessian_eigenvalues σ=1.6 [0]``; ``channel`` ``None`` for a single-channel feature."""
    return f"{name} σ={_number(sigma)}" + ("" if channel is None else f" [{channel}]")


def reference_features(
    image: np.ndarray,
    sigmas: Sequence[Sigma] | None = None,
    features: Sequence[str] | None = None,
    ndim: int | None = None,
    kernels: str = "fastfilters",
) -> tuple[np.ndarray, list[str]]:
    """DESIGN section 8's features of ``image`` (one channel, ``ndim`` spatial axes: 2 or 3):
    ``(values, labels)``, values ``(channels, *image.shape)`` float64, one label per channel.

    ``sigmas``: numbers or per-axis lists (``[sz, sy, sx]``), in pixels; ``None`` for
    :data:`ILASTIK_SIGMAS` with 0.3 for ``gaussian`` only. ``features``: names from
    :data:`FEATURES`, in output order; ``None`` for all of them. ``kernels``: ``"fastfilters"``
    (the default, as the layer's) or ``"scipy"``.
    """
    image = np.asarray(image, dtype=np.float64)
    ndim = image.ndim if ndim is None else ndim
    if image.ndim != ndim or ndim not in (2, 3):
        raise ValueError(f"image must have ndim ({ndim}) spatial axes and no others: {image.shape}")
    if kernels not in KERNELS:
        raise ValueError(f"kernels must be one of {KERNELS}, got {kernels!r}")
    default_sigmas = sigmas is None
    scales: Sequence[Sigma] = ILASTIK_SIGMAS if sigmas is None else sigmas
    names = FEATURES if features is None else tuple(features)
    values, labels = [], []
    for name in names:
        for sigma in scales:
            if default_sigmas and name != "gaussian" and sigma == ILASTIK_SIGMAS[0]:
                continue
            result = feature(image, sigma, name, kernels)
            values.append(result)
            several = channels(name, ndim) > 1
            labels.extend(label(name, sigma, c if several else None) for c in range(len(result)))
    return np.concatenate(values), labels

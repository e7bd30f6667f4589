"""The public array functions: one layer on a NumPy, CuPy or Dask array, or an xarray DataArray.

NumPy and CuPy arrays are computed at once by :func:`featuremap.engine.stack.apply`; a Dask array
becomes a lazy, chunk-exact Dask array (:mod:`featuremap.arrays.dask`); an xarray DataArray goes to
:func:`featuremap.apply` -- lazy, its axes read by name and its coordinates composed, never
computed here. A ``torch.Tensor`` works too (torch's own argument order, positional included): it is
read on the host and the result comes back as a tensor on the input's device.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from featuremap.engine.layers import ConvLayer, Layer, PoolLayer
from featuremap.engine.stack import apply_stack, feature_labels, resolve_stack, stack_ndim
from featuremap.errors import InputError

__all__ = [
    "avg_pool2d",
    "avg_pool3d",
    "conv2d",
    "conv3d",
    "max_pool2d",
    "max_pool3d",
    "pixel_feature_labels",
    "pixel_features",
]


def _is_dask(x: Any) -> bool:
    return type(x).__module__.startswith("dask")


def _is_torch(x: Any) -> bool:
    """A ``torch.Tensor``, told without importing torch."""
    return type(x).__module__.partition(".")[0] == "torch" and hasattr(x, "detach")


def host(value: Any) -> Any:
    """``value`` as the kernels take it: a ``torch.Tensor`` as a NumPy array (detached, on the
    host), anything else as it is."""
    return value.detach().cpu().numpy() if _is_torch(value) else value


def _of_rank(layer: Layer, ndim: int, name: str) -> Layer:
    """``layer`` if it has ``ndim`` spatial axes, as torch's ``name`` requires; else one line."""
    if layer.ndim != ndim:
        shape = "(J, C/groups, kh, kw)" if ndim == 2 else "(J, C/groups, kz, ky, kx)"
        given = (
            f"a weight of shape {tuple(layer.weight.shape)}"
            if isinstance(layer, ConvLayer)
            else f"kernel_size {list(getattr(layer, 'kernel_size', ()))}"
        )
        other = (
            "conv3d / max_pool3d / avg_pool3d" if ndim == 2 else "conv2d / max_pool2d / avg_pool2d"
        )
        raise InputError(
            f"{name} takes {ndim}-D kernels (a weight {shape}, {ndim} kernel sizes), got {given}; "
            f"use {other}"
        )
    return layer


def _run(layers: Sequence[Layer], x: Any) -> Any:
    """A stack of layers on ``x`` (its kind of array in, the same kind out)."""
    if _is_torch(x):  # compute on the host, give back a tensor where the input was
        import torch

        return torch.from_numpy(_run(layers, host(x))).to(x.device)
    if type(x).__name__ == "DataArray" and type(x).__module__.startswith("xarray"):
        from featuremap.arrays.xarray import apply as apply_to_dataarray

        return apply_to_dataarray(x, layers)
    empty = _empty_batch(layers, x)
    if empty is not None:
        return empty
    if _is_dask(x):
        # imported here so NumPy-only users never import dask
        from featuremap.arrays.dask import blockwise_stack

        return blockwise_stack(x, layers)
    return apply_stack(layers, x)


def _empty_batch(layers: Sequence[Layer], x: Any) -> Any:
    """For a batch of no images (a batch axis of length 0), the empty result of the right
    shape, as torch returns -- without computing, whose cost models divide by the pixel count;
    ``None`` otherwise. The geometry is still checked (:func:`resolve_stack` refuses what torch
    would refuse on a non-empty batch)."""
    ndim = stack_ndim(layers)
    shape = tuple(getattr(x, "shape", ()))
    batch = shape[: -ndim - 1]
    if len(shape) <= ndim + 1 or any(not isinstance(n, int) for n in shape) or all(batch):
        return None
    resolved = resolve_stack(layers, shape[-ndim:], shape[-ndim - 1])
    result_shape = (*batch, *resolved.output_shape)
    if _is_dask(x):
        import dask.array

        return dask.array.empty(result_shape, dtype="float32")
    module = type(x).__module__.partition(".")[0]
    if module == "cupy":
        import cupy

        return cupy.empty(result_shape, dtype="float32")
    import numpy

    return numpy.empty(result_shape, dtype="float32")


def _conv(
    ndim: int,
    x: Any,
    weight: Any,
    bias: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    groups: int,
    padding_mode: Any,
) -> Any:
    layer = ConvLayer.create(
        host(weight),
        host(bias),
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
    )
    return _run([_of_rank(layer, ndim, f"conv{ndim}d")], x)


def conv2d(
    x: Any,
    weight: Any,
    bias: Any = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    *,
    padding_mode: Any = "zeros",
) -> Any:
    """2-D cross-correlation with exactly the semantics of ``torch.nn.functional.conv2d``.

    Parameters
    ----------
    x : array of shape ``(..., C, H, W)``, or an xarray DataArray
        NumPy, CuPy or Dask array, or a ``torch.Tensor``; integer inputs are converted to
        float32. A DataArray's axes are read from its dimension names (any order) and the result
        is a lazy DataArray with composed coordinates (:func:`featuremap.apply`).
    weight : array of shape ``(J, C / groups, kh, kw)`` (NumPy, CuPy or torch)
    bias : array of shape ``(J,)``, optional
        ``stride``, ``padding``, ``dilation`` and ``groups`` may follow positionally, in torch's
        order (``conv2d(x, w, b, 2, 1)``); ``padding_mode`` is a keyword.
    stride, dilation : int or (int, int)
    padding : int, (int, int), ((top, bottom), (left, right)), "valid" or "same"
        ``"same"`` gives ``ceil(n / stride)`` outputs (PyTorch for stride 1, TensorFlow beyond).
    groups : int
    padding_mode : {"zeros", "reflect", "replicate", "circular"}, or one per axis
        PyTorch's names (a list ``[y_mode, x_mode]`` or a mapping ``{"x": "circular"}`` gives
        each axis its own); applied at the true image border only.

    Returns
    -------
    array of shape ``(..., J, H_out, W_out)``, float32, of the same kind as ``x``
        lazy and chunk-exact for a Dask ``x``.
    """
    return _conv(2, x, weight, bias, stride, padding, dilation, groups, padding_mode)


def conv3d(
    x: Any,
    weight: Any,
    bias: Any = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    *,
    padding_mode: Any = "zeros",
) -> Any:
    """3-D cross-correlation with exactly the semantics of ``torch.nn.functional.conv3d``.

    As :func:`conv2d`, over ``(z, y, x)``: ``x`` of shape ``(..., C, D, H, W)``, ``weight`` of
    shape ``(J, C / groups, kz, ky, kx)``, per-axis values ``(z, y, x)``; returns
    ``(..., J, D_out, H_out, W_out)``. A DataArray's ``z`` axis is filtered, not a batch axis.
    """
    return _conv(3, x, weight, bias, stride, padding, dilation, groups, padding_mode)


def _max_pool(
    ndim: int,
    x: Any,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    ceil_mode: bool,
    return_indices: bool,
) -> Any:
    name = f"max_pool{ndim}d"
    if return_indices:
        raise InputError(
            f"{name}(return_indices=True) is not offered: featuremap returns the pooled "
            "values only; use torch for unpooling indices"
        )
    layer = PoolLayer.create("max", kernel_size, stride, padding, dilation, ceil_mode, ndim=ndim)
    return _run([_of_rank(layer, ndim, name)], x)


def max_pool2d(
    x: Any,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Any:
    """Max pooling exactly like ``torch.nn.functional.max_pool2d`` (``stride`` defaults to the
    kernel size; torch's argument order). ``return_indices`` is refused: featuremap computes
    features, not unpooling indices."""
    return _max_pool(2, x, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def max_pool3d(
    x: Any,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Any:
    """Max pooling exactly like ``torch.nn.functional.max_pool3d``, over ``(z, y, x)`` of
    ``x (..., C, D, H, W)``; as :func:`max_pool2d` otherwise."""
    return _max_pool(3, x, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def _avg_pool(
    ndim: int,
    x: Any,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    ceil_mode: bool,
    count_include_pad: bool,
    divisor_override: int | None,
) -> Any:
    layer = PoolLayer.create(
        "avg",
        kernel_size,
        stride,
        padding,
        ceil_mode=ceil_mode,
        count_include_pad=count_include_pad,
        divisor_override=divisor_override,
        ndim=ndim,
    )
    return _run([_of_rank(layer, ndim, f"avg_pool{ndim}d")], x)


def avg_pool2d(
    x: Any,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Any:
    """Average pooling exactly like ``torch.nn.functional.avg_pool2d`` (torch's argument order
    and defaults: padding counted in the divisor, ``divisor_override`` replacing it)."""
    return _avg_pool(
        2, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
    )


def avg_pool3d(
    x: Any,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Any:
    """Average pooling exactly like ``torch.nn.functional.avg_pool3d``, over ``(z, y, x)`` of
    ``x (..., C, D, H, W)``; as :func:`avg_pool2d` otherwise."""
    return _avg_pool(
        3, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
    )


def _pixel_features(
    sigmas: Any, features: Any, ndim: Any, kernels: Any
) -> Any:  # a featuremap.pipeline.layers.FeaturesSpec
    """The ``features`` layer, checked as a pipeline checks it."""
    from featuremap.pipeline.layers._base import ParseContext
    from featuremap.pipeline.layers.features import FeaturesSpec

    spec: dict[str, Any] = {"ndim": ndim, "kernels": kernels}
    if sigmas is not None:
        spec["sigmas"] = list(sigmas) if isinstance(sigmas, (list, tuple)) else [sigmas]
    if features is not None:
        spec["features"] = [features] if isinstance(features, str) else list(features)
    return FeaturesSpec.parse(spec, "pixel_features", ParseContext(Path.cwd()))


def pixel_features(
    x: Any,
    sigmas: Any = None,
    features: Any = None,
    *,
    ndim: int = 2,
    kernels: str = "fastfilters",
) -> Any:
    """ilastik's pixel features of ``x`` (DESIGN section 8), exactly as the ``features`` layer.

    Parameters
    ----------
    x : array of shape ``(..., Y, X)`` (``ndim=2``) or ``(..., Z, Y, X)`` (``ndim=3``)
        NumPy, CuPy or Dask (lazy and chunk-exact), a torch tensor, or an xarray DataArray; every
        leading axis is a batch axis (one image or volume each).
    sigmas : number or list, optional
        Scales in pixels, each a number or one per axis; default ilastik's seven (σ 0.3 for
        ``gaussian`` only).
    features : str or list of str, optional
        From ``gaussian, log, gradient_magnitude, dog, structure_tensor_eigenvalues,
        hessian_eigenvalues``; default all of them, in that order.
    ndim : {2, 3}
    kernels : {"fastfilters", "scipy"}

    Returns
    -------
    array of shape ``(..., F, [Z,] Y, X)``, float32, of the same kind as ``x``
        Channels in :func:`pixel_feature_labels` order.
    """
    spec = _pixel_features(sigmas, features, ndim, kernels)
    if type(x).__name__ == "DataArray" and type(x).__module__.startswith("xarray"):
        from featuremap.arrays.xarray import apply as apply_to_dataarray

        return apply_to_dataarray(x, {"layers": [{"features": spec.to_dict()}]})
    layers = spec.pixel_features().layers(1)
    if getattr(x, "ndim", 0) < ndim:
        raise InputError(
            f"pixel_features with ndim={ndim} needs an array of at least {ndim} dimensions, "
            f"got shape {tuple(getattr(x, 'shape', ()))}"
        )
    return _run(layers, x[(..., None, *(slice(None),) * ndim)])


def pixel_feature_labels(
    sigmas: Any = None, features: Any = None, *, ndim: int = 2, kernels: str = "fastfilters"
) -> list[str]:
    """The label of each channel :func:`pixel_features` gives (``hessian_eigenvalues σ=1.6 [0]``)."""
    layers = _pixel_features(sigmas, features, ndim, kernels).pixel_features().layers(1)
    return list(feature_labels(layers, 1))

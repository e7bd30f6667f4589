"""The public array functions: one layer on a NumPy, CuPy or Dask array, or an xarray DataArray.

NumPy and CuPy arrays are computed at once by :func:`featuremap.engine.stack.apply`; a Dask array
becomes a lazy, chunk-exact Dask array (:mod:`featuremap.arrays.dask`); an xarray DataArray goes to
:func:`featuremap.apply` -- lazy, its axes read by name and its coordinates composed, never
computed here. A ``torch.Tensor`` works too (torch's own argument order, positional included): it is
read on the host and the result comes back as a tensor on the input's device.
"""

from __future__ import annotations

from typing import Any

from featuremap.engine.layers import ConvLayer, Layer, PoolLayer
from featuremap.engine.stack import apply
from featuremap.errors import InputError

__all__ = ["avg_pool2d", "conv2d", "max_pool2d"]


def _is_dask(x: Any) -> bool:
    return type(x).__module__.startswith("dask")


def _is_torch(x: Any) -> bool:
    """A ``torch.Tensor``, told without importing torch."""
    return type(x).__module__.partition(".")[0] == "torch" and hasattr(x, "detach")


def host(value: Any) -> Any:
    """``value`` as the kernels take it: a ``torch.Tensor`` as a NumPy array (detached, on the
    host), anything else as it is."""
    return value.detach().cpu().numpy() if _is_torch(value) else value


def _run(layer: Layer, x: Any) -> Any:
    if _is_torch(x):  # compute on the host, give back a tensor where the input was
        import torch

        return torch.from_numpy(_run(layer, host(x))).to(x.device)
    if type(x).__name__ == "DataArray" and type(x).__module__.startswith("xarray"):
        from featuremap.arrays.xarray import apply as apply_to_dataarray

        return apply_to_dataarray(x, [layer])
    if _is_dask(x):
        # imported here so NumPy-only users never import dask
        from featuremap.arrays.dask import blockwise_stack

        return blockwise_stack(x, [layer])
    return apply(layer, x)


def conv2d(
    x: Any,
    weight: Any,
    bias: Any = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    *,
    padding_mode: str = "zeros",
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
    padding_mode : {"zeros", "reflect", "replicate", "circular"}
        PyTorch's names; applied at the true image border only.

    Returns
    -------
    array of shape ``(..., J, H_out, W_out)``, float32, of the same kind as ``x``
        lazy and chunk-exact for a Dask ``x``.
    """
    layer = ConvLayer.create(
        host(weight),
        host(bias),
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
    )
    return _run(layer, x)


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
    if return_indices:
        raise InputError(
            "max_pool2d(return_indices=True) is not offered: featuremap returns the pooled "
            "values only; use torch for unpooling indices"
        )
    return _run(PoolLayer.create("max", kernel_size, stride, padding, dilation, ceil_mode), x)


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
    layer = PoolLayer.create(
        "avg",
        kernel_size,
        stride,
        padding,
        ceil_mode=ceil_mode,
        count_include_pad=count_include_pad,
        divisor_override=divisor_override,
    )
    return _run(layer, x)

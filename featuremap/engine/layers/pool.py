"""The ``pool`` layer kind: ``max_pool2d/3d`` / ``avg_pool2d/3d`` semantics, torch's parameters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np

from featuremap._typing import Array
from featuremap._validation import parse_bool, parse_choice, parse_int, parse_sizes
from featuremap._vocabulary import POOL_OPS, PoolOp
from featuremap.engine.geometry import (
    AxisLayer,
    LayerGeometry,
    Padding,
    ResolvedPadding,
    Sizes,
    axis_names,
    output_length,
    parse_padding,
    same_padding,
)
from featuremap.engine.kernels import avg_pool_valid, max_pool_valid
from featuremap.engine.layers._base import (
    FeatureDescription,
    Window,
    padding_spec,
    requested_geometry,
)
from featuremap.errors import InputError

__all__ = ["PoolLayer", "check_pool_padding"]


@dataclass(frozen=True)
class PoolLayer:
    """Max or average pooling with ``torch.nn.functional.max_pool2d/3d`` / ``avg_pool2d/3d`` semantics
    (the rank is ``len(kernel_size)``):
    ``dilation`` (max), ``ceil_mode``, ``count_include_pad`` and ``divisor_override`` (avg)
    included, and torch's refusals.

    ``ceil_mode`` becomes extra padding at the far end (filled like the rest: ``-inf`` for max,
    zeros for avg), so block planning and the stack's geometry need nothing new; the average's
    divisor then counts only what torch counts (:meth:`divisor`).
    """

    op: PoolOp
    kernel_size: Sizes
    stride: Sizes
    padding: Padding = ((0, 0), (0, 0))
    dilation: Sizes = (1, 1)
    ceil_mode: bool = False
    count_include_pad: bool = True
    divisor_override: int | None = None

    kind: ClassVar[str] = "pool"

    @classmethod
    def create(
        cls,
        op: Any = "max",
        kernel_size: Any = 2,
        stride: Any = None,
        padding: Any = 0,
        dilation: Any = 1,
        ceil_mode: Any = False,
        count_include_pad: Any = True,
        divisor_override: Any = None,
        *,
        ndim: int = 2,
    ) -> PoolLayer:
        """Validate parameters; ``ndim`` (2 or 3) is the rank of a pool whose ``kernel_size`` is
        one number (a list's length is its rank)."""
        parsed_op = parse_choice("pool type", op, POOL_OPS)
        if isinstance(kernel_size, (list, tuple)) and len(kernel_size) in (2, 3):
            ndim = len(kernel_size)
        kernel = parse_sizes("kernel_size", kernel_size, ndim)
        strides = kernel if stride is None else parse_sizes("stride", stride, ndim)
        dilations = parse_sizes("dilation", dilation, ndim)
        pads = parse_padding(padding, ndim)
        if parsed_op == "avg" and dilations != (1,) * ndim:
            raise InputError(
                f"dilation is a max pool's parameter; avg_pool{ndim}d has none (PyTorch)"
            )
        if parsed_op == "max" and (count_include_pad is not True or divisor_override is not None):
            raise InputError(
                "count_include_pad and divisor_override are an avg pool's parameters, not max's"
            )
        override = None
        if divisor_override is not None:
            override = parse_int("divisor_override", divisor_override)
            if override == 0:
                raise InputError("divisor_override must not be zero (PyTorch's rule)")
        check_pool_padding(kernel, pads)
        return cls(
            parsed_op,
            kernel,
            strides,
            pads,
            dilations,
            parse_bool("ceil_mode", ceil_mode),
            parse_bool("count_include_pad", count_include_pad),
            override,
        )

    @property
    def ndim(self) -> int:
        return len(self.kernel_size)

    @property
    def pad_value(self) -> float:
        return float("-inf") if self.op == "max" else 0.0

    def out_channels(self, in_channels: int) -> int:
        if in_channels < 1:  # PyTorch refuses an empty channel axis (an empty batch is fine)
            raise InputError(
                f"{self.op} pooling needs at least one channel, but its input has {in_channels}"
            )
        return in_channels

    def _explicit(self, shape: Sequence[int]) -> LayerGeometry:
        """The geometry as given (``"same"`` resolved), before ``ceil_mode`` extends it."""
        padding: ResolvedPadding
        if isinstance(self.padding, str):  # "same", the only string a pool's padding parses to
            padding = tuple(
                same_padding(int(n), k, s, d)
                for n, k, s, d in zip(
                    shape, self.kernel_size, self.stride, self.dilation, strict=True
                )
            )
        else:
            padding = self.padding
        return LayerGeometry(self.kernel_size, self.stride, self.dilation, padding, "constant")

    def geometry(self, shape: Sequence[int]) -> LayerGeometry:
        """The resolved geometry; ``ceil_mode``'s last windows as extra padding at the far end
        (torch takes a last window that starts inside the input or its near padding, even where
        the padded input is shorter than the kernel's span)."""
        if len(shape) != self.ndim:
            raise InputError(
                f"a {self.ndim}-D pool needs an input with {self.ndim} spatial axes, got {len(shape)}"
            )
        explicit = self._explicit(shape)
        if self.ceil_mode:
            padding = tuple(
                (lo, hi + _ceil_extra(int(n), axis))
                for n, axis, (lo, hi) in zip(shape, explicit.axes, explicit.padding, strict=True)
            )
            explicit = replace(explicit, padding=padding)
        explicit.output_shape(shape)  # an empty output is an error
        return explicit

    def divisor(self, window: Window, out_shape: Sizes) -> Any:
        """What the window sums are divided by: ``divisor_override``, or per output the taps
        torch counts -- inside the explicitly padded input (``count_include_pad``), or inside the
        input alone. ``None`` where it is the kernel's size everywhere."""
        if self.divisor_override is not None:
            return self.divisor_override
        if self.count_include_pad and not self.ceil_mode:
            return None  # every window lies inside the explicitly padded input: kh * kw taps
        explicit = self._explicit(window.input_size)
        counts = []
        for origin, length, n, axis in zip(
            window.origin, out_shape, window.input_size, explicit.axes, strict=True
        ):
            starts = (origin + np.arange(length)) * axis.stride - axis.pad_lo
            stops = starts + axis.kernel
            if self.count_include_pad:
                counts.append(np.minimum(stops, n + axis.pad_hi) - starts)
            else:
                counts.append(np.minimum(stops, n) - np.maximum(starts, 0))
        divisor = np.ones((1,) * self.ndim, dtype=np.int64)
        for position, count in enumerate(counts):  # the outer product of the per-axis counts
            shape = [-1 if a == position else 1 for a in range(self.ndim)]
            divisor = divisor * count.reshape(shape)
        return None if (divisor == np.prod(self.kernel_size)).all() else divisor

    def apply_padded(self, x: Array, window: Window) -> Array:
        if self.op == "max":
            return max_pool_valid(x, self.kernel_size, self.stride, self.dilation)
        out_shape = tuple(
            output_length(int(n), k, s, 1, 0, 0)
            for n, k, s in zip(x.shape[-self.ndim :], self.kernel_size, self.stride, strict=True)
        )
        return avg_pool_valid(x, self.kernel_size, self.stride, self.divisor(window, out_shape))

    def _options(self) -> dict[str, Any]:
        """The parameters beyond kernel, stride and padding, where they differ from torch's
        defaults (a default pool is described exactly as before they existed)."""
        options: dict[str, Any] = {}
        if self.ceil_mode:
            options["ceil_mode"] = True
        if not self.count_include_pad:
            options["count_include_pad"] = False
        if self.divisor_override is not None:
            options["divisor_override"] = self.divisor_override
        return options

    def describe(self) -> dict[str, Any]:
        return {
            "type": "pool",
            "op": self.op,
            "padding_spec": padding_spec(self.padding),
            **self._options(),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.describe(),
            **requested_geometry(self.kernel_size, self.stride, self.padding, self.dilation),
        }

    def describe_features(
        self, inputs: Sequence[FeatureDescription], channel_names: Sequence[str] | None
    ) -> list[FeatureDescription]:
        """A pool keeps its input features (and their descriptions)."""
        return list(inputs)


def _ceil_extra(n: int, axis: AxisLayer) -> int:
    """Extra far-end padding for ``ceil_mode``: torch counts a last, partial window when it
    starts inside the input or its near padding (``0`` where even that leaves no window: the
    geometry then refuses the empty output)."""
    padded = n + axis.pad_lo + axis.pad_hi
    out = -(-(padded - axis.reach - 1) // axis.stride) + 1
    if (out - 1) * axis.stride >= n + axis.pad_lo:
        out -= 1
    return max(0, (out - 1) * axis.stride + axis.reach + 1 - padded) if out >= 1 else 0


def check_pool_padding(kernel: Sizes, padding: Padding) -> None:
    """PyTorch's rule for a pool's padding: at most half the kernel size per axis, so that every
    window holds an input pixel."""
    if isinstance(padding, str):  # "same" pads at most half the span by construction
        return
    for axis, k, (lo, hi) in zip(axis_names(len(kernel)), kernel, padding, strict=True):
        if max(lo, hi) * 2 > k:
            raise InputError(
                f"pool padding {max(lo, hi)} along {axis} must be at most half the kernel size "
                f"{k} (PyTorch's rule: every window must hold an input pixel)"
            )

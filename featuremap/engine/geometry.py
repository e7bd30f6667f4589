"""Geometry of conv and pool layers: pure integer arithmetic, no array library.

Everything here is per spatial axis (``y`` then ``x``) and follows ``../DESIGN.md`` section 1-2:

* output length ``n_out = floor((n + lo + hi - d*(k-1) - 1) / s) + 1`` (an error when ``< 1``);
* ``"same"`` padding ``n_out = ceil(n / s)``, ``total = max((n_out-1)*s + d*(k-1) + 1 - n, 0)``,
  ``lo = total // 2`` (PyTorch for stride 1, TensorFlow for stride > 1);
* the composition of a stack of layers into receptive field, jump and offset
  (``jump_l = jump_{l-1} s_l``, ``rf_l = rf_{l-1} + d_l (k_l-1) jump_{l-1}``,
  ``start_l = start_{l-1} + (d_l (k_l-1)/2 - lo_l) jump_{l-1}``);
* the input window that a range of outputs reads, which gives block halos.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from featuremap._validation import parse_pair
from featuremap._vocabulary import PADDING_MODES, BorderMode, PaddingMode
from featuremap.errors import InputError, describe

__all__ = [
    "AxisLayer",
    "LayerGeometry",
    "PadPair",
    "Padding",
    "Pair",
    "ResolvedPadding",
    "StackGeometry",
    "ceil_div",
    "compose",
    "input_window",
    "output_centres",
    "output_length",
    "parse_padding",
    "parse_padding_mode",
    "resolve_layer",
    "same_padding",
]

Pair = tuple[int, int]
PadPair = tuple[int, int]
#: Padding resolved per axis: ``((top, bottom), (left, right))``.
ResolvedPadding = tuple[PadPair, PadPair]
#: A parsed padding: ``"same"`` (resolved against the input size later) or resolved pairs.
Padding = str | ResolvedPadding


_PADDING_ALLOWED = "'same', 'valid', an integer >= 0, [py, px] or [[top, bottom], [left, right]]"


def parse_padding(value: Any) -> Padding:
    """Parse a padding: ``int``, ``[py, px]``, ``[[lo, hi], [lo, hi]]``, ``"valid"`` or ``"same"``."""
    if isinstance(value, str):
        if value == "valid":
            return ((0, 0), (0, 0))
        if value == "same":
            return "same"
        raise InputError(f"padding must be {_PADDING_ALLOWED}, got {describe(value)}")
    if (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, (list, tuple)) for v in value)
    ):
        y_pad = parse_pair("padding (y: [top, bottom])", value[0], minimum=0)
        x_pad = parse_pair("padding (x: [left, right])", value[1], minimum=0)
        return (y_pad, x_pad)
    try:
        py, px = parse_pair("padding", value, minimum=0)
    except InputError:
        raise InputError(f"padding must be {_PADDING_ALLOWED}, got {describe(value)}") from None
    return ((py, py), (px, px))


def parse_padding_mode(value: Any) -> PaddingMode:
    """Check a padding mode against PyTorch's names (``zeros``, ``reflect``, ``replicate``, ``circular``)."""
    for mode in PADDING_MODES:
        if value == mode and isinstance(value, str):
            return mode
    hint = (
        " (SciPy's 'reflect' repeats the edge pixel and is not offered; torch 'reflect' "
        "is SciPy 'mirror')"
        if value in ("symmetric", "mirror")
        else ""
    )
    raise InputError(
        f"padding_mode must be one of {', '.join(PADDING_MODES)}, got {describe(value)}{hint}"
    )


def same_padding(n: int, kernel: int, stride: int, dilation: int) -> PadPair:
    """``(lo, hi)`` padding so that ``n_out = ceil(n / stride)``."""
    n_out = ceil_div(n, stride)
    total = max((n_out - 1) * stride + dilation * (kernel - 1) + 1 - n, 0)
    return (total // 2, total - total // 2)


def output_length(
    n: int, kernel: int, stride: int, dilation: int, lo: int, hi: int, *, axis: str = "y"
) -> int:
    """``floor((n + lo + hi - d*(k-1) - 1) / s) + 1``; an :class:`InputError` when it is below 1."""
    span = dilation * (kernel - 1) + 1
    padded = n + lo + hi
    if padded < span:
        raise InputError(
            f"a kernel spanning {span} pixels along {axis} (kernel {kernel}, dilation {dilation}) "
            f"does not fit the padded input of {padded} pixels ({n} + padding {lo}+{hi}); "
            "use a smaller kernel or dilation, more padding, or a larger input"
        )
    return (padded - span) // stride + 1


@dataclass(frozen=True)
class AxisLayer:
    """One layer along one axis, padding resolved: the unit of all window arithmetic."""

    kernel: int
    stride: int = 1
    dilation: int = 1
    pad_lo: int = 0
    pad_hi: int = 0
    padding_mode: BorderMode = "zeros"

    @property
    def reach(self) -> int:
        """Distance from a window's first to its last tap, ``d * (k - 1)``."""
        return self.dilation * (self.kernel - 1)

    def output_length(self, n: int, *, axis: str = "y") -> int:
        return output_length(
            n, self.kernel, self.stride, self.dilation, self.pad_lo, self.pad_hi, axis=axis
        )

    def input_interval(self, out_start: int, out_stop: int) -> tuple[int, int]:
        """Input coordinates ``[start, stop)`` read by outputs ``[out_start, out_stop)``.

        Coordinates are those of the unpadded input, so they run below 0 and past ``n`` where
        the window reaches into the padding.
        """
        start = out_start * self.stride - self.pad_lo
        stop = (out_stop - 1) * self.stride - self.pad_lo + self.reach + 1
        return start, stop


@dataclass(frozen=True)
class LayerGeometry:
    """One layer's geometry, parsed and resolved once: kernel size, stride, dilation, the
    ``(lo, hi)`` padding per axis and how the border is filled (``padding_mode``).

    Block planning, the kernels and the output store's attributes all read it from here.
    """

    kernel_size: Pair
    stride: Pair = (1, 1)
    dilation: Pair = (1, 1)
    padding: ResolvedPadding = ((0, 0), (0, 0))
    padding_mode: BorderMode = "zeros"

    @property
    def axes(self) -> tuple[AxisLayer, AxisLayer]:
        """The layer along ``y`` and along ``x``."""
        y_axis, x_axis = (
            AxisLayer(
                self.kernel_size[i],
                self.stride[i],
                self.dilation[i],
                *self.padding[i],
                padding_mode=self.padding_mode,
            )
            for i in range(2)
        )
        return y_axis, x_axis

    def output_shape(self, shape: Sequence[int]) -> Pair:
        """Output ``(H_out, W_out)`` for an input ``(H, W)``; :class:`InputError` if empty."""
        y_axis, x_axis = self.axes
        return (y_axis.output_length(shape[0], axis="y"), x_axis.output_length(shape[1], axis="x"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "dilation": list(self.dilation),
            "padding": [list(p) for p in self.padding],
            "padding_mode": self.padding_mode,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayerGeometry:
        top_bottom, left_right = data.get("padding", [[0, 0], [0, 0]])
        mode = data.get("padding_mode", "zeros")
        return cls(
            kernel_size=parse_pair("kernel_size", data["kernel_size"]),
            stride=parse_pair("stride", data.get("stride", 1)),
            dilation=parse_pair("dilation", data.get("dilation", 1)),
            padding=(
                parse_pair("padding", top_bottom, minimum=0),
                parse_pair("padding", left_right, minimum=0),
            ),
            padding_mode="constant" if mode == "constant" else parse_padding_mode(mode),
        )


def resolve_layer(
    kernel_size: Pair,
    stride: Pair,
    dilation: Pair,
    padding: Padding,
    shape: Sequence[int],
    padding_mode: BorderMode = "zeros",
) -> LayerGeometry:
    """Resolve a layer's parsed parameters against the input ``(H, W)``: ``"same"`` becomes
    ``(lo, hi)`` pairs, and the output is checked not to be empty, so a resolved layer always
    has a valid output shape."""
    if padding == "same":
        y_pad, x_pad = (
            same_padding(shape[i], kernel_size[i], stride[i], dilation[i]) for i in range(2)
        )
        resolved: ResolvedPadding = (y_pad, x_pad)
    elif isinstance(padding, str):
        raise InputError(f"padding must be {_PADDING_ALLOWED}, got {describe(padding)}")
    else:
        resolved = padding
    geometry = LayerGeometry(kernel_size, stride, dilation, resolved, padding_mode)
    geometry.output_shape(shape)
    return geometry


@dataclass(frozen=True)
class StackGeometry:
    """Effective geometry of a stack of layers, per axis (DESIGN section 2).

    Output pixel ``i`` is centred on input coordinate ``offset + i * jump`` and sees an input
    window ``receptive_field`` pixels wide.
    """

    receptive_field: Pair = (1, 1)
    jump: Pair = (1, 1)
    offset: tuple[float, float] = (0.0, 0.0)

    def then(self, layer: LayerGeometry) -> StackGeometry:
        """The geometry after one more layer."""
        y_axis, x_axis = (
            (
                self.receptive_field[i] + axis.reach * self.jump[i],
                self.jump[i] * axis.stride,
                self.offset[i] + (axis.reach / 2 - axis.pad_lo) * self.jump[i],
            )
            for i, axis in enumerate(layer.axes)
        )
        return StackGeometry((y_axis[0], x_axis[0]), (y_axis[1], x_axis[1]), (y_axis[2], x_axis[2]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "receptive_field": list(self.receptive_field),
            "jump": list(self.jump),
            "offset": [_plain_number(o) for o in self.offset],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StackGeometry:
        rf_y, rf_x = (int(v) for v in data["receptive_field"])
        jump_y, jump_x = (int(v) for v in data["jump"])
        offset_y, offset_x = (float(v) for v in data["offset"])
        return cls((rf_y, rf_x), (jump_y, jump_x), (offset_y, offset_x))


def _plain_number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else float(value)


def compose(layers: Iterable[LayerGeometry]) -> list[StackGeometry]:
    """Cumulative geometry after each layer of a stack (one entry per layer)."""
    current = StackGeometry()
    history = []
    for layer in layers:
        current = current.then(layer)
        history.append(current)
    return history


def output_centres(stack: StackGeometry, shape: Sequence[int]) -> tuple[list[float], list[float]]:
    """Centre, in input pixel coordinates, of every output pixel along ``y`` and ``x``."""
    y_centres, x_centres = (
        [stack.offset[i] + k * stack.jump[i] for k in range(shape[i])] for i in range(2)
    )
    return y_centres, x_centres


def input_window(axes: Sequence[AxisLayer], out_start: int, out_stop: int) -> tuple[int, int]:
    """Input interval ``[start, stop)`` that outputs ``[out_start, out_stop)`` of a stack read.

    ``axes`` lists the stack's layers along one axis, first layer first. The interval is in
    coordinates of the unpadded input and may extend past its borders (into padding); it ignores
    how intermediate borders fold, which only ever shrinks what is needed.
    """
    if out_stop <= out_start:
        raise ValueError("input_window needs a non-empty output range")
    start, stop = out_start, out_stop
    for axis in reversed(axes):
        start, stop = axis.input_interval(start, stop)
    return start, stop


def ceil_div(a: int, b: int) -> int:
    """``ceil(a / b)`` for integers, exact for any size."""
    return -(-a // b)

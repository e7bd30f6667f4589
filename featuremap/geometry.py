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

from featuremap.errors import InputError, describe

__all__ = [
    "PADDING_MODES",
    "AxisLayer",
    "LayerGeometry",
    "StackGeometry",
    "ceil_div",
    "compose",
    "input_window",
    "output_centres",
    "output_length",
    "parse_pair",
    "parse_padding",
    "parse_padding_mode",
    "resolve_layer",
    "same_padding",
]

PADDING_MODES: tuple[str, ...] = ("zeros", "reflect", "replicate", "circular")

Pair = tuple[int, int]
PadPair = tuple[int, int]
#: A parsed padding: ``"same"`` (resolved against the input size later) or ``((lo, hi), (lo, hi))``.
Padding = str | tuple[PadPair, PadPair]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) or (
        type(value).__module__ == "numpy" and hasattr(value, "dtype") and value.dtype.kind in "iu"
    )


def parse_pair(name: str, value: Any, *, minimum: int = 1) -> Pair:
    """Parse an int or a ``(y, x)`` pair of ints, each ``>= minimum``.

    Raises
    ------
    InputError
        Naming ``name``, the value and what is allowed.
    """
    allowed = f"an integer >= {minimum} or a pair [y, x] of them"
    if _is_int(value):
        items = (int(value), int(value))
    elif isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_int(v) for v in value):
        items = (int(value[0]), int(value[1]))
    else:
        raise InputError(f"{name} must be {allowed}, got {describe(value)}")
    if min(items) < minimum:
        raise InputError(f"{name} must be {allowed}, got {describe(value)}")
    return items


_PADDING_ALLOWED = "'same', 'valid', an integer >= 0, [py, px] or [[top, bottom], [left, right]]"


def parse_padding(value: Any) -> Padding:
    """Parse a padding: ``int``, ``[py, px]``, ``[[lo, hi], [lo, hi]]``, ``"valid"`` or ``"same"``."""
    if isinstance(value, str):
        if value == "valid":
            return ((0, 0), (0, 0))
        if value == "same":
            return "same"
        raise InputError(f"padding must be {_PADDING_ALLOWED}, got {describe(value)}")
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(
        isinstance(v, (list, tuple)) for v in value
    ):
        y_pad = parse_pair("padding (y: [top, bottom])", value[0], minimum=0)
        x_pad = parse_pair("padding (x: [left, right])", value[1], minimum=0)
        return (y_pad, x_pad)
    try:
        py, px = parse_pair("padding", value, minimum=0)
    except InputError:
        raise InputError(f"padding must be {_PADDING_ALLOWED}, got {describe(value)}") from None
    return ((py, py), (px, px))


def parse_padding_mode(value: Any) -> str:
    """Check a padding mode against PyTorch's names (``zeros``, ``reflect``, ``replicate``, ``circular``)."""
    if value not in PADDING_MODES:
        raise InputError(
            f"padding_mode must be one of {', '.join(PADDING_MODES)}, got {describe(value)}"
            + (" (SciPy's 'reflect' repeats the edge pixel and is not offered; torch 'reflect' "
               "is SciPy 'mirror')" if value in ("symmetric", "mirror") else "")
        )
    return value


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
    """Kernel size, stride, dilation and resolved ``(lo, hi)`` padding of one layer, per axis."""

    kernel_size: Pair
    stride: Pair = (1, 1)
    dilation: Pair = (1, 1)
    padding: tuple[PadPair, PadPair] = ((0, 0), (0, 0))

    @property
    def axes(self) -> tuple[AxisLayer, AxisLayer]:
        return tuple(  # type: ignore[return-value]
            AxisLayer(self.kernel_size[i], self.stride[i], self.dilation[i], *self.padding[i])
            for i in range(2)
        )

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
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayerGeometry:
        return cls(
            kernel_size=parse_pair("kernel_size", data["kernel_size"]),
            stride=parse_pair("stride", data.get("stride", 1)),
            dilation=parse_pair("dilation", data.get("dilation", 1)),
            padding=tuple(parse_pair("padding", p, minimum=0) for p in data.get("padding", [[0, 0], [0, 0]])),  # type: ignore[arg-type]
        )


def resolve_layer(
    kernel_size: Any, stride: Any, dilation: Any, padding: Any, shape: Sequence[int]
) -> LayerGeometry:
    """Parse a layer's parameters and resolve its padding against the input ``(H, W)``.

    Also checks that the output is not empty, so a resolved layer always has a valid output shape.
    """
    kernel = parse_pair("kernel_size", kernel_size)
    strides = parse_pair("stride", stride)
    dilations = parse_pair("dilation", dilation)
    pads = parse_padding(padding)
    if pads == "same":
        pads = tuple(
            same_padding(shape[i], kernel[i], strides[i], dilations[i]) for i in range(2)
        )  # type: ignore[assignment]
    geometry = LayerGeometry(kernel, strides, dilations, pads)  # type: ignore[arg-type]
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
        rf, jump, offset = [], [], []
        for i, axis in enumerate(layer.axes):
            rf.append(self.receptive_field[i] + axis.reach * self.jump[i])
            offset.append(self.offset[i] + (axis.reach / 2 - axis.pad_lo) * self.jump[i])
            jump.append(self.jump[i] * axis.stride)
        return StackGeometry(tuple(rf), tuple(jump), tuple(offset))  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        return {
            "receptive_field": list(self.receptive_field),
            "jump": list(self.jump),
            "offset": [_plain_number(o) for o in self.offset],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StackGeometry:
        return cls(
            tuple(int(v) for v in data["receptive_field"]),  # type: ignore[arg-type]
            tuple(int(v) for v in data["jump"]),  # type: ignore[arg-type]
            tuple(float(v) for v in data["offset"]),  # type: ignore[arg-type]
        )


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
    return tuple(  # type: ignore[return-value]
        [stack.offset[i] + k * stack.jump[i] for k in range(shape[i])] for i in range(2)
    )


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



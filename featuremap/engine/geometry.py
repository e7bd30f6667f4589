"""Geometry of conv and pool layers: pure integer arithmetic, no array library.

Everything here is per spatial axis (``y, x`` for a 2-D layer, ``z, y, x`` for a 3-D one) and
follows ``../DESIGN.md`` section 1-2:

* output length ``n_out = floor((n + lo + hi - d*(k-1) - 1) / s) + 1`` (an error when ``< 1``);
* ``"same"`` padding ``n_out = ceil(n / s)``, ``total = max((n_out-1)*s + d*(k-1) + 1 - n, 0)``,
  ``lo = total // 2`` (PyTorch for stride 1, TensorFlow for stride > 1);
* the composition of a stack of layers into receptive field, jump and offset
  (``jump_l = jump_{l-1} s_l``, ``rf_l = rf_{l-1} + d_l (k_l-1) jump_{l-1}``,
  ``start_l = start_{l-1} + (d_l (k_l-1)/2 - lo_l) jump_{l-1}``);
* the input window that a range of outputs reads, which gives block halos.

A layer's rank (2 or 3) is the length of its per-axis tuples; the padding mode may differ per
axis (``{y: replicate, x: circular}`` for a global longitude grid).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from featuremap._validation import SPATIAL_AXES, parse_sizes
from featuremap._vocabulary import PADDING_MODES, BorderMode, PaddingMode
from featuremap.errors import InputError, describe

__all__ = [
    "AxisLayer",
    "BorderModes",
    "LayerGeometry",
    "PadPair",
    "Padding",
    "Pair",
    "ResolvedPadding",
    "Sizes",
    "StackGeometry",
    "as_pair",
    "axis_names",
    "ceil_div",
    "compose",
    "input_window",
    "modes_spec",
    "output_centres",
    "output_length",
    "parse_padding",
    "parse_padding_mode",
    "per_axis_modes",
    "resolve_layer",
    "same_padding",
]

Pair = tuple[int, int]
#: One integer per spatial axis: ``(y, x)`` or ``(z, y, x)``.
Sizes = tuple[int, ...]
PadPair = tuple[int, int]
#: Padding resolved per axis: ``((top, bottom), (left, right))``, with ``(front, back)`` first in 3-D.
ResolvedPadding = tuple[PadPair, ...]
#: A parsed padding: ``"same"`` (resolved against the input size later) or resolved pairs.
Padding = str | ResolvedPadding
#: How the border is filled: one mode for every axis, or one per axis.
BorderModes = BorderMode | tuple[BorderMode, ...]


def as_pair(sizes: Sizes) -> Pair:
    """``sizes`` of a 2-D layer as a ``(y, x)`` pair."""
    first, second = sizes
    return (first, second)


def axis_names(ndim: int) -> tuple[str, ...]:
    """The spatial axes of a rank-``ndim`` layer: ``("y", "x")`` or ``("z", "y", "x")``."""
    return SPATIAL_AXES[-ndim:]


def _padding_allowed(ndim: int) -> str:
    names = axis_names(ndim)
    return (
        f"'same', 'valid', an integer >= 0, [{', '.join('p' + a for a in names)}] or "
        f"[{', '.join(f'[{a}_lo, {a}_hi]' for a in names)}]"
    )


def parse_padding(value: Any, ndim: int = 2) -> Padding:
    """Parse a padding: ``int``, one per axis, a ``[lo, hi]`` pair per axis, ``"valid"`` or ``"same"``."""
    if isinstance(value, str):
        if value == "valid":
            return ((0, 0),) * ndim
        if value == "same":
            return "same"
        raise InputError(f"padding must be {_padding_allowed(ndim)}, got {describe(value)}")
    if (
        isinstance(value, (list, tuple))
        and len(value) == ndim
        and all(isinstance(v, (list, tuple)) for v in value)
    ):
        pairs = (
            parse_sizes(f"padding ({axis}: [lo, hi])", pair, 2, minimum=0)
            for axis, pair in zip(axis_names(ndim), value, strict=True)
        )
        return tuple((lo, hi) for lo, hi in pairs)
    try:
        widths = parse_sizes("padding", value, ndim, minimum=0)
    except InputError:
        raise InputError(
            f"padding must be {_padding_allowed(ndim)}, got {describe(value)}"
        ) from None
    return tuple((width, width) for width in widths)


def parse_padding_mode(value: Any, ndim: int = 2) -> PaddingMode | tuple[PaddingMode, ...]:
    """PyTorch's padding mode names (``zeros``, ``reflect``, ``replicate``, ``circular``): one for
    every axis, a list with one per axis, or a mapping from axis names (``{y: replicate, x:
    circular}``; axes left out are ``zeros``). A per-axis choice that is the same everywhere is
    that one mode."""
    if isinstance(value, Mapping):
        names = axis_names(ndim)
        unknown = [key for key in value if key not in names]
        if unknown:
            raise InputError(
                f"padding_mode names axis {describe(unknown[0])}; a {ndim}-D layer has the axes "
                f"{', '.join(names)}"
            )
        value = [value.get(axis, "zeros") for axis in names]
    if isinstance(value, (list, tuple)):
        if len(value) != ndim:
            raise InputError(
                f"padding_mode must be one mode or one per axis ({', '.join(axis_names(ndim))}), "
                f"got {describe(value)}"
            )
        modes = tuple(_parse_mode(mode) for mode in value)
        return modes[0] if len(set(modes)) == 1 else modes
    return _parse_mode(value)


def per_axis_modes(modes: BorderModes, ndim: int) -> tuple[BorderMode, ...]:
    """One border mode per axis."""
    return (modes,) * ndim if isinstance(modes, str) else tuple(modes)


def modes_spec(modes: BorderModes, ndim: int) -> str | dict[str, str]:
    """Padding modes as written in a pipeline file and a store: one name, or per axis."""
    if isinstance(modes, str):
        return modes
    return dict(zip(axis_names(ndim), modes, strict=True))


def _parse_mode(value: Any) -> PaddingMode:
    """One of PyTorch's padding mode names."""
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
    ``(lo, hi)`` padding per axis and how the border is filled (``padding_mode``: one mode, or
    one per axis). Its rank is ``len(kernel_size)``: 2 (``y, x``) or 3 (``z, y, x``).

    Block planning, the kernels and the output store's attributes all read it from here.
    """

    kernel_size: Sizes
    stride: Sizes = (1, 1)
    dilation: Sizes = (1, 1)
    padding: ResolvedPadding = ((0, 0), (0, 0))
    padding_mode: BorderModes = "zeros"

    @property
    def ndim(self) -> int:
        """The number of spatial axes."""
        return len(self.kernel_size)

    @property
    def modes(self) -> tuple[BorderMode, ...]:
        """The border mode of each axis."""
        return per_axis_modes(self.padding_mode, self.ndim)

    @property
    def axes(self) -> tuple[AxisLayer, ...]:
        """The layer along each spatial axis (``y``, ``x``; ``z`` first in 3-D)."""
        return tuple(
            AxisLayer(kernel, stride, dilation, *pads, padding_mode=mode)
            for kernel, stride, dilation, pads, mode in zip(
                self.kernel_size, self.stride, self.dilation, self.padding, self.modes, strict=True
            )
        )

    def output_shape(self, shape: Sequence[int]) -> Sizes:
        """Output sizes for an input of spatial ``shape``; :class:`InputError` if empty."""
        return tuple(
            axis.output_length(int(n), axis=name)
            for axis, n, name in zip(self.axes, shape, axis_names(self.ndim), strict=True)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "dilation": list(self.dilation),
            "padding": [list(p) for p in self.padding],
            "padding_mode": modes_spec(self.padding_mode, self.ndim),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayerGeometry:
        kernel = data["kernel_size"]
        ndim = len(kernel) if isinstance(kernel, (list, tuple)) else 2
        mode = data.get("padding_mode", "zeros")
        return cls(
            kernel_size=parse_sizes("kernel_size", kernel, ndim),
            stride=parse_sizes("stride", data.get("stride", 1), ndim),
            dilation=parse_sizes("dilation", data.get("dilation", 1), ndim),
            padding=tuple(
                (lo, hi)
                for lo, hi in (
                    parse_sizes("padding", pair, 2, minimum=0)
                    for pair in data.get("padding", [[0, 0]] * ndim)
                )
            ),
            padding_mode="constant" if mode == "constant" else parse_padding_mode(mode, ndim),
        )


def resolve_layer(
    kernel_size: Sizes,
    stride: Sizes,
    dilation: Sizes,
    padding: Padding,
    shape: Sequence[int],
    padding_mode: BorderModes = "zeros",
) -> LayerGeometry:
    """Resolve a layer's parsed parameters against the input's spatial ``shape``: ``"same"``
    becomes ``(lo, hi)`` pairs, and the output is checked not to be empty, so a resolved layer
    always has a valid output shape."""
    if len(shape) != len(kernel_size):
        raise InputError(
            f"a {len(kernel_size)}-D layer needs an input with {len(kernel_size)} spatial axes "
            f"({', '.join(axis_names(len(kernel_size)))}), got {len(shape)}"
        )
    if padding == "same":
        resolved: ResolvedPadding = tuple(
            same_padding(int(n), k, s, d)
            for n, k, s, d in zip(shape, kernel_size, stride, dilation, strict=True)
        )
    elif isinstance(padding, str):
        raise InputError(
            f"padding must be {_padding_allowed(len(kernel_size))}, got {describe(padding)}"
        )
    else:
        resolved = padding
    geometry = LayerGeometry(kernel_size, stride, dilation, resolved, padding_mode)
    geometry.output_shape(shape)
    return geometry


@dataclass(frozen=True)
class StackGeometry:
    """Effective geometry of a stack of layers, per spatial axis (DESIGN section 2).

    Output pixel ``i`` is centred on input coordinate ``offset + i * jump`` and sees an input
    window ``receptive_field`` pixels wide.
    """

    receptive_field: Sizes = (1, 1)
    jump: Sizes = (1, 1)
    offset: tuple[float, ...] = (0.0, 0.0)

    @classmethod
    def identity(cls, ndim: int) -> StackGeometry:
        """The geometry of no layer at all, over ``ndim`` axes."""
        return cls((1,) * ndim, (1,) * ndim, (0.0,) * ndim)

    @property
    def ndim(self) -> int:
        return len(self.jump)

    def then(self, layer: LayerGeometry) -> StackGeometry:
        """The geometry after one more layer."""
        per_axis = [
            (
                self.receptive_field[i] + axis.reach * self.jump[i],
                self.jump[i] * axis.stride,
                self.offset[i] + (axis.reach / 2 - axis.pad_lo) * self.jump[i],
            )
            for i, axis in enumerate(layer.axes)
        ]
        fields, jumps, offsets = zip(*per_axis, strict=True)
        return StackGeometry(tuple(fields), tuple(jumps), tuple(offsets))

    def to_dict(self) -> dict[str, Any]:
        return {
            "receptive_field": list(self.receptive_field),
            "jump": list(self.jump),
            "offset": [_plain_number(o) for o in self.offset],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StackGeometry:
        return cls(
            tuple(int(v) for v in data["receptive_field"]),
            tuple(int(v) for v in data["jump"]),
            tuple(float(v) for v in data["offset"]),
        )


def _plain_number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else float(value)


def compose(layers: Iterable[LayerGeometry]) -> list[StackGeometry]:
    """Cumulative geometry after each layer of a stack (one entry per layer)."""
    history: list[StackGeometry] = []
    for layer in layers:
        current = history[-1] if history else StackGeometry.identity(layer.ndim)
        current = current.then(layer)
        history.append(current)
    return history


def output_centres(stack: StackGeometry, shape: Sequence[int]) -> tuple[list[float], ...]:
    """Centre, in input pixel coordinates, of every output pixel along each spatial axis."""
    return tuple(
        [stack.offset[i] + k * stack.jump[i] for k in range(shape[i])] for i in range(stack.ndim)
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

"""Declarative validators for bank parameters, built on the shared ``parse_*`` family.

Each factory returns a parser ``parse(value, where) -> value`` for a bank's parameter table; it
returns the value in a plain, JSON-serialisable form or raises the one-line
:class:`~featuremap.errors.InputError` of :mod:`featuremap._validation`,
``<where> must be <what is allowed>, got <value>``, where ``where`` names the bank and parameter.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from featuremap._validation import (
    parse_bool,
    parse_choice,
    parse_int,
    parse_real,
    parse_real_list,
    parse_text,
)
from featuremap.errors import InputError, describe

__all__ = [
    "MAX_EXPANDED_FILTERS",
    "MAX_EXPANDED_WEIGHT_ELEMENTS",
    "MAX_FILTERS",
    "MAX_KERNEL_SIZE",
    "MAX_LIST_LENGTH",
    "MAX_WEIGHT_ELEMENTS",
    "NDIMS",
    "Parser",
    "axes",
    "axis_list",
    "boolean",
    "check_weight_shape",
    "choice",
    "derived_kernel_size",
    "integer",
    "kernel_size",
    "kernel_sizes",
    "one_or_per_axis",
    "optional",
    "parameter_name",
    "per_axis",
    "real",
    "real_list",
    "real_or_axis_list",
    "text",
]

Parser = Callable[[Any, str], Any]

# -- limits: a bank is refused from its parameters before any weight is allocated ------------

#: The largest kernel side of a bank, given (``size``) or derived (from sigma, n_stds, truncate).
MAX_KERNEL_SIZE = 1025
#: The most filters one bank may hold.
MAX_FILTERS = 65_536
#: The most weights one bank may hold: 2**24, 64 MiB as float32 (128 MiB while built in float64).
MAX_WEIGHT_ELEMENTS = 1 << 24
#: The most numbers in one list parameter (frequencies, phases, angles, sigmas).
MAX_LIST_LENGTH = 1024
#: The most filters and weights of a bank expanded to several input channels (``for_channels``).
MAX_EXPANDED_FILTERS = 1 << 18
MAX_EXPANDED_WEIGHT_ELEMENTS = 1 << 26

#: The spatial ranks a bank can have: 2 (filters ``(ky, kx)``) or 3 (``(kz, ky, kx)``).
NDIMS = (2, 3)
#: The spatial axes, outermost first; a bank of rank ``ndim`` uses the last ``ndim`` of them.
SPATIAL_AXES = "zyx"


def parameter_name(bank: str, parameter: str) -> str:
    """How messages name a parameter: ``bank 'gaussian' parameter 'sigmas'``."""
    return f"bank {bank!r} parameter {parameter!r}"


def axes(ndim: int) -> str:
    """The names of the spatial axes of rank ``ndim``: ``"yx"`` or ``"zyx"``."""
    return SPATIAL_AXES[-ndim:]


def axis_list(ndim: int) -> str:
    """``[y, x]`` or ``[z, y, x]``, for messages and help lines."""
    return "[" + ", ".join(axes(ndim)) + "]"


def per_axis(where: str, value: Any, ndim: int) -> tuple[Any, ...]:
    """``value`` for each of the ``ndim`` spatial axes: a scalar repeated, or a list of ``ndim``.

    The elements were validated by the parameter's parser; this checks the list's length against
    ``ndim``, which only the bank's other parameters tell, with one :class:`InputError` line.
    """
    if not isinstance(value, (list, tuple)):
        return (value,) * ndim
    if len(value) != ndim:
        hint = f"; set ndim: {len(value)} for a {len(value)}-D bank" if len(value) in NDIMS else ""
        raise InputError(
            f"{where} must give one value per spatial axis, {axis_list(ndim)} for ndim {ndim}, "
            f"got {describe(value)}{hint}"
        )
    return tuple(value)


def derived_kernel_size(
    where: str, half: float, rounding: Callable[[float], int], detail: str
) -> int:
    """``2 * rounding(half) + 1``, a kernel side computed from parameters, or one
    :class:`InputError` line if it exceeds :data:`MAX_KERNEL_SIZE` (checked on the float first,
    so that ``n_stds: 1e300`` never becomes a 1000-bit integer or an allocation).

    ``where`` names the size (``"bank 'gabor' kernel size 2*ceil(n_stds*sigma)+1"``) and
    ``detail`` the parameters it came from and what to change.
    """
    if math.isfinite(half) and half < 1e15:  # exact, and still a small integer
        size = 2 * rounding(half) + 1
        if size <= MAX_KERNEL_SIZE:
            return size
        got = str(size)
    else:
        got = f"about {2 * half + 1:.3g}"
    raise InputError(f"{where} must be <= {MAX_KERNEL_SIZE}, got {got} ({detail})")


def check_weight_shape(
    bank: str,
    shape: Sequence[int],
    *,
    max_filters: int = MAX_FILTERS,
    max_elements: int = MAX_WEIGHT_ELEMENTS,
    what: str = "",
) -> None:
    """Refuse a bank whose weight ``(J, C, kh, kw)`` or ``(J, C, kz, ky, kx)`` would hold more than
    ``max_filters`` filters or ``max_elements`` weights, with one :class:`InputError` line, before
    it is built."""
    filters, elements = int(shape[0]), math.prod(int(n) for n in shape)
    dims = " x ".join(str(int(n)) for n in shape)
    if filters > max_filters:
        raise InputError(
            f"bank {bank!r}{what} would have {filters} filters (weight {dims}); "
            f"at most {max_filters} are allowed"
        )
    if elements > max_elements:
        raise InputError(
            f"bank {bank!r}{what} would hold {dims} = {elements} weights; at most {max_elements} "
            f"({max_elements * 4 // 2**20} MiB of float32) are allowed: use fewer or smaller filters"
        )


def integer(minimum: int | None = None, maximum: int | None = None, *, odd: bool = False) -> Parser:
    """An ``int`` in ``[minimum, maximum]``, optionally odd."""
    return lambda value, where: parse_int(where, value, minimum=minimum, maximum=maximum, odd=odd)


def real(
    minimum: float | None = None, maximum: float | None = None, *, open_minimum: bool = False
) -> Parser:
    """A finite ``float`` in ``[minimum, maximum]`` (``(minimum, maximum]`` with ``open_minimum``)."""
    return lambda value, where: parse_real(
        where, value, minimum=minimum, maximum=maximum, open_minimum=open_minimum
    )


def kernel_size(minimum: int = 1, *, odd: bool = False) -> Parser:
    """A kernel side: an ``int`` in ``[minimum, MAX_KERNEL_SIZE]``, optionally odd."""
    return integer(minimum, MAX_KERNEL_SIZE, odd=odd)


def one_or_per_axis(element: Parser, allowed: str) -> Parser:
    """One value accepted by ``element``, or a list of one per spatial axis (``[y, x]`` or
    ``[z, y, x]``); a value stays a value and a list a list. ``allowed`` describes one value. The
    list's length is checked against the bank's ``ndim`` when the bank is built (:func:`per_axis`).
    """

    def parse(value: Any, where: str) -> Any:
        if not isinstance(value, (list, tuple)):
            return element(value, where)
        if len(value) not in NDIMS:
            raise InputError(
                f"{where} must be {allowed} or a list {axis_list(2)} or {axis_list(3)} of them, "
                f"got {describe(value)}"
            )
        return [element(item, f"{where} (each axis)") for item in value]

    return parse


def kernel_sizes(minimum: int = 1, *, odd: bool = False) -> Parser:
    """A kernel side (:func:`kernel_size`) or one per spatial axis, ``[ky, kx]`` or ``[kz, ky, kx]``."""
    allowed = f"{'an odd' if odd else 'an'} integer >= {minimum} and <= {MAX_KERNEL_SIZE}"
    return one_or_per_axis(kernel_size(minimum, odd=odd), allowed)


def real_list(element: Parser, allowed: str, max_length: int = MAX_LIST_LENGTH) -> Parser:
    """A non-empty list of at most ``max_length`` numbers each accepted by ``element``; a single
    number is a list of one."""
    return lambda value, where: parse_real_list(
        where, value, lambda name, item: element(item, name), allowed, max_length=max_length
    )


def real_or_axis_list(
    element: Parser, one: str, many: str, max_length: int = MAX_LIST_LENGTH
) -> Parser:
    """:func:`real_list`, whose elements may also be lists of one number per spatial axis
    (``[y, x]`` or ``[z, y, x]``, :func:`one_or_per_axis`): ``sigmas: [1.0, [0.5, 2.0, 2.0]]``.
    ``one`` and ``many`` describe the numbers allowed (``"a number > 0"``, ``"numbers > 0"``)."""
    flat = real_list(element, many, max_length)
    item = one_or_per_axis(element, one)

    def parse(value: Any, where: str) -> Any:
        nested = isinstance(value, (list, tuple)) and any(
            isinstance(v, (list, tuple)) for v in value
        )
        if not nested or len(value) > max_length:
            return flat(value, where)  # a list of numbers, or one of the errors of one
        return [item(entry, f"{where} (each element)") for entry in value]

    return parse


def boolean() -> Parser:
    """``True`` or ``False`` (not 0/1, not strings)."""
    return lambda value, where: parse_bool(where, value)


def choice(options: Sequence[Any]) -> Parser:
    """One of ``options`` (compared with ``==``; strings are matched case-sensitively)."""
    return lambda value, where: parse_choice(where, value, options, quoted=True)


def text() -> Parser:
    """A non-empty string."""
    return lambda value, where: parse_text(where, value)


def optional(parser: Parser) -> Parser:
    """``None`` (meaning: derive a default) or whatever ``parser`` accepts."""
    return lambda value, where: None if value is None else parser(value, where)

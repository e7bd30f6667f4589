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
from featuremap.errors import InputError

__all__ = [
    "MAX_EXPANDED_FILTERS",
    "MAX_EXPANDED_WEIGHT_ELEMENTS",
    "MAX_FILTERS",
    "MAX_KERNEL_SIZE",
    "MAX_LIST_LENGTH",
    "MAX_WEIGHT_ELEMENTS",
    "Parser",
    "boolean",
    "check_weight_shape",
    "choice",
    "derived_kernel_size",
    "integer",
    "kernel_size",
    "optional",
    "real",
    "real_list",
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
    """Refuse a bank whose weight ``(J, C, kh, kw)`` would hold more than ``max_filters`` filters
    or ``max_elements`` weights, with one :class:`InputError` line, before it is built."""
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


def real_list(element: Parser, allowed: str, max_length: int = MAX_LIST_LENGTH) -> Parser:
    """A non-empty list of at most ``max_length`` numbers each accepted by ``element``; a single
    number is a list of one."""
    return lambda value, where: parse_real_list(
        where, value, lambda name, item: element(item, name), allowed, max_length=max_length
    )


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

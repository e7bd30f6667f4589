"""Validators for bank parameters.

Each factory returns a parser ``parse(value, where) -> value`` that either returns the value in a
plain, JSON-serialisable form (``int``, ``float``, ``bool``, ``str``, lists of those) or raises a
one-line :class:`~featuremap.errors.InputError` of the form
``<where> must be <what is allowed>, got <value>``, where ``where`` names the bank and parameter.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from numbers import Integral, Real
from typing import Any

from featuremap.errors import InputError, describe

__all__ = [
    "Parser",
    "boolean",
    "choice",
    "integer",
    "optional",
    "real",
    "real_list",
    "text",
]

Parser = Callable[[Any, str], Any]


def _refuse(where: str, allowed: str, value: Any) -> InputError:
    return InputError(f"{where} must be {allowed}, got {describe(value)}")


def _is_integer(value: Any) -> bool:
    # bool is an int subclass, but `size: true` in a pipeline is a mistake, not a 1.
    return isinstance(value, Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _bounds_text(minimum: float | None, maximum: float | None, *, open_minimum: bool) -> str:
    low = "" if minimum is None else f"{'>' if open_minimum else '>='} {minimum:g}"
    high = "" if maximum is None else f"<= {maximum:g}"
    return " and ".join(part for part in (low, high) if part)


def integer(minimum: int | None = None, maximum: int | None = None, *, odd: bool = False) -> Parser:
    """An ``int`` in ``[minimum, maximum]``, optionally odd."""
    bounds = _bounds_text(minimum, maximum, open_minimum=False)
    allowed = ("an odd integer" if odd else "an integer") + (f" {bounds}" if bounds else "")

    def parse(value: Any, where: str) -> int:
        if not _is_integer(value):
            raise _refuse(where, allowed, value)
        number = int(value)
        if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
            raise _refuse(where, allowed, value)
        if odd and number % 2 == 0:
            raise _refuse(where, allowed, value)
        return number

    return parse


def real(
    minimum: float | None = None, maximum: float | None = None, *, open_minimum: bool = False
) -> Parser:
    """A finite ``float`` in ``[minimum, maximum]`` (``(minimum, maximum]`` with ``open_minimum``)."""
    bounds = _bounds_text(minimum, maximum, open_minimum=open_minimum)
    allowed = "a finite number" + (f" {bounds}" if bounds else "")

    def parse(value: Any, where: str) -> float:
        if not _is_real(value) or not math.isfinite(value):
            raise _refuse(where, allowed, value)
        number = float(value)
        below = minimum is not None and (
            number <= minimum if open_minimum else number < minimum
        )
        if below or (maximum is not None and number > maximum):
            raise _refuse(where, allowed, value)
        return number

    return parse


def real_list(element: Parser, allowed: str) -> Parser:
    """A non-empty list of numbers each accepted by ``element``; a single number is a list of one."""

    def parse(value: Any, where: str) -> list[float]:
        items = [value] if _is_real(value) else value
        if isinstance(items, (str, bytes)) or not isinstance(items, Sequence) or not items:
            raise _refuse(where, f"a non-empty list of {allowed}", value)
        for item in items:
            if not _is_real(item):
                raise _refuse(where, f"a non-empty list of {allowed}", value)
        return [element(item, f"{where} (each element)") for item in items]

    return parse


def boolean() -> Parser:
    """``True`` or ``False`` (not 0/1, not strings)."""

    def parse(value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise _refuse(where, "true or false", value)
        return value

    return parse


def choice(options: Sequence[Any]) -> Parser:
    """One of ``options`` (compared with ``==``; strings are matched case-sensitively)."""
    allowed = "one of " + ", ".join(repr(option) for option in options)

    def parse(value: Any, where: str) -> Any:
        if isinstance(value, bool) or value not in options:
            raise _refuse(where, allowed, value)
        return options[list(options).index(value)]

    return parse


def text() -> Parser:
    """A non-empty string."""

    def parse(value: Any, where: str) -> str:
        if not isinstance(value, str) or not value:
            raise _refuse(where, "a non-empty string", value)
        return value

    return parse


def optional(parser: Parser) -> Parser:
    """``None`` (meaning: derive a default) or whatever ``parser`` accepts."""

    def parse(value: Any, where: str) -> Any:
        return None if value is None else parser(value, where)

    return parse

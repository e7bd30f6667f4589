"""Declarative validators for bank parameters, built on the shared ``parse_*`` family.

Each factory returns a parser ``parse(value, where) -> value`` for a bank's parameter table; it
returns the value in a plain, JSON-serialisable form or raises the one-line
:class:`~featuremap.errors.InputError` of :mod:`featuremap._validation`,
``<where> must be <what is allowed>, got <value>``, where ``where`` names the bank and parameter.
"""

from __future__ import annotations

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


def real_list(element: Parser, allowed: str) -> Parser:
    """A non-empty list of numbers each accepted by ``element``; a single number is a list of one."""
    return lambda value, where: parse_real_list(
        where, value, lambda name, item: element(item, name), allowed
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

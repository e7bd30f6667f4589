"""The ``parse_*`` validators shared by the pipeline spec, the banks, the layers and the CLI.

Each takes the *name* of the thing (``"stride"``, ``"bank 'gabor' parameter 'size'"``) and the
*value*, and returns the value in a plain, JSON-serialisable form or raises one
:class:`~featuremap.errors.InputError` line ``<name> must be <what is allowed>, got <value>``.
Callers that know the value's place in a file (``layers[1].conv.stride``) put it in front.

Booleans are refused where numbers are expected: ``size: true`` in a pipeline is a mistake, not 1.
"""

from __future__ import annotations

import difflib
import math
import operator
from collections.abc import Callable, Sequence
from numbers import Integral, Real
from typing import Any, TypeVar

from featuremap.errors import InputError, describe

__all__ = [
    "SPATIAL_AXES",
    "is_integer",
    "is_real",
    "parse_bool",
    "parse_choice",
    "parse_int",
    "parse_pair",
    "parse_real",
    "parse_real_list",
    "parse_sizes",
    "parse_text",
    "suggestion",
]

T = TypeVar("T")
Pair = tuple[int, int]


def _refuse(name: str, allowed: str, value: Any, hint: str = "") -> InputError:
    return InputError(f"{name} must be {allowed}, got {describe(value)}{hint}")


def is_integer(value: Any) -> bool:
    """An integer (Python or NumPy), not a bool."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """A real number (Python or NumPy, integers included), not a bool."""
    return isinstance(value, Real) and not isinstance(value, bool)


def suggestion(word: Any, candidates: Sequence[Any]) -> str:
    """`` (did you mean 'x'?)`` for a close candidate, else ``""``."""
    close = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _bounds(minimum: float | None, maximum: float | None, *, open_minimum: bool = False) -> str:
    low = "" if minimum is None else f"{'>' if open_minimum else '>='} {minimum:g}"
    high = "" if maximum is None else f"<= {maximum:g}"
    return " and ".join(part for part in (low, high) if part)


def parse_int(
    name: str,
    value: Any,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    odd: bool = False,
) -> int:
    """An integer in ``[minimum, maximum]`` (optionally odd), as a Python ``int``."""
    bounds = _bounds(minimum, maximum)
    allowed = ("an odd integer" if odd else "an integer") + (f" {bounds}" if bounds else "")
    if not is_integer(value):
        raise _refuse(name, allowed, value)
    number = operator.index(value)
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise _refuse(name, allowed, value)
    if odd and number % 2 == 0:
        raise _refuse(name, allowed, value)
    return number


def parse_real(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    open_minimum: bool = False,
) -> float:
    """A finite number in ``[minimum, maximum]`` (``(minimum, maximum]`` with ``open_minimum``)."""
    bounds = _bounds(minimum, maximum, open_minimum=open_minimum)
    allowed = "a finite number" + (f" {bounds}" if bounds else "")
    if not is_real(value) or not math.isfinite(value):
        raise _refuse(name, allowed, value)
    number = float(value)
    below = minimum is not None and (number <= minimum if open_minimum else number < minimum)
    if below or (maximum is not None and number > maximum):
        raise _refuse(name, allowed, value)
    return number


def parse_real_list(
    name: str,
    value: Any,
    element: Callable[[str, Any], float],
    allowed: str,
    *,
    max_length: int | None = None,
) -> list[float]:
    """A non-empty list of numbers (at most ``max_length`` of them), each checked by
    ``element(name, item)``; a number alone is a list of one. ``allowed`` describes one element
    (``"numbers > 0"``)."""
    what = f"a non-empty list of {allowed}"
    items = [value] if is_real(value) else value
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence) or not items:
        raise _refuse(name, what, value)
    if max_length is not None and len(items) > max_length:
        raise _refuse(
            name, f"{what}, at most {max_length} of them", value, f" ({len(items)} of them)"
        )
    if not all(is_real(item) for item in items):
        raise _refuse(name, what, value)
    return [element(f"{name} (each element)", item) for item in items]


def parse_bool(name: str, value: Any) -> bool:
    """``True`` or ``False`` (not 0/1, not strings)."""
    if not isinstance(value, bool):
        raise _refuse(name, "true or false", value)
    return value


def parse_text(name: str, value: Any) -> str:
    """A non-empty string."""
    if not isinstance(value, str) or not value:
        raise _refuse(name, "a non-empty string", value)
    return value


def parse_choice(name: str, value: Any, options: Sequence[T], *, quoted: bool = False) -> T:
    """One of ``options`` (compared with ``==``, booleans refused); the message lists them, with
    ``repr`` when ``quoted``, and suggests a close one."""
    if not isinstance(value, bool):
        for option in options:
            if value == option:
                return option
    listed = ", ".join(repr(option) if quoted else str(option) for option in options)
    hint = suggestion(value, options) if isinstance(value, str) else ""
    raise _refuse(name, f"one of {listed}", value, hint)


#: The names of the spatial axes, last ``ndim`` of them for a layer of that rank.
SPATIAL_AXES = ("z", "y", "x")


def parse_sizes(name: str, value: Any, ndim: int = 2, *, minimum: int = 1) -> tuple[int, ...]:
    """An integer or one integer per spatial axis (``[y, x]``, ``[z, y, x]``), each ``>= minimum``.

    A one-element sequence counts as the integer it holds, as PyTorch accepts ``stride=(2,)``.
    """
    names = ", ".join(SPATIAL_AXES[-ndim:])
    allowed = f"an integer >= {minimum} or a list [{names}] of them"
    if is_integer(value):
        items: Sequence[Any] = (value,) * ndim
    elif (
        isinstance(value, (list, tuple))
        and len(value) in (1, ndim)
        and all(is_integer(v) for v in value)
    ):
        items = tuple(value) * ndim if len(value) == 1 else tuple(value)
    else:
        raise _refuse(name, allowed, value)
    sizes = tuple(operator.index(item) for item in items)
    if min(sizes) < minimum:
        raise _refuse(name, allowed, value)
    return sizes


def parse_pair(name: str, value: Any, *, minimum: int = 1) -> Pair:
    """An integer or a ``(y, x)`` pair of integers, each ``>= minimum`` (:func:`parse_sizes`)."""
    first, second = parse_sizes(name, value, 2, minimum=minimum)
    return (first, second)

"""The bank registry: a name -> (builder, parameters, summary) table filled by a decorator.

A family module declares its banks like this::

    @register("box", "mean filter", Parameter("size", 3, "kernel side", integer(1)),
              shape=lambda size: (1, 1, size, size))
    def _box(size: int) -> Filters:
        ...

:func:`get` checks the parameter names, validates every value with the parameter's parser, fills
in defaults, checks the weight's shape (``shape(**params)``, computed from the parameters alone;
``(J, C, kh, kw)`` or ``(J, C, kz, ky, kx)``) against :data:`~featuremap.banks._params.MAX_FILTERS`
and :data:`~featuremap.banks._params.MAX_WEIGHT_ELEMENTS` *before* anything is allocated, and calls
the builder with keyword arguments.

A parameter added after a bank's parameters were first recorded (``ndim``, ``sigma_units``,
``spacing``) is declared with ``omit_default=True``: it appears in ``Bank.params`` only when it is
not at its default, so that the params of a bank built without it, and the fingerprints of the
pipelines that record them, stay what they were.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from featuremap.banks._bank import Bank
from featuremap.banks._params import NDIMS, Parser, check_weight_shape, choice, parameter_name
from featuremap.errors import InputError
from featuremap.errors import describe as describe_value

__all__ = ["NDIM", "BankInfo", "Filters", "Parameter", "describe", "get", "names", "register"]


@dataclass(frozen=True)
class Parameter:
    """One parameter of a bank: its name, default, help line and validator.

    ``omit_default``: leave the parameter out of ``Bank.params`` while it has its default value.
    """

    name: str
    default: Any
    help: str
    parse: Parser
    omit_default: bool = False


#: The spatial rank of a bank that offers 2-D and 3-D filters.
NDIM = Parameter(
    "ndim",
    2,
    "spatial rank: 2, filters (ky, kx) for images; 3, filters (kz, ky, kx) for volumes",
    choice(NDIMS),
    omit_default=True,
)


@dataclass(frozen=True)
class BankInfo:
    """What ``featuremap banks NAME`` prints: a one-line summary and ``(name, default, help)`` rows."""

    name: str
    summary: str
    parameters: tuple[tuple[str, Any, str], ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "summary": self.summary,
            "parameters": [
                {"name": name, "default": default, "help": help_text}
                for name, default, help_text in self.parameters
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BankInfo:
        return cls(
            name=data["name"],
            summary=data["summary"],
            parameters=tuple(
                (row["name"], row["default"], row["help"]) for row in data["parameters"]
            ),
        )


@dataclass(frozen=True, eq=False)
class Filters:
    """What a builder returns; :func:`get` turns it into a :class:`Bank`.

    ``derived`` holds parameters the builder resolved itself (e.g. a kernel size computed from
    sigma when the user gave ``None``) so that ``Bank.params`` records what was actually used.
    """

    weight: np.ndarray
    descriptions: list[dict[str, Any]]
    bias: np.ndarray | None = None
    derived: dict[str, Any] = field(default_factory=dict)
    reduce: int | None = None
    reduce_groups: tuple[int, ...] | None = None
    reduce_ops: tuple[str, ...] | None = None


#: ``shape(**params) -> (J, C, kh, kw)`` or ``(J, C, kz, ky, kx)``: the weight a builder will
#: make, from its parameters.
ShapeEstimate = Callable[..., tuple[int, ...]]


@dataclass(frozen=True)
class _Entry:
    builder: Callable[..., Filters]
    parameters: tuple[Parameter, ...]
    summary: str
    shape: ShapeEstimate | None = None


_REGISTRY: dict[str, _Entry] = {}


def register(
    name: str, summary: str, *parameters: Parameter, shape: ShapeEstimate | None = None
) -> Callable[[Callable[..., Filters]], Callable[..., Filters]]:
    """Register ``builder(**params) -> Filters`` as bank ``name``.

    ``shape(**params)`` gives the ``(J, C, kh, kw)`` or ``(J, C, kz, ky, kx)`` the builder will
    allocate, from the validated parameters alone, so that :func:`get` refuses an oversized bank
    before building it; it may itself raise :class:`InputError` (a kernel size derived from sigma
    that is too large, parameters that contradict each other). Banks of a fixed small size need
    none.
    """

    def decorate(builder: Callable[..., Filters]) -> Callable[..., Filters]:
        if name in _REGISTRY:
            raise RuntimeError(f"filter bank {name!r} registered twice")
        _REGISTRY[name] = _Entry(builder, parameters, summary, shape)
        return builder

    return decorate


def names() -> list[str]:
    """Sorted names of all registered banks."""
    return sorted(_REGISTRY)


def _suggestion(word: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(word, candidates, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _entry(name: Any) -> _Entry:
    if not isinstance(name, str) or name not in _REGISTRY:
        hint = _suggestion(name, names()) if isinstance(name, str) else ""
        raise InputError(
            f"unknown filter bank {describe_value(name)}{hint}; available banks: {', '.join(names())}"
        )
    return _REGISTRY[name]


def describe(name: str) -> BankInfo:
    """Summary and parameters of bank ``name``; unknown name -> :class:`InputError`."""
    entry = _entry(name)
    return BankInfo(
        name=name,
        summary=entry.summary,
        parameters=tuple((p.name, p.default, p.help) for p in entry.parameters),
    )


def _recorded(parameters: tuple[Parameter, ...], values: dict[str, Any]) -> dict[str, Any]:
    """``values`` less the ``omit_default`` parameters that have their default value."""
    omitted = {p.name for p in parameters if p.omit_default and values.get(p.name) == p.default}
    return {key: value for key, value in values.items() if key not in omitted}


def get(name: str, **params: Any) -> Bank:
    """Build bank ``name`` with ``params`` (validated, defaults filled in).

    Raises
    ------
    InputError
        Unknown bank, unknown parameter, a value outside what the parameter allows, or a bank
        larger than the limits of :mod:`featuremap.banks._params` (refused before it is built).
    """
    entry = _entry(name)
    known = [parameter.name for parameter in entry.parameters]
    for key in params:
        if key not in known:
            listing = ", ".join(known) if known else "(none)"
            raise InputError(
                f"bank {name!r} has no parameter {describe_value(key)}"
                f"{_suggestion(str(key), known)}; its parameters are: {listing}"
            )
    values = {
        parameter.name: parameter.parse(
            params.get(parameter.name, parameter.default), parameter_name(name, parameter.name)
        )
        for parameter in entry.parameters
    }
    if entry.shape is not None:
        check_weight_shape(name, entry.shape(**values))
    built = entry.builder(**values)
    if built.weight.ndim in (4, 5):  # what the estimate missed still ends here, as one line
        check_weight_shape(name, built.weight.shape)
    return Bank(
        name=name,
        params=_recorded(entry.parameters, {**values, **built.derived}),
        weight=built.weight,
        bias=built.bias,
        filters=tuple(built.descriptions),
        reduce=built.reduce,
        reduce_groups=built.reduce_groups,
        reduce_ops=built.reduce_ops,
    )

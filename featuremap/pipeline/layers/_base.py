"""What every layer kind of a pipeline file has: the :class:`LayerSpec` protocol, the registry
that maps a YAML key (``conv``, ``pool``, ``reduce``) to its spec class, and the contexts in which
specs are parsed and built.

A layer kind of the pipeline language is one module in this package: a frozen dataclass that
parses its YAML mapping once (every error naming its place), writes it back
(:meth:`LayerSpec.to_dict`, loadable again), and builds the engine's layer
(:mod:`featuremap.engine.layers`) for the channels it meets. It registers itself with
:func:`register`, like the filter banks do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

from featuremap.banks import Bank
from featuremap.engine.layers import Layer
from featuremap.errors import InputError

__all__ = [
    "MAX_PIPELINE_WEIGHTS",
    "BuildContext",
    "LayerSpec",
    "ParseContext",
    "kinds",
    "register",
    "spec_class",
]

#: The most weights the banks of one pipeline may hold together, before they are expanded to the
#: input's channels: 2**26, 256 MiB of float32 (each bank alone is bounded by the banks' limits).
MAX_PIPELINE_WEIGHTS = 1 << 26


@dataclass
class ParseContext:
    """What parsing one pipeline's layers shares: the folder paths resolve against, the
    weights its banks hold so far (against :data:`MAX_PIPELINE_WEIGHTS`), and the rank of the
    last conv layer (a pool given one kernel size takes it)."""

    base_dir: Path
    weights: int = 0
    ndim: int = 2

    def spend(self, where: str, weights: int) -> None:
        self.weights += weights
        if self.weights > MAX_PIPELINE_WEIGHTS:
            raise InputError(
                f"{where}: the banks up to here hold {self.weights} weights together; a pipeline "
                f"may hold at most {MAX_PIPELINE_WEIGHTS} (256 MiB of float32)"
            )


@dataclass
class BuildContext:
    """What building a stack carries from one layer to the next: the channel count the next
    layer meets, the bank of the last conv layer (which suggests a reduction's groups), and the
    input's pixel spacing per spatial axis (``None`` without physical units), for banks whose
    sigmas are in physical units."""

    channels: int
    bank: Bank | None = field(default=None)
    spacing: tuple[float, ...] | None = None


class LayerSpec(Protocol):
    """One layer as written in a pipeline file, parsed and typed."""

    #: The layer's key in the pipeline file.
    kind: ClassVar[str]

    @property
    def ndim(self) -> int | None:
        """The layer's spatial rank (2 or 3), ``None`` for a pointwise layer."""
        ...

    @classmethod
    def parse(cls, value: Any, where: str, context: ParseContext) -> LayerSpec:
        """Check the layer's mapping key by key; errors start with ``where`` (its place)."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """The layer's mapping with every default filled in (loads back to an equal spec)."""
        ...

    def build(self, context: BuildContext) -> Layer | list[Layer]:
        """The engine's layer for ``context.channels`` input channels (or the layers of a kind
        that is a stack, like ``features``)."""
        ...

    def weight_files(self) -> list[str]:
        """The local files the layer reads its weights from."""
        ...


_KINDS: dict[str, type[LayerSpec]] = {}

S = TypeVar("S", bound=type[Any])


def register(cls: S) -> S:
    """Class decorator: make ``cls`` the spec of the layer key ``cls.kind``."""
    _KINDS[cls.kind] = cls
    return cls


def kinds() -> tuple[str, ...]:
    """The layer keys a pipeline file may use, alphabetically."""
    return tuple(sorted(_KINDS))


def spec_class(kind: str) -> type[LayerSpec]:
    return _KINDS[kind]

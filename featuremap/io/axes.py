"""The axes model: what each axis of an input is, and where that knowledge came from.

Every input axis is the image plane (``y``, ``x``), the channel axis (``c``, consumed by the
first conv), or a batch axis, carried through to the output (``t``, ``z``, ``n``, or any axis the
user declares a batch axis). The kinds are found, in this order (DESIGN section 6):

1. ``input.axes`` in the pipeline / ``--axes`` on the command line (:func:`parse_axes_spec`):
   a string of letters such as ``tczyx`` or ``nyxc``, a list of names (``[time, band, lat,
   lon]``), or a mapping from the input's own names to kinds (``{lat: y, lon: x, band: c}``);
2. OME-NGFF 0.4 / 0.5 ``multiscales`` axes (types ``space``, ``channel``, ``time``; the last two
   ``space`` axes are ``y, x``, other space axes such as ``z`` are batch);
3. Zarr v3 ``dimension_names`` or xarray's ``_ARRAY_DIMENSIONS``, through :data:`VOCABULARY`;
4. only for arrays with no names at all, the positional rule ``(..., C, H, W)``.

A name outside the vocabulary is refused, never guessed. xarray's placeholder names
(``dim_0``, ``dim_1``, ...) count as no name.

A stack of 3-D layers filters along ``z`` too (:meth:`Axes.volumetric`): the input's ``z`` axis
(the last one of kind ``z``: NGFF's third-last space axis) becomes a spatial axis, and the
positional rule reads ``(..., C, D, H, W)``. A 2-D stack keeps ``z`` a batch axis.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from featuremap._validation import suggestion
from featuremap.errors import InputError, describe, input_key

__all__ = [
    "KINDS",
    "VOCABULARY",
    "Axes",
    "AxesSpec",
    "Axis",
    "AxisKind",
    "parse_axes_spec",
    "resolve_axes",
]

#: ``y``/``x``: the image plane; ``c``: channels; ``t``: time; ``z``: depth (a space axis
#: carried as a batch axis); ``n``: samples of a batch; ``batch``: any other batch axis.
AxisKind = Literal["y", "x", "c", "t", "z", "n", "batch"]
KINDS: tuple[AxisKind, ...] = ("y", "x", "c", "t", "z", "n", "batch")

#: Dimension names featuremap understands (matched case-insensitively), and their kind.
VOCABULARY: Mapping[str, AxisKind] = {
    **dict.fromkeys(("y", "lat", "latitude", "row", "rows", "northing"), "y"),
    **dict.fromkeys(
        ("x", "lon", "long", "longitude", "col", "cols", "column", "columns", "easting"), "x"
    ),
    **dict.fromkeys(
        (
            "c",
            "ch",
            "channel",
            "channels",
            "band",
            "bands",
            "color",
            "colour",
            "rgb",
            "rgba",
            "wavelength",
            "spectral",
        ),
        "c",
    ),
    **dict.fromkeys(
        ("t", "time", "times", "frame", "frames", "timepoint", "timepoints", "date"), "t"
    ),
    **dict.fromkeys(("z", "depth", "plane", "planes", "slice", "slices", "lev", "level"), "z"),
    **dict.fromkeys(
        (
            "n",
            "batch",
            "sample",
            "samples",
            "image",
            "images",
            "item",
            "items",
            "member",
            "ensemble",
            "realization",
            "scene",
            "scenes",
            "tile",
            "tiles",
            "fov",
        ),
        "n",
    ),
}

#: Letters of the string form of ``input.axes`` (``tczyx``, ``nyxc``, ...).
_LETTERS = {"t": "t", "c": "c", "z": "z", "y": "y", "x": "x", "n": "n"}
_PLACEHOLDER = re.compile(r"dim_\d+")


@dataclass(frozen=True)
class Axis:
    """One input axis: its name (as the input calls it) and its kind."""

    name: str
    kind: AxisKind

    @property
    def is_batch(self) -> bool:
        return self.kind not in ("y", "x", "c")


@dataclass(frozen=True)
class Axes:
    """The kinds of an input's axes, in the input's storage order, and where they came from.

    ``source`` is ``"input.axes"``, ``"OME-NGFF"``, ``"dimension names"`` or ``"positional"``.
    """

    axes: tuple[Axis, ...]
    source: str
    #: 2: the image plane is ``(y, x)`` and ``z`` is a batch axis; 3: ``(z, y, x)`` are spatial.
    spatial_ndim: int = 2

    def volumetric(self) -> Axes:
        """These axes for a 3-D stack: the ``z`` axis (the last of that kind) made spatial.

        Raises
        ------
        InputError
            When the input has no ``z`` axis.
        """
        if self.index("z") is None:
            raise InputError(
                f"a stack of 3-D layers filters along z, but the input's axes {self.describe()} "
                f"have no z axis; say which axis is z with {input_key('axes')} (e.g. czyx), or use "
                "2-D layers"
            )
        return Axes(self.axes, self.source, 3)

    @property
    def z(self) -> int:
        """The spatial ``z`` axis of a volumetric input: the last axis of kind ``z``."""
        found = [i for i, axis in enumerate(self.axes) if axis.kind == "z"]
        if self.spatial_ndim != 3 or not found:
            raise InputError(f"the input has no spatial z axis; its axes are {self.describe()}")
        return found[-1]

    @property
    def spatial(self) -> tuple[int, ...]:
        """Positions of the spatial axes, ``(y, x)`` or ``(z, y, x)``."""
        return (self.z, self.y, self.x) if self.spatial_ndim == 3 else (self.y, self.x)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(axis.name for axis in self.axes)

    def index(self, kind: AxisKind) -> int | None:
        """Position of the (only) axis of ``kind``; ``None`` when there is none."""
        found = [i for i, axis in enumerate(self.axes) if axis.kind == kind]
        return found[0] if found else None

    @property
    def y(self) -> int:
        return self._required("y")

    @property
    def x(self) -> int:
        return self._required("x")

    @property
    def channel(self) -> int | None:
        return self.index("c")

    @property
    def batch(self) -> tuple[int, ...]:
        """Positions of the batch axes: those that are not ``z`` first, then the ``z`` axes, each
        in storage order (the order of the output's batch axes, NGFF's order); a spatial ``z``
        is no batch axis."""
        spatial = self.spatial
        batch = [i for i, axis in enumerate(self.axes) if axis.is_batch and i not in spatial]
        return tuple(sorted(batch, key=lambda i: self.axes[i].kind == "z"))

    @property
    def order(self) -> tuple[int, ...]:
        """The permutation that puts the axes in ``(*batch, c, *spatial)`` order (no ``c`` if
        absent)."""
        channel = () if self.channel is None else (self.channel,)
        return (*self.batch, *channel, *self.spatial)

    def find(self, key: str) -> int:
        """The axis named ``key``, or of kind ``key``; :class:`InputError` listing the axes."""
        for i, axis in enumerate(self.axes):
            if axis.name == key:
                return i
        matches = [i for i, axis in enumerate(self.axes) if axis.kind == key]
        if len(matches) == 1:
            return matches[0]
        raise InputError(f"the input has no axis {key!r}; its axes are {self.describe()}")

    def describe(self) -> str:
        """``(t: time, c: channel, y, x)``-style summary for messages."""
        return (
            "("
            + ", ".join(f"{a.name}={a.kind}" if a.name != a.kind else a.name for a in self.axes)
            + ")"
        )

    def _required(self, kind: AxisKind) -> int:
        position = self.index(kind)
        if position is None:  # pragma: no cover - resolve_axes guarantees y and x
            raise InputError(f"the input has no {kind} axis")
        return position


#: A parsed ``input.axes``: a tuple of kinds per axis (string and list forms) or a mapping.
AxesSpec = tuple[AxisKind, ...] | Mapping[str, AxisKind]


def _spec_help() -> str:
    return (
        f"give {input_key('axes')} as letters such as tczyx or nyxc, a list of names such as "
        "[time, band, lat, lon], or a mapping such as {lat: y, lon: x, band: c}"
    )


def _kind_of_name(name: str) -> AxisKind | None:
    return VOCABULARY.get(name.lower())


def _parse_kind(value: Any, where: str) -> AxisKind:
    if isinstance(value, str):
        if value in KINDS:
            return value
        kind = _kind_of_name(value)
        if kind is not None:
            return kind
    raise InputError(
        f"{where} must be an axis kind ({', '.join(KINDS)}) or a name from the axes vocabulary, "
        f"got {describe(value)}{suggestion(value, KINDS)}"
    )


def parse_axes_spec(value: Any) -> AxesSpec | None:
    """Check ``input.axes`` / ``--axes``; ``None`` stays ``None`` (axes come from the input).

    Raises
    ------
    InputError
        An unknown letter or name, or a value of the wrong form, in one line.
    """
    if value is None:
        return None
    if isinstance(value, str):
        if "=" in value or "," in value:  # the command line's list and mapping forms
            return _parse_cli_form(value)
        unknown = [letter for letter in value if letter.lower() not in _LETTERS]
        if not value or unknown:
            raise InputError(
                f"axes {value!r} has letters featuremap does not know ({', '.join(unknown) or 'none given'}); "
                f"use t, c, z, y, x, n; {_spec_help()}"
            )
        return tuple(_LETTERS[letter.lower()] for letter in value)  # type: ignore[misc]
    if isinstance(value, Mapping):
        if not value:
            raise InputError(f"axes must not be an empty mapping; {_spec_help()}")
        return {str(name): _parse_kind(kind, f"axes.{name}") for name, kind in value.items()}
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return tuple(_parse_kind(name, f"axes[{i}]") for i, name in enumerate(value))
    raise InputError(
        f"axes must be a string, a list of names or a mapping, got {describe(value)}; {_spec_help()}"
    )


def _parse_cli_form(text: str) -> AxesSpec:
    """``time,band,lat,lon`` (a list) or ``lat=y,lon=x,band=c`` (a mapping)."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if all("=" in item for item in items):
        pairs = [item.split("=", 1) for item in items]
        return parse_axes_spec({name.strip(): kind.strip() for name, kind in pairs})  # type: ignore[return-value]
    if any("=" in item for item in items):
        raise InputError(f"axes {text!r} mixes names and name=kind pairs; {_spec_help()}")
    return parse_axes_spec(items)  # type: ignore[return-value]


def _named(names: Sequence[str] | None) -> bool:
    """Whether ``names`` are real names (not absent, not xarray's ``dim_<i>`` placeholders)."""
    return bool(names) and not all(_PLACEHOLDER.fullmatch(name) for name in names or ())


def _positional(ndim: int, channel_axis: int | None, spatial_ndim: int = 2) -> tuple[AxisKind, ...]:
    """``(..., C, H, W)``: the last two axes are ``y, x``, the channel axis is ``-3`` (or the
    given one), everything else is a batch axis; a 2-D image has no channel axis. For a 3-D
    stack ``(..., C, D, H, W)``: ``z`` before ``y, x``, the channel before ``z``; a 3-D array
    is one volume without a channel axis."""
    kinds: list[AxisKind] = ["batch"] * ndim
    spatial: list[AxisKind] = ["z", "y", "x"]
    kinds[-spatial_ndim:] = spatial[-spatial_ndim:]
    if ndim > spatial_ndim:
        default = -spatial_ndim - 1
        kinds[ndim + (default if channel_axis is None else channel_axis)] = "c"
    return tuple(kinds)


def _from_names(names: Sequence[str], mapping: Mapping[str, AxisKind]) -> tuple[AxisKind, ...]:
    unknown_keys = [key for key in mapping if key not in names]
    if unknown_keys:
        raise InputError(
            f"axes names {', '.join(map(repr, unknown_keys))} that the input does not have; its "
            f"dimension names are {list(names)}"
        )
    kinds: list[AxisKind] = []
    for i, name in enumerate(names):
        kind = mapping.get(name) or _kind_of_name(name)
        if kind is None:
            raise InputError(
                f"input axis {name!r} (axis {i} of {list(names)}) is not in featuremap's axes "
                f"vocabulary; say what it is with {input_key('axes')}, e.g. {{{name}: batch}} or "
                f"{{{name}: c}} (see README 'Your data')"
            )
        kinds.append(kind)
    return tuple(kinds)


def _from_ome(ome_axes: Sequence[Mapping[str, Any]]) -> tuple[AxisKind, ...]:
    """Kinds of OME-NGFF axes: the last two ``space`` axes are ``y, x``; ``channel`` is ``c``;
    ``time`` is ``t``; other ``space`` axes are ``z``; custom types are batch axes."""
    space = [i for i, axis in enumerate(ome_axes) if axis.get("type") == "space"]
    if len(space) < 2:
        raise InputError(
            f"the OME-NGFF axes {[a.get('name') for a in ome_axes]} have fewer than two space axes; "
            f"give {input_key('axes')}"
        )
    kinds: list[AxisKind] = []
    for i, axis in enumerate(ome_axes):
        kind = axis.get("type")
        if i == space[-2]:
            kinds.append("y")
        elif i == space[-1]:
            kinds.append("x")
        elif kind == "space":
            kinds.append("z")
        elif kind == "channel":
            kinds.append("c")
        elif kind == "time":
            kinds.append("t")
        else:
            kinds.append("batch")
    return tuple(kinds)


def _check(kinds: Sequence[AxisKind], names: Sequence[str], source: str) -> None:
    for kind, label in (("y", "y (image rows)"), ("x", "x (image columns)"), ("c", "channel")):
        count = sum(1 for k in kinds if k == kind)
        if count > 1 or (count == 0 and kind != "c"):
            shown = ", ".join(f"{n}={k}" for n, k in zip(names, kinds, strict=True))
            problem = "several axes are" if count > 1 else "no axis is"
            raise InputError(
                f"{problem} {label} in the input's axes ({shown}, from {source}); {_spec_help()}"
            )


def resolve_axes(
    ndim: int,
    *,
    spec: AxesSpec | None = None,
    ome_axes: Sequence[Mapping[str, Any]] | None = None,
    names: Sequence[str] | None = None,
    channel_axis: int | None = None,
    spatial_ndim: int = 2,
) -> Axes:
    """The :class:`Axes` of an ``ndim``-D input, from the first source that says (see module).

    ``channel_axis`` is the older way to place the channel axis of an unnamed array; it is
    refused together with ``spec``. ``spatial_ndim`` 3 (a stack of 3-D layers) makes ``z``
    spatial (:meth:`Axes.volumetric`).
    """
    stored = list(names) if names and len(names) == ndim else None
    if ome_axes is not None and len(ome_axes) == ndim:
        stored = [str(axis.get("name", f"dim_{i}")) for i, axis in enumerate(ome_axes)]
    if spec is not None and channel_axis is not None:
        raise InputError(
            "give input.axes or input.channel_axis, not both (axes says where the channel is)"
        )
    if isinstance(spec, Mapping):
        if stored is None or not _named(stored):
            raise InputError(
                f"axes {dict(spec)} maps names, but the input's axes have no names; give the kinds "
                "in order instead, e.g. axes: nyxc"
            )
        kinds, source = _from_names(stored, spec), "input.axes"
    elif spec is not None:
        if len(spec) != ndim:
            raise InputError(
                f"axes names {len(spec)} axes but the input has {ndim} (shape of {ndim} dimensions); "
                "give one letter or name per axis"
            )
        kinds, source = spec, "input.axes"
    elif channel_axis is not None:
        kinds, source = _positional(ndim, _channel_position(channel_axis, ndim)), "channel_axis"
    elif ome_axes is not None:
        if len(ome_axes) != ndim:
            raise InputError(
                f"the OME-NGFF metadata lists {len(ome_axes)} axes for a {ndim}-D array"
            )
        kinds, source = _from_ome(ome_axes), "OME-NGFF"
    elif stored is not None and _named(stored):
        kinds, source = _from_names(stored, {}), "dimension names"
    else:
        if ndim < spatial_ndim:
            raise InputError(
                f"input array must have at least {spatial_ndim} dimensions "
                f"({', '.join('zyx'[-spatial_ndim:])}), got {ndim}"
            )
        kinds, source = _positional(ndim, None, spatial_ndim), "positional"
    final_names = (
        list(stored)
        if stored is not None and _named(stored)
        else [_default_name(k, i) for i, k in enumerate(kinds)]
    )
    _check(kinds, final_names, source)
    axes = Axes(
        tuple(Axis(name, kind) for name, kind in zip(final_names, kinds, strict=True)), source
    )
    return axes.volumetric() if spatial_ndim == 3 else axes


def _default_name(kind: AxisKind, index: int) -> str:
    return kind if kind in ("y", "x", "c") else f"dim_{index}"


def _channel_position(channel_axis: int, ndim: int) -> int:
    """The older ``channel_axis`` as a negative index ``<= -3``; :class:`InputError` otherwise."""
    if ndim == 2:
        raise InputError(
            f"channel_axis {describe(channel_axis)} was given but the input is 2-D (y, x) and has no "
            "channel axis; leave channel_axis out"
        )
    if (
        isinstance(channel_axis, bool)
        or not isinstance(channel_axis, int)
        or not (0 <= channel_axis <= ndim - 3 or -ndim <= channel_axis <= -3)
    ):
        raise InputError(
            f"channel_axis must be an integer in [{-ndim}, -3] or [0, {ndim - 3}] for a {ndim}-D input "
            f"(the last two axes are y, x), got {describe(channel_axis)}"
        )
    return channel_axis - ndim if channel_axis >= 0 else channel_axis

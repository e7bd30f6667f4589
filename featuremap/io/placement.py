"""Where an input's pixels are in physical space, and where the output's pixels therefore are.

An input pixel ``i`` along ``y`` (or ``x``) is centred on ``translation + scale * i`` in the
input's units (:class:`Spacing`): from the NGFF transforms of the chosen level, or from regular
1-D xarray coordinates (descending ones give a negative scale). A region's origin is folded into
the translation. Output pixel ``i`` of a stack with ``offset`` and ``jump`` is then centred on
``translation + scale * (offset + i * jump)`` (:meth:`Spacing.compose`). Batch axes keep their
coordinate values (time stamps, z positions) as :class:`Coordinate` s, and a CRS (CF
``grid_mapping`` / rioxarray's ``spatial_ref``) travels along as a :class:`GridMapping`. For a
stack of 3-D layers ``z`` is a spatial axis like ``y`` and ``x``: it has a :class:`Spacing`
(:attr:`Placement.z`) and is composed the same way.

Coordinates without ``units`` under a CRS (rioxarray writes none by default) take the CRS's own
axis unit and CF names (:meth:`Placement.with_crs_units`: ``metre`` for UTM,
``degrees_north`` / ``degrees_east`` for EPSG:4326), so metres are never labelled ``pixel``.

:func:`ome_placement` reads a placement from an OME-Zarr level's transforms,
:func:`xarray_placement` from an xarray dataset's coordinate variables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr

from featuremap.engine.geometry import StackGeometry
from featuremap.engine.stack import ResolvedStack

if TYPE_CHECKING:
    from featuremap.io.axes import Axes

__all__ = [
    "NGFF_UNITS",
    "TIME_UNITS",
    "Coordinate",
    "GridMapping",
    "Interval",
    "Placement",
    "Spacing",
    "crs_axis_attrs",
    "geometry_attrs",
    "meaning_attrs",
    "ngff_unit",
    "output_placement",
    "physical_geometry",
    "regular_spacing",
    "spatial_attrs",
    "xarray_placement",
]

#: A part of an axis: ``[start, stop)`` in pixels.
Interval = tuple[int, int]

#: UDUNITS-2 names NGFF allows for space and time axes, and common spellings of them.
NGFF_UNITS: Mapping[str, str] = {
    **{
        name: name
        for name in (
            "angstrom",
            "attometer",
            "centimeter",
            "decimeter",
            "exameter",
            "femtometer",
            "foot",
            "gigameter",
            "hectometer",
            "inch",
            "kilometer",
            "megameter",
            "meter",
            "micrometer",
            "mile",
            "millimeter",
            "nanometer",
            "parsec",
            "petameter",
            "picometer",
            "terameter",
            "yard",
            "yoctometer",
            "yottameter",
            "zeptometer",
            "zettameter",
            "attosecond",
            "centisecond",
            "day",
            "decisecond",
            "exasecond",
            "femtosecond",
            "gigasecond",
            "hectosecond",
            "hour",
            "kilosecond",
            "megasecond",
            "microsecond",
            "millisecond",
            "minute",
            "nanosecond",
            "petasecond",
            "picosecond",
            "second",
            "terasecond",
            "yoctosecond",
            "yottasecond",
            "zeptosecond",
            "zettasecond",
        )
    },
    "m": "meter",
    "metre": "meter",
    "meters": "meter",
    "metres": "meter",
    "km": "kilometer",
    "cm": "centimeter",
    "mm": "millimeter",
    "um": "micrometer",
    "µm": "micrometer",
    "μm": "micrometer",
    "micron": "micrometer",
    "microns": "micrometer",
    "nm": "nanometer",
    "s": "second",
    "sec": "second",
    "seconds": "second",
    "ms": "millisecond",
    "us": "microsecond",
    "min": "minute",
    "h": "hour",
    "hr": "hour",
}

#: The NGFF units of time (the others are of space).
TIME_UNITS = frozenset(
    unit
    for unit in NGFF_UNITS.values()
    if unit.endswith("second") or unit in ("minute", "hour", "day")
)

#: Coordinate attributes that describe encoding, not meaning: never copied to the output.
_ENCODING_ATTRS = frozenset(
    {"_FillValue", "_ARRAY_DIMENSIONS", "dtype", "scale_factor", "add_offset"}
)


def ngff_unit(unit: str | None) -> str | None:
    """The NGFF (UDUNITS-2) spelling of ``unit``, or ``None`` when NGFF has no name for it."""
    return None if unit is None else NGFF_UNITS.get(unit.strip())


def meaning_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """``attrs`` without the encoding attributes xarray and Zarr add (``_FillValue``, ...)."""
    return {key: value for key, value in attrs.items() if key not in _ENCODING_ATTRS}


@dataclass(frozen=True)
class Spacing:
    """A regular grid along one axis: pixel ``i`` is centred on ``translation + scale * i``.

    ``attrs`` are the input coordinate's own attributes (``standard_name``, ``long_name``, ...),
    carried to the output coordinate; ``unit`` is ``None`` when the input says none (then the
    values are input pixel indices).
    """

    scale: float = 1.0
    translation: float = 0.0
    unit: str | None = None
    attrs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_pixels(self) -> bool:
        return self.scale == 1.0 and self.translation == 0.0 and self.unit is None

    def shifted(self, start: int) -> Spacing:
        """The spacing of a region that starts at input pixel ``start``."""
        return replace(self, translation=self.translation + self.scale * start)

    def compose(self, offset: float, jump: int) -> Spacing:
        """The output's spacing: output pixel ``i`` sits on input pixel ``offset + i * jump``."""
        return replace(
            self, scale=self.scale * jump, translation=self.translation + self.scale * offset
        )

    def values(self, length: int) -> np.ndarray:
        """Centres of ``length`` pixels."""
        return self.translation + self.scale * np.arange(length, dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "translation": self.translation, "unit": self.unit}


def regular_spacing(
    values: np.ndarray, attrs: Mapping[str, Any], *, rtol: float = 1e-4
) -> Spacing | None:
    """The :class:`Spacing` of 1-D coordinate ``values``; ``None`` when they are not regular
    (or not numbers). One value gives scale 1 at that translation."""
    if values.ndim != 1 or values.size == 0 or values.dtype.kind not in "iuf":
        return None
    data = values.astype(np.float64)
    step = 1.0 if data.size == 1 else (data[-1] - data[0]) / (data.size - 1)
    if step == 0 or not np.all(np.isfinite(data)):
        return None
    expected = data[0] + step * np.arange(data.size)
    if np.max(np.abs(data - expected)) > rtol * abs(step):
        return None
    unit = attrs.get("units")
    return Spacing(
        float(step), float(data[0]), unit if isinstance(unit, str) else None, meaning_attrs(attrs)
    )


@dataclass(frozen=True)
class Coordinate:
    """The coordinate values of a batch axis (time stamps, z positions), as stored, with the
    attributes that decode them (``units``, ``calendar``)."""

    values: np.ndarray
    attrs: Mapping[str, Any] = field(default_factory=dict)

    def region(self, start: int, stop: int) -> Coordinate:
        return replace(self, values=self.values[start:stop])


@dataclass(frozen=True)
class GridMapping:
    """A CRS as CF stores it: a 0-d variable (rioxarray's ``spatial_ref``) with its attributes."""

    name: str
    attrs: Mapping[str, Any]

    def for_grid(self, y: Spacing, x: Spacing) -> GridMapping:
        """The mapping for an output grid: GDAL's ``GeoTransform`` (which rioxarray reads before
        the coordinates) describes the new pixels, whose edges lie half a pixel out."""
        attrs = dict(self.attrs)
        if "GeoTransform" in attrs:
            left = x.translation - x.scale / 2
            top = y.translation - y.scale / 2
            attrs["GeoTransform"] = f"{left!r} {x.scale!r} 0.0 {top!r} 0.0 {y.scale!r}"
        return replace(self, attrs=attrs)

    @classmethod
    def from_wkt(cls, wkt: str, name: str = "spatial_ref") -> GridMapping:
        """A mapping holding only a CRS as WKT, under both names readers look for (CF's
        ``crs_wkt``, GDAL's and rioxarray's ``spatial_ref``)."""
        return cls(name, {"crs_wkt": wkt, "spatial_ref": wkt})

    @property
    def wkt(self) -> str | None:
        """The CRS as WKT (CF's ``crs_wkt``, or GDAL's ``spatial_ref``), when the mapping has it."""
        for key in ("crs_wkt", "spatial_ref"):
            value = self.attrs.get(key)
            if isinstance(value, str) and value:
                return value
        return None


def crs_axis_attrs(mapping: GridMapping) -> dict[str, dict[str, Any]]:
    """CF attributes of the ``y`` and ``x`` coordinates the CRS implies (``units``,
    ``standard_name``, ``long_name``, ``axis``), from pyproj's reading of its axes; empty when
    pyproj is not installed (the ``geo`` extra) or the CRS cannot be read.
    """
    try:
        from pyproj import CRS
        from pyproj.exceptions import CRSError
    except ImportError:
        return {}
    try:
        crs = CRS.from_wkt(mapping.wkt) if mapping.wkt else CRS.from_cf(dict(mapping.attrs))
        axes = crs.cs_to_cf()
    except (CRSError, KeyError, TypeError, ValueError):
        return {}
    found = {str(axis.get("axis", "")).lower(): dict(axis) for axis in axes}
    return {name: found[name] for name in ("y", "x") if name in found}


def _with_unit(spacing: Spacing, cf: Mapping[str, Any]) -> Spacing:
    """``spacing`` with the CRS's unit and CF names when it has no unit of its own (the
    coordinate's own attributes win over the CRS's). A default spacing stays as it is: with no
    coordinate, its values are pixel indices, not CRS units."""
    unit = cf.get("units")
    if spacing.unit is not None or spacing == Spacing() or not isinstance(unit, str):
        return spacing
    return replace(spacing, unit=unit, attrs={**cf, **spacing.attrs, "units": unit})


@dataclass(frozen=True)
class Placement:
    """Everything that places an input (or an output) in physical space.

    ``batch`` maps a batch axis's name to its coordinate values (only axes that have some);
    ``z`` is the spacing of a spatial ``z`` axis (3-D stacks only; ``None`` where ``z`` is a batch
    axis or absent).
    """

    y: Spacing = field(default_factory=Spacing)
    x: Spacing = field(default_factory=Spacing)
    batch: Mapping[str, Coordinate] = field(default_factory=dict)
    grid_mapping: GridMapping | None = None
    z: Spacing | None = None

    @property
    def spatial(self) -> tuple[Spacing, ...]:
        """The spacing of each spatial axis: ``(y, x)``, or ``(z, y, x)`` for a volume."""
        return (self.y, self.x) if self.z is None else (self.z, self.y, self.x)

    @property
    def physical_spacing(self) -> tuple[float, ...] | None:
        """The pixel size along each spatial axis in physical units (``None`` where an axis has
        no unit): what a filter's sigma in physical units is divided by."""
        if any(spacing.unit is None for spacing in self.spatial):
            return None
        return tuple(abs(spacing.scale) for spacing in self.spatial)

    def with_crs_units(self) -> Placement:
        """This placement with ``y`` / ``x`` in the CRS's axis units where the coordinates say
        none (:func:`crs_axis_attrs`); as it is without a CRS."""
        if self.grid_mapping is None or (self.y.unit is not None and self.x.unit is not None):
            return self
        cf = crs_axis_attrs(self.grid_mapping)
        return replace(
            self, y=_with_unit(self.y, cf.get("y", {})), x=_with_unit(self.x, cf.get("x", {}))
        )

    def to_dict(self) -> dict[str, Any]:
        """A summary for provenance and ``inspect``."""
        spatial = {} if self.z is None else {"z": self.z.to_dict()}
        return {
            **spatial,
            "y": self.y.to_dict(),
            "x": self.x.to_dict(),
            "crs": None if self.grid_mapping is None else self.grid_mapping.name,
        }


def _sibling(group: zarr.Group | None, name: str) -> zarr.Array[Any] | None:
    if group is None:
        return None
    found = group.get(name)
    return found if isinstance(found, zarr.Array) else None


def xarray_placement(
    group: zarr.Group | None, array: zarr.Array[Any], axes: Axes, region: Sequence[Interval]
) -> tuple[Placement, tuple[str, ...] | None]:
    """Placement from an xarray dataset's coordinate variables (siblings named like the dims),
    and the channel labels when the channel axis has a coordinate."""
    spacings: dict[int, Spacing] = {}
    batch: dict[str, Coordinate] = {}
    labels = None
    for index, axis in enumerate(axes.axes):
        coordinate = _sibling(group, axis.name)
        if coordinate is None or coordinate.ndim != 1 or coordinate.shape[0] != array.shape[index]:
            continue
        start, stop = region[index]
        values = np.asarray(coordinate[start:stop])
        attrs = meaning_attrs(dict(coordinate.attrs))
        if index in axes.spatial:
            spacing = regular_spacing(np.asarray(coordinate[...]), attrs)
            if spacing is not None:
                spacings[index] = spacing.shifted(start)
        elif axis.kind == "c":
            labels = tuple(str(v) for v in values)
        else:
            batch[axis.name] = Coordinate(values, attrs)
    placement = Placement(
        y=spacings.get(axes.y, Spacing()),
        x=spacings.get(axes.x, Spacing()),
        batch=batch,
        grid_mapping=_grid_mapping(group, array),
        z=spacings.get(axes.z, Spacing()) if axes.spatial_ndim == 3 else None,
    )
    return placement.with_crs_units(), labels


def _grid_mapping(group: zarr.Group | None, array: zarr.Array[Any]) -> GridMapping | None:
    """The CRS of an array: its CF ``grid_mapping`` variable, a ``spatial_ref`` or ``crs``
    sibling, or a ``crs`` attribute on the array itself."""
    names = [array.attrs.get("grid_mapping"), "spatial_ref", "crs"]
    for name in names:
        if isinstance(name, str):
            variable = _sibling(group, name)
            if variable is not None and variable.ndim == 0:
                return GridMapping(name, meaning_attrs(dict(variable.attrs)))
    crs = array.attrs.get("crs")
    return GridMapping.from_wkt(crs) if isinstance(crs, str) else None


def physical_geometry(stack: StackGeometry, placement: Placement) -> dict[str, Any]:
    """The stack's receptive field, jump and first output centre in the input's physical units
    (per spatial axis; pixels where the input has no units)."""
    spacings = placement.spatial
    return {
        "units": [spacing.unit or "pixel" for spacing in spacings],
        "receptive_field": [
            abs(s.scale) * rf for s, rf in zip(spacings, stack.receptive_field, strict=True)
        ],
        "jump": [s.scale * jump for s, jump in zip(spacings, stack.jump, strict=True)],
        "offset": [
            s.translation + s.scale * o for s, o in zip(spacings, stack.offset, strict=True)
        ],
    }


def output_placement(stack: StackGeometry, placement: Placement) -> Placement:
    """Where the output's pixels are: ``translation + scale * (offset + i * jump)`` per axis,
    the batch coordinates as they are, and the CRS with the output grid's transform."""
    *z, y, x = (
        spacing.compose(offset, jump)
        for spacing, offset, jump in zip(placement.spatial, stack.offset, stack.jump, strict=True)
    )
    mapping = None if placement.grid_mapping is None else placement.grid_mapping.for_grid(y, x)
    return replace(placement, y=y, x=x, grid_mapping=mapping, z=z[0] if z else None)


def spatial_attrs(spacing: Spacing) -> dict[str, Any]:
    """An output ``y`` / ``x`` coordinate's attributes: the input's own, and its ``units``."""
    return {**spacing.attrs, "units": spacing.unit or "pixel"}


def geometry_attrs(stack: ResolvedStack, placement: Placement) -> dict[str, Any]:
    """The ``featuremap`` attributes of the features, the same in a store and from
    ``featuremap.apply``: the stack's receptive field, jump and offset, the same in the input's
    physical units, and its layers (a single layer's own kernel size, stride, padding and
    dilation too, DESIGN section 6). ``placement`` is the input's."""
    layers = stack.describe()
    attrs: dict[str, Any] = {}
    if len(layers) == 1:
        attrs.update(
            {key: layers[0][key] for key in ("kernel_size", "stride", "padding", "dilation")}
        )
    attrs.update(stack.geometry.to_dict())
    attrs["physical"] = physical_geometry(stack.geometry, placement)
    attrs["layers"] = layers
    return attrs

"""OME-NGFF (OME-Zarr) metadata: reading an image group's multiscales, writing the output's.

Reading (:func:`read_multiscales`) understands NGFF 0.4 (``multiscales`` in the group's
attributes, Zarr format 2) and 0.5 (under ``ome``, Zarr format 3): the axes (names, types,
units), each level's ``path`` and its ``scale`` / ``translation``, composed with the multiscale's
own transforms, and the ``omero`` channel labels.

Writing (:func:`ome_multiscales`) gives the output NGFF metadata whenever its axes fit NGFF's
rules: at most one time axis first, then the features as the channel axis, then 2 or 3 space
axes (``z``, ``y``, ``x``). NGFF has no batch axis type, so a single non-space batch axis (an
ML batch or an unnamed leading axis) is written as the time axis, which viewers show as a
slider; more than one non-space batch axis has no NGFF form and gets no OME metadata. The axes
are named ``t``, ``c``, ``z``, ``y``, ``x`` (:func:`featuremap.io.layout.output_batch_names`,
:data:`featuremap.io.layout.FEATURE_AXIS`): NGFF requires the axis names to be the array's
dimension names, and bioio reads one-letter names only. Every axis has its unit and scale, the
time axis too (from its regular coordinates). The coordinate transformations are one ``scale``
then one ``translation``, the form NGFF requires (some readers apply only the first transform,
so scale must come first and translation second). The ``omero`` display metadata is
:mod:`featuremap.io._display`'s. It is built in NGFF 0.5's form; :func:`ngff_attributes` places
it for the store's version (0.4 keeps the same multiscales and ``omero``, at the top of the
attributes of a Zarr v2 group).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from featuremap.errors import InputError, describe
from featuremap.io._display import FeatureStats, omero_channels
from featuremap.io._paths import check_node_path

if TYPE_CHECKING:
    from featuremap.io.axes import Axes

from featuremap.io.placement import Coordinate, Interval, Placement, Spacing, ngff_unit

__all__ = [
    "Level",
    "Multiscale",
    "OmeAxis",
    "ngff_attributes",
    "ome_multiscales",
    "ome_placement",
    "omero",
    "read_multiscales",
]


@dataclass(frozen=True)
class Level:
    """One resolution level: its array path, and ``scale`` / ``translation`` per axis."""

    path: str
    scale: tuple[float, ...]
    translation: tuple[float, ...]


@dataclass(frozen=True)
class Multiscale:
    """An NGFF image group's first multiscale."""

    version: str
    axes: tuple[Mapping[str, Any], ...]
    levels: tuple[Level, ...]
    channel_labels: tuple[str, ...] | None = None

    def level(self, choice: int | str | None) -> tuple[int, Level]:
        """The level ``choice`` (an index, 0 = full resolution, or a dataset path)."""
        if choice is None:
            return 0, self.levels[0]
        for index, level in enumerate(self.levels):
            if choice == level.path:
                return index, level
        for index, level in enumerate(self.levels):
            if choice == index or choice == str(index):
                return index, level
        paths = [level.path for level in self.levels]
        raise InputError(
            f"the OME-Zarr image has no level {describe(choice)}; its levels are 0..{len(paths) - 1} "
            f"(paths {paths})"
        )

    def spacing(self, level: Level, axis: int) -> Spacing:
        """The physical spacing of ``axis`` at ``level``, with the axis's unit."""
        unit = self.axes[axis].get("unit")
        return Spacing(
            level.scale[axis], level.translation[axis], unit if isinstance(unit, str) else None
        )


def _transforms(transforms: Any, ndim: int, where: str) -> tuple[list[float], list[float]]:
    """``(scale, translation)`` of an NGFF ``coordinateTransformations`` list."""
    scale, translation = [1.0] * ndim, [0.0] * ndim
    if transforms is not None and not isinstance(transforms, list):
        raise _malformed(f"{where} coordinateTransformations", transforms, "a list")
    for transform in transforms or []:
        kind = transform.get("type") if isinstance(transform, Mapping) else None
        if kind == "identity":
            continue
        values = transform.get(kind) if kind in ("scale", "translation") else None
        if not isinstance(values, list) or len(values) != ndim:
            raise InputError(
                f"OME-NGFF {where} has a coordinate transformation featuremap cannot read "
                f"({describe(transform)}); only inline scale and translation are supported"
            )
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise InputError(
                f"OME-NGFF {where} {kind} must be numbers, got {describe(values)}; fix the "
                "image's metadata (zarr.json or .zattrs)"
            )
        if kind == "scale":
            scale = [float(v) for v in values]
        else:
            translation = [float(v) for v in values]
    return scale, translation


def _check_finite(level: Level) -> None:
    """Refuse a NaN, infinite or overflowing scale or translation: it would place every output
    pixel nowhere, and JSON (the output's ``zarr.json``) cannot hold it."""
    for kind, values in (("scale", level.scale), ("translation", level.translation)):
        if not all(math.isfinite(value) for value in values):
            raise InputError(
                f"OME-NGFF dataset {level.path!r} has a {kind} that is not a finite number "
                f"({describe(list(values))}, composed with the multiscale's); fix the input's "
                "coordinateTransformations"
            )


def _malformed(what: str, value: Any, expected: str) -> InputError:
    return InputError(
        f"the group's OME-NGFF {what} is malformed ({describe(value)}): it must be {expected}; "
        "fix the image's metadata (zarr.json or .zattrs)"
    )


def _axes(first: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:
    """The multiscale's axes: mappings with a string ``name`` (a bare name is NGFF 0.3's)."""
    axes = first.get("axes", [])
    if not isinstance(axes, list):
        raise _malformed("axes", axes, "a list of axes")
    checked = []
    for axis in axes:
        axis = {"name": axis} if isinstance(axis, str) else axis
        if not isinstance(axis, Mapping) or not isinstance(axis.get("name"), str):
            raise _malformed("axis", axis, 'a mapping with a string "name"')
        for key in ("type", "unit"):
            if axis.get(key) is not None and not isinstance(axis[key], str):
                raise _malformed(f"axis {key}", axis[key], "a string")
        checked.append(axis)
    return tuple(checked)


def _levels(first: Mapping[str, Any], ndim: int) -> tuple[Level, ...]:
    """The multiscale's datasets as levels, with the multiscale's own transforms composed."""
    outer_scale, outer_translation = _transforms(
        first.get("coordinateTransformations"), ndim, "multiscale"
    )
    datasets = first.get("datasets", [])
    if not isinstance(datasets, list):
        raise _malformed("datasets", datasets, "a list of datasets")
    levels = []
    for dataset in datasets:
        if not isinstance(dataset, Mapping) or "path" not in dataset:
            raise _malformed("dataset", dataset, 'a mapping with a "path"')
        path = check_node_path(dataset["path"], "the OME-NGFF dataset path")
        scale, translation = _transforms(dataset.get("coordinateTransformations"), ndim, "dataset")
        levels.append(
            Level(
                path,
                tuple(o * s for o, s in zip(outer_scale, scale, strict=True)),
                tuple(
                    o * t + ot
                    for o, t, ot in zip(outer_scale, translation, outer_translation, strict=True)
                ),
            )
        )
    if not levels:
        raise InputError("the group's OME-NGFF multiscales metadata lists no datasets")
    for level in levels:
        _check_finite(level)
    return tuple(levels)


def _channel_labels(omero: Any) -> tuple[str, ...] | None:
    """The ``omero`` channel labels, ``None`` when there is no ``omero`` channel list."""
    if omero is None:
        return None
    channels = omero.get("channels") if isinstance(omero, Mapping) else omero
    if channels is None:
        return None
    if not isinstance(channels, list) or not all(isinstance(c, Mapping) for c in channels):
        raise _malformed("omero channels", channels, "a list of mappings")
    return tuple(str(c.get("label", i)) for i, c in enumerate(channels))


def read_multiscales(attrs: Mapping[str, Any]) -> Multiscale | None:
    """The first multiscale of a group's attributes, or ``None`` when it is not an NGFF image."""
    ome = attrs.get("ome")
    if isinstance(ome, Mapping) and "multiscales" in ome:
        version, container = str(ome.get("version", "0.5")), ome
    elif "multiscales" in attrs:
        container = attrs
        listed = attrs["multiscales"]
        version = (
            str(listed[0].get("version", "0.4"))
            if isinstance(listed, list) and listed and isinstance(listed[0], Mapping)
            else "0.4"
        )
    else:
        return None
    multiscales = container.get("multiscales")
    if (
        not isinstance(multiscales, list)
        or not multiscales
        or not isinstance(multiscales[0], Mapping)
    ):
        raise InputError("the group's OME-NGFF multiscales metadata is empty or malformed")
    first = multiscales[0]
    axes = _axes(first)
    levels = _levels(first, len(axes))
    return Multiscale(version, axes, levels, _channel_labels(container.get("omero")))


def _ngff_axis(name: str, kind: str, unit: str | None) -> dict[str, Any]:
    axis: dict[str, Any] = {"name": name, "type": kind}
    if ngff_unit(unit) is not None:
        axis["unit"] = ngff_unit(unit)
    return axis


@dataclass(frozen=True)
class OmeAxis:
    """An output axis as NGFF sees it: name, type (time/channel/space), unit, scale, translation."""

    name: str
    type: str
    unit: str | None = None
    scale: float = 1.0
    translation: float = 0.0


def ome_multiscales(
    axes: Sequence[OmeAxis], *, path: str, name: str, channel_labels: Sequence[str] = ()
) -> dict[str, Any] | None:
    """NGFF 0.5 ``ome`` attributes for an array with ``axes`` (in storage order) at ``path``, or
    ``None`` when the axes do not fit NGFF's order ``[time] [channel] space{2,3}``."""
    order = {"time": 0, "channel": 1, "space": 2}
    types = [axis.type for axis in axes]
    if (
        any(kind not in order for kind in types)
        or types != sorted(types, key=order.__getitem__)
        or types.count("time") > 1
        or types.count("channel") > 1
        or not 2 <= types.count("space") <= 3
    ):
        return None
    metadata: dict[str, Any] = {
        "version": "0.5",
        "multiscales": [
            {
                "name": name,
                "axes": [_ngff_axis(axis.name, axis.type, axis.unit) for axis in axes],
                "datasets": [
                    {
                        "path": path,
                        "coordinateTransformations": [
                            {"type": "scale", "scale": [axis.scale for axis in axes]},
                            {
                                "type": "translation",
                                "translation": [axis.translation for axis in axes],
                            },
                        ],
                    }
                ],
            }
        ],
    }
    if channel_labels:
        metadata["omero"] = omero(channel_labels)
    return metadata


def ngff_attributes(ome: Mapping[str, Any], version: str) -> dict[str, Any]:
    """The group attributes that hold ``ome`` (:func:`ome_multiscales`) in NGFF ``version``:
    ``{"ome": ome}`` for 0.5; for 0.4 its ``multiscales`` (each with its own ``version``, as 0.4
    puts it) and ``omero`` at the top level, where 0.4 readers look."""
    if version == "0.5":
        return {"ome": dict(ome)}
    attributes = {key: value for key, value in ome.items() if key != "version"}
    attributes["multiscales"] = [
        {"version": version, **multiscale} for multiscale in ome["multiscales"]
    ]
    return attributes


def omero(labels: Sequence[str], stats: FeatureStats | None = None) -> dict[str, Any]:
    """The ``omero`` display metadata of features ``labels`` (:mod:`featuremap.io._display`):
    a few coloured channels active, windows from ``stats`` once the job has gathered them."""
    return {"channels": omero_channels(labels, stats), "rdefs": {"model": "color"}}


def ome_placement(
    multiscale: Multiscale, level_index: int, axes: Axes, region: Sequence[Interval]
) -> Placement:
    """Where the pixels of ``region`` of level ``level_index`` are, from its NGFF transforms."""
    level = multiscale.levels[level_index]

    def spacing_from(axis: int) -> Spacing:
        """The axis's spacing, shifted to the region's first pixel."""
        return multiscale.spacing(level, axis).shifted(region[axis][0])

    batch = {}
    for index in axes.batch:
        spacing = multiscale.spacing(level, index)
        if axes.axes[index].kind in ("z", "t") and not spacing.is_pixels:
            start, stop = region[index]
            attrs = {} if spacing.unit is None else {"units": spacing.unit}
            batch[axes.axes[index].name] = Coordinate(spacing.values(stop)[start:], attrs)
    return Placement(
        y=spacing_from(axes.y),
        x=spacing_from(axes.x),
        batch=batch,
        z=spacing_from(axes.z) if axes.spatial_ndim == 3 else None,
    )

"""bioformats2raw layouts: a root group holding one OME-Zarr image per series (``0/``, ``1/``...).

bioformats2raw (and its NGFF 0.5 successors) writes a microscope file as a root group whose
attributes carry ``bioformats2raw.layout`` (under ``ome`` in NGFF 0.5) and whose series are
image groups named ``0``, ``1``, ... (listed in ``OME/``'s ``series`` attribute when present).
:func:`series_group` opens the series an input asks for (``input.series``, default 0), so that
``--input x.ome.zarr`` reads ``x.ome.zarr/0`` as ``--input x.ome.zarr/0`` would.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import zarr

from featuremap.errors import InputError, describe
from featuremap.io._paths import check_node_path

__all__ = ["LAYOUT_KEY", "is_bioformats2raw", "series_group", "series_names"]

#: The root attribute that marks the layout (its value is the layout's version, 3).
LAYOUT_KEY = "bioformats2raw.layout"


def _attrs(group: zarr.Group) -> Mapping[str, Any]:
    """The group's attributes, NGFF 0.5's ``ome`` namespace folded in."""
    attrs = dict(group.attrs)
    ome = attrs.get("ome")
    return {**attrs, **ome} if isinstance(ome, Mapping) else attrs


def is_bioformats2raw(group: zarr.Group) -> bool:
    """Whether ``group`` is the root of a bioformats2raw layout."""
    return LAYOUT_KEY in _attrs(group)


def series_names(group: zarr.Group) -> list[str]:
    """The series of a bioformats2raw root: ``OME/``'s ``series`` list, else the groups named
    ``0``, ``1``, ... in order (the layout's rule when ``OME/`` lists none)."""
    listing = group.get("OME")
    if isinstance(listing, zarr.Group):
        listed = _attrs(listing).get("series")
        if isinstance(listed, list) and all(isinstance(name, str) for name in listed):
            return list(listed)
    names: list[str] = []
    while isinstance(group.get(str(len(names))), zarr.Group):
        names.append(str(len(names)))
    return names


def series_group(group: zarr.Group, store: str, series: int | None) -> tuple[str, zarr.Group]:
    """``(path, group)`` of series ``series`` (default 0) of the bioformats2raw root ``group``.

    Raises
    ------
    InputError
        The layout has no such series (the message lists them and names ``input.series``).
    """
    names = series_names(group)
    index = 0 if series is None else series
    if not 0 <= index < len(names):
        root = store.rstrip("/")
        have = f"series 0..{len(names) - 1}" if names else "no series"
        raise InputError(
            f"input store {store!r} is a bioformats2raw layout with {have}, not series "
            f"{describe(index)}; give one image as the input ({root}/0) or input.series"
        )
    check_node_path(names[index], "the bioformats2raw series path (OME/ series)")
    found = group.get(names[index])
    if not isinstance(found, zarr.Group):  # pragma: no cover - OME/ listing a missing group
        raise InputError(
            f"input store {store!r} lists series {names[index]!r} but has no such group; "
            f"give the image itself, e.g. {store.rstrip('/')}/0"
        )
    return names[index], found
